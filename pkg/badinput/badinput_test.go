// Package badinput is the bad input catalogue: one table, each row an
// input a stranger (or a broken GitHub, or an operator's typo) can give
// dh-deployer and the clear error it must get — an HTTP status and JSON
// description from dh-receive, a reason in the event table, an entry in
// failed/ with a .why sidecar, or an exit status and message naming
// file:line. After every row the test checks that nothing was lost or
// half-written: no queue holds anything new except the failed/ entry the
// row promises, no staging directory (.tmp) holds a partial file, and no
// site was installed in nginx's conf.d.
//
// Everything is real: the HTTP server of pkg/receive on 127.0.0.1, queue
// directories, the router, the deploy worker, the nginx installer with a
// private nginx (nginxtest), a throwaway Postgres (storetest) and the
// shared Main of the tools (cli.Run with store.Load, as every stage
// starts). The rows are tested piecemeal in their packages as well; this
// is the one place that shows them side by side.
package badinput

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/nginx"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/receive"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var secret = []byte("a-real-secret-of-some-length-0123")

// maxBody is receive.max_body in the world's configuration.
const maxBody = 64 << 10

// world is one installation: queues, state, a database, nginx, an
// nginx-kind checkout and dh-receive listening on 127.0.0.1.
type world struct {
	dir      string
	file     string // the configuration file
	cfg      *config.Config
	st       *store.Store
	url      string // dh-receive's webhook URL
	addr     string // dh-receive's host:port
	nginx    *nginxtest.Server
	checkout string       // the "sites" deployment's checkout
	hook     string       // dh-receive's git hook socket
	main     *queue.Queue // the main dh-receive's handle on queues/main (its limits)
	guid     int
}

// token is the token of the "api" deployment (token_files).
const token = "api-deploy-token-0123456789abcdef"

const deployments = `
[deployments.api]
repository = "acme/app"
branches   = ["main", "feature-*"]
path       = %q
steps      = [["true"]]
token_files = [%q]

[deployments.sites]
kind       = "nginx"
repository = "acme/nginx"
branches   = ["main"]
path       = %q
sites      = [{ rule = "include", select = ["*"] }]
domains    = ["*.test"]
`

func newWorld(t *testing.T) *world {
	t.Helper()
	testenv.Command(t, "git")
	w := &world{dir: t.TempDir()}
	w.nginx = nginxtest.Start(t, nginxtest.Options{})
	sitePort = w.nginx.Port
	w.checkout = filepath.Join(w.dir, "sites")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[receive]
max_body = %d
max_in_flight = %d
read_header_timeout = "300ms"
hook_socket = %q

%s`, filepath.Join(w.dir, "queues"), filepath.Join(w.dir, "state"), storetest.NewMigrated(t), maxBody, 2*maxBody,
		filepath.Join(testenv.ShortTempDir(t, "dh-badinput"), "hook.sock"),
		w.nginx.NginxTable(filepath.Join(w.dir, "certs"))) +
		fmt.Sprintf(deployments, filepath.Join(w.dir, "api"), filepath.Join(w.dir, "api-token"), w.checkout)
	os.WriteFile(filepath.Join(w.dir, "api-token"), []byte(token+"\n"), 0o600)
	w.file = filepath.Join(w.dir, "config.toml")
	if err := os.WriteFile(w.file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.cfg, w.st, err = store.Load(context.Background(), w.file); err != nil {
		t.Fatalf("store.Load(%s) = %v", w.file, err)
	}
	t.Cleanup(func() { w.st.Close() })
	for _, q := range []string{config.MainQueue, config.NginxQueue, config.CertQueue, config.StatusQueue, "api", "sites"} {
		if err := queue.Open(w.cfg.QueuePath(q)).Init(); err != nil {
			t.Fatal(err)
		}
	}

	// The nginx-kind checkout: a git repository with one good site,
	// installed.
	w.git(t, "init", "-q", "-b", "main")
	w.publish(t, config.NginxQueue, w.commit(t, map[string]string{"production/good.example.test.conf": site("good.example.test")}))
	if err := w.installNginx(t); err != nil {
		t.Fatalf("install the good site: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.nginx.ConfDir, "good.example.test.conf")); err != nil {
		t.Fatalf("the good site is not installed: %v", err)
	}

	tokens, err := w.cfg.DeployTokens(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	w.hook = w.cfg.Receive.HookSocket
	w.addr = w.receiver(t, w.hook, func(s *receive.Server) {
		s.Tokens, s.Deployments = tokens, w.cfg.Deployments
		s.HookUsers = map[uint32][]string{uint32(os.Getuid()): {"acme/app"}}
		w.main = s.Queue
	})
	w.url = "http://" + w.addr + w.cfg.Receive.Path
	return w
}

// receiver serves a dh-receive (pkg/receive) of the world's configuration,
// changed by tweak, on 127.0.0.1 (and its git hook on hookSocket, if not
// empty) until the test ends, and returns its address.
func (w *world) receiver(t *testing.T, hookSocket string, tweak func(*receive.Server)) string {
	t.Helper()
	l, hl, err := receive.Listen("127.0.0.1:0", hookSocket, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &receive.Server{Config: w.cfg.Receive, Secrets: [][]byte{secret}, Queue: queue.Open(w.cfg.QueuePath(config.MainQueue)),
		Logger: slog.New(slog.DiscardHandler), Now: time.Now, HookListener: hl}
	tweak(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return l.Addr().String()
}

// deployRequest posts POST /deploy/NAME with a bearer token and a body.
func (w *world) deployRequest(t *testing.T, name, tok, body string) outcome {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+w.addr+"/deploy/"+name, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	return send(t, req)
}

// hookPush is `dh-receive hook --repository REPOSITORY` with lines on
// stdin, as the current user.
func (w *world) hookPush(t *testing.T, repository, lines string) outcome {
	t.Helper()
	_, err := receive.Push(t.Context(), w.hook, repository, strings.NewReader(lines), 0, io.Discard)
	if err != nil {
		return outcome{code: cli.ExitStatus(err), text: err.Error()}
	}
	return outcome{code: 0, text: "queued"}
}

// waitStagingEmpty waits until no request of dh-receive holds a staging
// file in queues/main (requests cut off clean up after themselves).
func (w *world) waitStagingEmpty(t *testing.T) {
	t.Helper()
	staging := filepath.Join(w.cfg.QueuePath(config.MainQueue), queue.StagingDir)
	for i := 0; i < 200; i++ {
		if names, _ := os.ReadDir(staging); len(names) == 0 {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Errorf("%s still holds files", staging)
}

// refusedSite commits a site file of that name, lets dh-nginx handle the
// entry and returns why it failed; the file is deleted again afterwards.
func (w *world) refusedSite(t *testing.T, name, content string) outcome {
	t.Helper()
	file := "production/" + name + ".conf"
	w.publish(t, config.NginxQueue, w.commit(t, map[string]string{file: content}))
	defer w.commit(t, map[string]string{file: ""})
	if err := w.installNginx(t); err != nil {
		return outcome{code: cli.ExitStatus(err), text: err.Error()}
	}
	if _, err := os.Stat(filepath.Join(w.nginx.ConfDir, name+".conf")); err == nil {
		return outcome{code: -1, text: "installed " + name}
	}
	return w.lastFailure(t, config.NginxQueue)
}

// sitePort is the port the sites listen on: the private nginx's.
var sitePort int

func site(names string) string {
	return fmt.Sprintf("server {\n    listen 127.0.0.1:%d;\n    server_name %s;\n    return 200 \"x\";\n}\n", sitePort, names)
}

func (w *world) git(t *testing.T, args ...string) string {
	t.Helper()
	os.MkdirAll(w.checkout, 0o755)
	return testenv.Git(t, w.checkout, args...)
}

// commit writes files (path → content; "" removes) into the checkout,
// commits, records the succeeded run dh-deploy would, and returns the
// nginx-sites entry it would publish.
func (w *world) commit(t *testing.T, files map[string]string) []byte {
	t.Helper()
	return w.commitRun(t, files, true)
}

// commitRun is commit, recording the run only if deployed.
func (w *world) commitRun(t *testing.T, files map[string]string, deployed bool) []byte {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(w.checkout, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.git(t, "add", "-A")
	w.git(t, "commit", "-q", "--allow-empty", "-m", "change")
	e := event.NginxSites{Deployment: "sites", Commit: w.git(t, "rev-parse", "HEAD"), Delivery: "d-" + w.git(t, "rev-parse", "--short", "HEAD"),
		RequestedAt: time.Now()}
	if deployed {
		e.RunID = storetest.Deployed(t, w.cfg.DatabaseURL, "sites", e.Commit)
	}
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (w *world) newGUID() string {
	w.guid++
	return fmt.Sprintf("0badf00d-cc78-11e3-81ab-%012d", w.guid)
}

// delivery is a correctly signed GitHub delivery of body.
func (w *world) delivery(event string, body []byte) *http.Request {
	req, _ := http.NewRequest("POST", w.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(github.HeaderEvent, event)
	req.Header.Set(github.HeaderDelivery, w.newGUID())
	req.Header.Set(github.HeaderHookID, "292430182")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set(github.HeaderSignature256, github.Sign(body, secret))
	return req
}

func push(ref, after string) []byte {
	b, _ := json.Marshal(map[string]any{"ref": ref, "before": github.ZeroSHA, "after": after,
		"repository": map[string]any{"full_name": "acme/app"}})
	return b
}

// outcome is what an input got.
type outcome struct {
	status int    // HTTP status; 0 when no HTTP answer is involved
	code   int    // exit status or sysexits code of the stage's error; -1 when none
	text   string // the answer's description, the error, or the recorded reason
}

func (o outcome) String() string {
	return fmt.Sprintf("status %d, code %d, %q", o.status, o.code, o.text)
}

// send posts req to dh-receive and returns its answer.
func send(t *testing.T, req *http.Request) outcome {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	var body struct {
		Description string `json:"description"`
		Delivery    string `json:"delivery"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("answer %d is not JSON: %v", resp.StatusCode, err)
	}
	return outcome{status: resp.StatusCode, code: -1, text: body.Description}
}

// raw writes a request on a TCP connection (then, with halfClose, shuts
// down its sending side) and returns the status and JSON description of
// the answer, or how the server ended the connection.
func (w *world) raw(t *testing.T, request string, halfClose bool, wait time.Duration) outcome {
	t.Helper()
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, request)
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return outcome{code: -1, text: fmt.Sprintf("still open after %v", wait)}
		}
		if d := time.Since(start); d > 5*time.Second {
			return outcome{code: -1, text: fmt.Sprintf("connection closed only after %v", d)}
		}
		return outcome{code: -1, text: "connection closed by the server"}
	}
	defer resp.Body.Close()
	var body struct{ Description string }
	json.NewDecoder(resp.Body).Decode(&body)
	return outcome{status: resp.StatusCode, code: -1, text: body.Description}
}

// drain runs a stage's handler over its queue until the queue is empty,
// as the tools' --once does; it returns the error that stopped it.
func (w *world) drain(t *testing.T, q string, h queue.Handler) error {
	t.Helper()
	c, err := queue.Open(w.cfg.QueuePath(q)).Lock(t.Context(), true)
	if err != nil {
		t.Fatalf("lock %s: %v", q, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Run(ctx, h, queue.Options{Once: true, NoNotify: true, Writers: func() []int { return []int{nobody} }})
}

// nobody (65534) is a writer of every queue in this world, as dh-cert is
// of queues/nginx on a host; the test runs as root, the consumers' user.
const nobody = 65534

// lockErr is the error a consumer of queue q gets at start.
func (w *world) lockErr(t *testing.T, q string) outcome {
	t.Helper()
	c, err := queue.Open(w.cfg.QueuePath(q)).Lock(t.Context(), false)
	if err == nil {
		c.Close()
		return outcome{code: 0, text: "the consumer started"}
	}
	return outcome{code: cli.ExitStatus(err), text: err.Error()}
}

// victim is a file outside the queues, older than the staging sweep's ten
// minutes, that a tampered queue must not let the consumer touch.
func (w *world) victim(t *testing.T) (dir, file string) {
	t.Helper()
	dir = filepath.Join(w.dir, "victim")
	file = filepath.Join(dir, "keep.conf")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(file, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(file, old, old)
	return dir, file
}

func intact(t *testing.T, file string) {
	t.Helper()
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep\n" {
		t.Errorf("%s = %q, %v; want it untouched", file, b, err)
	}
}

// route drains queues/main the way dh-route does: in batches.
func (w *world) route(t *testing.T) error {
	t.Helper()
	r := route.New(w.cfg, w.st, route.Options{Logger: slog.New(slog.DiscardHandler)})
	c, err := queue.Open(w.cfg.QueuePath(config.MainQueue)).Lock(t.Context(), true)
	if err != nil {
		t.Fatalf("lock main: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.RunBatch(ctx, r.HandleBatch, queue.Options{Once: true, NoNotify: true})
}

func (w *world) deploy(t *testing.T) error {
	t.Helper()
	wk, err := deploy.New(w.cfg, "api", w.st, deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer wk.Close()
	return w.drain(t, "api", wk.Handle)
}

func (w *world) installNginx(t *testing.T) error {
	t.Helper()
	return w.drain(t, config.NginxQueue, nginx.New(w.cfg, w.st, nginx.Options{}).Handle)
}

// postStatus queues e in queues/status (its file owned by uid owner, if
// not -1), lets dh-route's poster handle it and returns why it failed.
func (w *world) postStatus(t *testing.T, e event.CommitStatus, owner int) outcome {
	t.Helper()
	e.CreatedAt = time.Now()
	e.Envelope = event.Envelope{Version: event.Version, Kind: event.KindCommitStatus}
	return w.postToStatus(t, e, owner)
}

// postNotice is postStatus for a run notice.
func (w *world) postNotice(t *testing.T, e event.RunNotice, owner int) outcome {
	t.Helper()
	e.CreatedAt = time.Now()
	e.Envelope = event.Envelope{Version: event.Version, Kind: event.KindRunNotice}
	return w.postToStatus(t, e, owner)
}

func (w *world) postToStatus(t *testing.T, e any, owner int) outcome {
	t.Helper()
	data, err := json.Marshal(e) // not Encode, which checks: a forged entry need not be well made
	if err != nil {
		t.Fatal(err)
	}
	name, err := queue.Open(w.cfg.QueuePath(config.StatusQueue)).Publish(data)
	if err != nil {
		t.Fatal(err)
	}
	if owner >= 0 {
		if err := os.Chown(filepath.Join(w.cfg.QueuePath(config.StatusQueue), name), owner, -1); err != nil {
			t.Fatal(err)
		}
	}
	p, err := route.NewPoster(w.cfg, nil, os.Getenv, "dh-deployer/test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.drain(t, config.StatusQueue, p.Handle); err != nil {
		return outcome{code: cli.ExitStatus(err), text: err.Error()}
	}
	return w.lastFailure(t, config.StatusQueue)
}

// publish puts an entry in a queue the way the stage before does.
func (w *world) publish(t *testing.T, q string, data []byte) {
	t.Helper()
	if _, err := queue.Open(w.cfg.QueuePath(q)).Publish(data); err != nil {
		t.Fatal(err)
	}
}

// lastFailure is the .why of the newest entry in a queue's failed/.
func (w *world) lastFailure(t *testing.T, q string) outcome {
	t.Helper()
	qq := queue.Open(w.cfg.QueuePath(q))
	names, err := qq.Failed()
	if err != nil || len(names) == 0 {
		return outcome{code: -1, text: fmt.Sprintf("nothing in %s/failed (%v)", q, err)}
	}
	return w.failure(t, q, names[len(names)-1])
}

// failure is the .why of the entry name in a queue's failed/ (which
// Failed does not list when it is not a regular file).
func (w *world) failure(t *testing.T, q, name string) outcome {
	t.Helper()
	f, err := queue.Open(w.cfg.QueuePath(q)).ReadFailure(name)
	if err != nil {
		return outcome{code: -1, text: fmt.Sprintf("no .why for %s: %v", name, err)}
	}
	// A sidecar carries no exit status (the queue owns outcomes, not exit
	// codes: issue 18); an entry in failed/ failed for good, which this
	// catalogue writes as bad data, 65.
	return outcome{code: sysexits.DataErr, text: f.Error}
}

// event is the event table's decision on a delivery.
func (w *world) event(t *testing.T, delivery string) string {
	t.Helper()
	row, err := w.st.GetEvent(context.Background(), delivery)
	if err != nil {
		return fmt.Sprintf("no event row: %v", err)
	}
	return row.Status + " " + row.Reason
}

// runTool runs a tool's start-up the way every stage does (cli.Run, then
// store.Load of -c FILE) and returns its exit status and stderr.
func runTool(t *testing.T, file string) outcome {
	t.Helper()
	var stderr bytes.Buffer
	app := &cli.App{Name: "dh-route", Default: "run", Commands: []*cli.Command{{Name: "run", Run: func(ctx context.Context, env *cli.Env, _ []string) error {
		_, st, err := store.Load(ctx, env.Config)
		if err == nil {
			st.Close()
		}
		return err
	}}}}
	code := cli.Run(context.Background(), app, &cli.Env{Stdout: io.Discard, Stderr: &stderr}, []string{"-c", file})
	return outcome{code: code, text: stderr.String()}
}

// badConfig writes the world's configuration with extra appended.
func (w *world) badConfig(t *testing.T, extra string) string {
	t.Helper()
	good, err := os.ReadFile(w.file)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, append(good, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// snapshot lists every file under the queue directory and conf.d, with
// its size, so a row can show that nothing appeared, vanished or changed
// besides what it expects.
func (w *world) snapshot(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, root := range []string{w.cfg.QueueDir, w.nginx.ConfDir} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() == queue.LockFile {
				return nil
			}
			fi, err := d.Info()
			if err == nil {
				out[p] = fi.Size()
			}
			return nil
		})
	}
	return out
}

func TestCatalogue(t *testing.T) {
	w := newWorld(t)
	star := fixture(t, "star")
	good := []byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"acme/app"}}`)
	big := append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), maxBody)...), `"}`...)
	sha := strings.Repeat("c", 40)
	ghEntry := func(delivery, deployment string, payload []byte) []byte {
		e := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: time.Now(), Deployment: deployment, Payload: payload}
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var last string // the delivery GUID of the last row that sent one

	rows := []struct {
		name   string
		input  func(t *testing.T) outcome
		want   outcome // text is a part of the real one
		failed string  // the queue whose failed/ gets the entry (with a .why); "" for none
	}{
		// dh-receive: answered with a status and a JSON description; nothing queued.
		{"bad signature", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Set(github.HeaderSignature256, github.Sign(good, []byte("not-the-secret")))
			return send(t, r)
		}, outcome{403, -1, "signature does not match"}, ""},
		{"missing signature", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Del(github.HeaderSignature256)
			return send(t, r)
		}, outcome{401, -1, "missing X-Hub-Signature-256"}, ""},
		{"SHA-1 signature only", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Del(github.HeaderSignature256)
			r.Header.Set(github.HeaderSignature1, "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")
			return send(t, r)
		}, outcome{401, -1, "only the SHA-1 X-Hub-Signature"}, ""},
		{"malformed signature", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Set(github.HeaderSignature256, "sha256=$(id)")
			return send(t, r)
		}, outcome{401, -1, "sha256=<64 hex digits>"}, ""},
		{"missing X-GitHub-Event", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Del(github.HeaderEvent)
			return send(t, r)
		}, outcome{400, -1, "missing or malformed X-GitHub-Event"}, ""},
		{"shell metacharacters in X-GitHub-Event", func(t *testing.T) outcome {
			return send(t, w.delivery("push;rm -rf /", good))
		}, outcome{400, -1, "missing or malformed X-GitHub-Event"}, ""},
		{"missing X-GitHub-Delivery", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Del(github.HeaderDelivery)
			return send(t, r)
		}, outcome{400, -1, "missing or malformed X-GitHub-Delivery header (want a GUID)"}, ""},
		{"malformed GUID in X-GitHub-Delivery (../)", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Set(github.HeaderDelivery, "../../queues/main/x")
			return send(t, r)
		}, outcome{400, -1, "X-GitHub-Delivery header (want a GUID)"}, ""},
		{"malformed JSON (signed as sent)", func(t *testing.T) outcome {
			return send(t, w.delivery("push", []byte(`{"ref": "refs/heads/main",`)))
		}, outcome{400, -1, "payload is not valid JSON"}, ""},
		{"JSON that is not an object", func(t *testing.T) outcome {
			return send(t, w.delivery("push", []byte(`"refs/heads/main"`)))
		}, outcome{400, -1, "payload is not a JSON object"}, ""},
		{"truncated body (client stops before Content-Length)", func(t *testing.T) outcome {
			return w.raw(t, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
				"X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: %s\r\n\r\n%s",
				w.cfg.Receive.Path, len(good), w.newGUID(), github.Sign(good, secret), good[:len(good)/2]), true, 10*time.Second)
		}, outcome{400, -1, "read body: unexpected EOF"}, ""},
		{"oversized body (Content-Length)", func(t *testing.T) outcome {
			return send(t, w.delivery("push", big))
		}, outcome{413, -1, fmt.Sprintf("body larger than %d bytes", maxBody)}, ""},
		{"oversized body (chunked, no length)", func(t *testing.T) outcome {
			r := w.delivery("push", big)
			r.ContentLength, r.Body = -1, io.NopCloser(bytes.NewReader(big))
			return send(t, r)
		}, outcome{413, -1, fmt.Sprintf("body larger than %d bytes", maxBody)}, ""},
		{"wrong content type", func(t *testing.T) outcome {
			r := w.delivery("push", good)
			r.Header.Set("Content-Type", "text/plain")
			return send(t, r)
		}, outcome{415, -1, "content type must be application/json or application/x-www-form-urlencoded"}, ""},
		{"slow client (headers never finish)", func(t *testing.T) outcome {
			return w.raw(t, "POST "+w.cfg.Receive.Path+" HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n", false, 10*time.Second)
		}, outcome{0, -1, "connection closed by the server"}, ""},

		// Issue 17, finding 2: headers first, bodies streamed, bytes bounded.
		{"unsigned body: answered before it is read", func(t *testing.T) outcome {
			return w.raw(t, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
				"X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\n\r\n", w.cfg.Receive.Path, maxBody, w.newGUID()), false, 5*time.Second)
		}, outcome{401, -1, "missing X-Hub-Signature-256"}, ""},
		{"more body bytes in flight than max_in_flight", func(t *testing.T) outcome {
			// Two requests announce max_body each and send nothing more:
			// max_in_flight (2 × max_body) is taken until they end.
			defer w.waitStagingEmpty(t)
			for range 2 {
				conn, err := net.Dial("tcp", w.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
					"X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-Hub-Signature-256: %s\r\n\r\n{",
					w.cfg.Receive.Path, maxBody, w.newGUID(), github.Sign(good, secret))
			}
			// Until both have reached the body, probe with a wrong
			// signature: answered 503 once the bytes are taken, else read
			// and refused (401), queuing nothing.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				probe := w.delivery("push", good)
				probe.Header.Set(github.HeaderSignature256, github.Sign(good, []byte("not-the-secret")))
				if send(t, probe).status == http.StatusServiceUnavailable {
					break
				}
			}
			return send(t, w.delivery("push", good))
		}, outcome{503, -1, "too many bytes in flight (receive.max_in_flight)"}, ""},
		// Issue 17, finding 3: X-Forwarded-For only from a trusted proxy.
		{"X-Forwarded-For from a client that is not a trusted proxy", func(t *testing.T) outcome {
			addr := w.receiver(t, "", func(s *receive.Server) {
				s.Allowed = []netip.Prefix{netip.MustParsePrefix("192.30.252.0/22")}
				s.Proxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}
			})
			r := w.delivery("push", good)
			r.URL.Host = addr
			r.Header.Set("X-Forwarded-For", "192.30.252.1")
			return send(t, r)
		}, outcome{403, -1, "source address 127.0.0.1 is not allowed"}, ""},
		// Issue 17, finding 4: token scope.
		{"token deploy of a branch the deployment does not follow", func(t *testing.T) outcome {
			return w.deployRequest(t, "api", token, `{"ref":"refs/heads/unreviewed"}`)
		}, outcome{403, -1, `deployment api does not follow "refs/heads/unreviewed"`}, ""},
		{"token for an unknown deployment: the answer to a wrong token", func(t *testing.T) outcome {
			unknown, wrong := w.deployRequest(t, "nope", token, ""), w.deployRequest(t, "api", "wrong-token-0123456789", "")
			if unknown.status != wrong.status || strings.Replace(unknown.text, `"nope"`, `"api"`, 1) != wrong.text {
				return outcome{code: -1, text: fmt.Sprintf("unknown deployment %v, wrong token %v", unknown, wrong)}
			}
			return unknown
		}, outcome{403, -1, "wrong token, or no deployment"}, ""},
		// Issue 20: waiting for the run is bounded and needs the status listener.
		{"token deploy waiting longer than the most (?wait=601)", func(t *testing.T) outcome {
			return w.deployRequest(t, "api?wait=601", token, "")
		}, outcome{400, -1, "want a number of seconds from 0 to 600"}, ""},
		{"token deploy with a query parameter besides wait", func(t *testing.T) outcome {
			return w.deployRequest(t, "api?wait=5&commit=$(reboot)", token, "")
		}, outcome{400, -1, "no query string but ?wait=SECONDS"}, ""},
		{"token deploy waiting without receive.status_url: nothing queued", func(t *testing.T) outcome {
			return w.deployRequest(t, "api?wait=5", token, "")
		}, outcome{501, -1, "receive.status_url is not set"}, ""},
		{"hook push waiting without receive.status_url: nothing queued", func(t *testing.T) outcome {
			_, err := receive.Push(t.Context(), w.hook, "acme/app", strings.NewReader(github.ZeroSHA+" "+sha+" refs/heads/main\n"), time.Minute, io.Discard)
			return outcome{code: sysexits.Code(err), text: fmt.Sprint(err)}
		}, outcome{0, sysexits.Config, "receive.status_url is not set"}, ""},
		{"token guessing", func(t *testing.T) outcome {
			var o outcome
			for i := range 20 {
				if o = w.deployRequest(t, "api", fmt.Sprintf("guess-%d", i), ""); o.status != http.StatusForbidden {
					break
				}
			}
			return o
		}, outcome{429, -1, "too many failed token attempts"}, ""},
		// Issue 17, finding 5: the git hook goes through dh-receive.
		{"hook push of a repository hook_users does not give the user", func(t *testing.T) outcome {
			return w.hookPush(t, "acme/nginx", github.ZeroSHA+" "+sha+" refs/heads/main\n")
		}, outcome{0, sysexits.NoPerm, "may not queue pushes of acme/nginx"}, ""},
		{"hook push with ../ in a ref and shell metacharacters as a commit", func(t *testing.T) outcome {
			return w.hookPush(t, "acme/app", github.ZeroSHA+" "+sha+" refs/heads/../x\n$(reboot) "+sha+" refs/heads/main\n")
		}, outcome{0, sysexits.DataErr, "line 1"}, ""},

		// dh-route: accepted (202), then decided with a reason, or failed/.
		{"unknown event (star), accepted then voided", func(t *testing.T) outcome {
			r := w.delivery("star", star)
			last = r.Header.Get(github.HeaderDelivery)
			if o := send(t, r); o.status != http.StatusAccepted {
				return o
			}
			return outcome{http.StatusAccepted, sysexits.Code(w.route(t)), w.event(t, last)}
		}, outcome{202, 0, "voided " + route.ReasonEventNotTaken}, ""},
		{"queue entry of the wrong version (route)", func(t *testing.T) outcome {
			w.publish(t, config.MainQueue, bytes.Replace(ghEntry("wrong-version-1", "", good), []byte(`"version":1`), []byte(`"version":2`), 1))
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.MainQueue)
		}, outcome{0, sysexits.DataErr, "entry version 2 is not supported (this build reads version 1)"}, config.MainQueue},
		{"entry that is not JSON (route)", func(t *testing.T) outcome {
			w.publish(t, config.MainQueue, []byte("{\"version\":1,\"kind\":\"github-event\",\"payload\":{\n"))
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.MainQueue)
		}, outcome{0, sysexits.DataErr, "entry is not a JSON object"}, config.MainQueue},

		// dh-deploy: a push routed to it that it must not act on.
		{"shell metacharacters in ref: accepted, routed, refused by dh-deploy", func(t *testing.T) outcome {
			r := w.delivery("push", push("refs/heads/feature-$(id) `reboot`; rm -rf ~", sha))
			last = r.Header.Get(github.HeaderDelivery)
			if o := send(t, r); o.status != http.StatusAccepted {
				return o
			}
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: "route: " + err.Error()}
			}
			if got := w.event(t, last); got != "routed " {
				return outcome{code: -1, text: "route decided " + got}
			}
			if err := w.deploy(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: "deploy: " + err.Error()}
			}
			return w.lastFailure(t, "api")
		}, outcome{0, sysexits.DataErr, "invalid ref \"refs/heads/feature-$(id) `reboot`; rm -rf ~\""}, "api"},
		{"NUL in ref: accepted, then failed by dh-route with a reason", func(t *testing.T) outcome {
			r := w.delivery("push", push("refs/heads/feature-\x00x", sha))
			last = r.Header.Get(github.HeaderDelivery)
			if o := send(t, r); o.status != http.StatusAccepted {
				return o
			}
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: "route: " + err.Error()}
			}
			return w.lastFailure(t, config.MainQueue)
		}, outcome{0, sysexits.DataErr, `push payload has a NUL byte in ref: "refs/heads/feature-\x00x"`}, config.MainQueue},
		{"NUL in ref does not take the other deliveries of its batch along", func(t *testing.T) outcome {
			ping := w.delivery("ping", fixture(t, "ping"))
			if o := send(t, ping); o.status != http.StatusAccepted {
				return o
			}
			r := w.delivery("push", push("refs/heads/main\x00", sha))
			if o := send(t, r); o.status != http.StatusAccepted {
				return o
			}
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: "route: " + err.Error()}
			}
			if got := w.event(t, ping.Header.Get(github.HeaderDelivery)); !strings.HasPrefix(got, "ping ") {
				return outcome{code: -1, text: "the ping beside it: " + got}
			}
			o := w.lastFailure(t, config.MainQueue)
			o.text += "; event row: " + w.event(t, r.Header.Get(github.HeaderDelivery))
			return o
		}, outcome{0, sysexits.DataErr, "event row: failed push payload has a NUL byte in ref"}, config.MainQueue},
		{"shell metacharacters in the commit id", func(t *testing.T) outcome {
			w.publish(t, "api", ghEntry("bad-sha-1", "api", push("refs/heads/main", "$(reboot)")))
			if err := w.deploy(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, "api")
		}, outcome{0, sysexits.DataErr, `invalid commit "$(reboot)"`}, "api"},
		{"deployment name with ../ in a deployment queue entry", func(t *testing.T) outcome {
			w.publish(t, "api", ghEntry("dotdot-1", "../sites", push("refs/heads/main", sha)))
			if err := w.deploy(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, "api")
		}, outcome{0, sysexits.DataErr, `entry is for deployment "../sites", not "api"`}, "api"},
		{"queue entry of the wrong version (deploy)", func(t *testing.T) outcome {
			w.publish(t, "api", bytes.Replace(ghEntry("wrong-version-2", "api", good), []byte(`"version":1`), []byte(`"version":0`), 1))
			if err := w.deploy(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, "api")
		}, outcome{0, sysexits.DataErr, "entry version 0 is not supported"}, "api"},

		// dh-nginx: entries and checkouts it must refuse.
		{"deployment name with ../ in an nginx-sites entry", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, bytes.Replace(w.commit(t, nil), []byte(`"deployment":"sites"`), []byte(`"deployment":"../sites"`), 1))
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, `malformed deployment name "../sites"`}, config.NginxQueue},
		{"site name .. (file production/...conf)", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, w.commit(t, map[string]string{"production/...conf": site("dots.example.test")}))
			defer w.commit(t, map[string]string{"production/...conf": ""})
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, `site name ".." is not allowed`}, config.NginxQueue},
		{"shell metacharacters in a site name", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, w.commit(t, map[string]string{"production/x;reboot.conf": site("x.example.test")}))
			defer w.commit(t, map[string]string{"production/x;reboot.conf": ""})
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, `site name "x;reboot" is not allowed`}, config.NginxQueue},
		{"shell metacharacters in server_name", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, w.commit(t, map[string]string{"production/shell.example.test.conf": site(`"a.example.test;reboot"`)}))
			defer w.commit(t, map[string]string{"production/shell.example.test.conf": ""})
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, `server_name "a.example.test;reboot": not a valid DNS name`}, config.NginxQueue},
		{"NUL in server_name", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, w.commit(t, map[string]string{"production/nul.example.test.conf": site("a\x00.example.test")}))
			defer w.commit(t, map[string]string{"production/nul.example.test.conf": ""})
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, "not a valid DNS name"}, config.NginxQueue},
		// The site policy (issue 14): a push must never become root.
		{"site logging a sudoers line (log_format escape=none)", func(t *testing.T) outcome {
			return w.refusedSite(t, "sudo.example.test", "log_format x escape=none 'ALL ALL=(ALL:ALL) NOPASSWD: ALL';\n"+
				strings.Replace(site("sudo.example.test"), "return", "access_log /etc/sudoers.d/zz x;\n    return", 1))
		}, outcome{0, sysexits.DataErr, `production/sudo.example.test.conf: line 1: "log_format": never allowed in a site`}, config.NginxQueue},
		{"site logging into root's authorized_keys", func(t *testing.T) outcome {
			return w.refusedSite(t, "keys.example.test", strings.Replace(site("keys.example.test"), "return", "access_log /root/.ssh/authorized_keys;\n    return", 1))
		}, outcome{0, sysexits.DataErr, `"access_log": "/root/.ssh/authorized_keys" is outside`}, config.NginxQueue},
		{"site including a glob in the checkout", func(t *testing.T) outcome {
			return w.refusedSite(t, "inc.example.test", strings.Replace(site("inc.example.test"), "return", "include /srv/www/sites/inc/*.conf;\n    return", 1))
		}, outcome{0, sysexits.DataErr, `"include": "/srv/www/sites/inc/*.conf": glob includes are not allowed`}, config.NginxQueue},
		{"site proxying to the loopback status page", func(t *testing.T) outcome {
			return w.refusedSite(t, "internal.example.test", strings.Replace(site("internal.example.test"), "return 200 \"x\";",
				"location /internal/ { proxy_pass http://127.0.0.1:3401/; }", 1))
		}, outcome{0, sysexits.DataErr, `"proxy_pass": loopback upstream 127.0.0.1:3401 is not in deployments.sites.upstreams`}, config.NginxQueue},
		{"site publishing /srv with autoindex", func(t *testing.T) outcome {
			return w.refusedSite(t, "srv.example.test", strings.Replace(site("srv.example.test"), "return 200 \"x\";",
				"location /x/ { alias /srv/; autoindex on; }", 1))
		}, outcome{0, sysexits.DataErr, `"alias": "/srv/": no directory is allowed (deployments.sites.serve)`}, config.NginxQueue},
		{"site claiming another deployment's domain", func(t *testing.T) outcome {
			return w.refusedSite(t, "hijack.example.test", site("hijack.example.test login.victim.org"))
		}, outcome{0, sysexits.DataErr, `"server_name": "login.victim.org" is not inside deployments.sites.domains`}, config.NginxQueue},
		{"site directive in upper case", func(t *testing.T) outcome {
			return w.refusedSite(t, "upper.example.test", strings.Replace(site("upper.example.test"), "return", "ACCESS_LOG /etc/sudoers.d/zz;\n    return", 1))
		}, outcome{0, sysexits.DataErr, `"ACCESS_LOG": not allowed by the site policy`}, config.NginxQueue},
		{"symlink escaping the checkout", func(t *testing.T) outcome {
			outside := filepath.Join(w.dir, "outside.conf")
			os.WriteFile(outside, []byte(site("evil.example.test")), 0o644)
			link := filepath.Join(w.checkout, "production/link.example.test.conf")
			if err := os.Symlink("../../outside.conf", link); err != nil {
				t.Fatal(err)
			}
			defer func() { os.Remove(link); w.commit(t, nil) }()
			w.publish(t, config.NginxQueue, w.commit(t, nil))
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, "production/link.example.test.conf: a symbolic link: refused"}, config.NginxQueue},
		// Issue 14, attack 3: a build step of a deployment sharing the
		// user rewrote the checkout and queued it.
		{"nginx-sites entry written by another user", func(t *testing.T) outcome {
			name, err := queue.Open(w.cfg.QueuePath(config.NginxQueue)).Publish(w.commit(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(w.cfg.QueuePath(config.NginxQueue), name), 65534, 65534); err != nil {
				t.Fatal(err)
			}
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, "not by dh-deploy-sites (deployment sites's user), dh-cert or root: refused"}, config.NginxQueue},
		{"nginx-sites entry for a commit no run verified", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, w.commitRun(t, map[string]string{"production/forged.example.test.conf": site("forged.example.test")}, false))
			defer w.commit(t, map[string]string{"production/forged.example.test.conf": ""})
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, "is not one deployment sites verified: no succeeded run of it in the history"}, config.NginxQueue},
		{"queue entry of the wrong kind (nginx)", func(t *testing.T) outcome {
			w.publish(t, config.NginxQueue, ghEntry("wrong-kind-1", "sites", good))
			if err := w.installNginx(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, config.NginxQueue)
		}, outcome{0, sysexits.DataErr, `entry kind "github-event" does not belong in queues/nginx`}, config.NginxQueue},

		// dh-route sets a commit status only on the repository of the
		// entry's deployment, and only from that deployment's user (issue 17).
		{"commit-status entry for another deployment's repository", func(t *testing.T) outcome {
			return w.postStatus(t, event.CommitStatus{Deployment: "api", Repository: "acme/nginx", Commit: sha, State: "success"}, -1)
		}, outcome{0, sysexits.DataErr, "commit status for repository acme/nginx, but deployment api deploys acme/app: refused"}, config.StatusQueue},
		{"commit-status entry from another deployment's user", func(t *testing.T) outcome {
			return w.postStatus(t, event.CommitStatus{Deployment: "api", Repository: "acme/app", Commit: sha, State: "success"}, 65534)
		}, outcome{0, sysexits.DataErr, "not by dh-deploy (deployment api's user) or root: refused"}, config.StatusQueue},
		{"commit-status entry with an unknown state", func(t *testing.T) outcome {
			return w.postStatus(t, event.CommitStatus{Deployment: "api", Repository: "acme/app", Commit: sha, State: "green"}, -1)
		}, outcome{0, sysexits.DataErr, `entry has an unknown state "green"`}, config.StatusQueue},
		// dh-route sends a run's notification only for a worker of its
		// deployment (issue 20).
		{"run-notice entry from another deployment's user", func(t *testing.T) outcome {
			return w.postNotice(t, event.RunNotice{Deployment: "api", RunID: 1, State: "failed"}, 65534)
		}, outcome{0, sysexits.DataErr, "run notice entry "}, config.StatusQueue},
		{"run-notice entry with an unknown state", func(t *testing.T) outcome {
			return w.postNotice(t, event.RunNotice{Deployment: "api", RunID: 1, State: "green"}, -1)
		}, outcome{0, sysexits.DataErr, `entry has an unknown state "green" (succeeded, failed)`}, config.StatusQueue},
		// Issue 17: a writer of a queue turning it against its consumer.
		{"queue entry from a user who is no writer of the queue", func(t *testing.T) outcome {
			name, err := queue.Open(w.cfg.QueuePath("api")).Publish(ghEntry("stranger-1", "api", good))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(w.cfg.QueuePath("api"), name), 4242, 4242); err != nil {
				t.Fatal(err)
			}
			if err := w.deploy(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.lastFailure(t, "api")
		}, outcome{0, sysexits.DataErr, " is owned by uid 4242, who is not a writer of queue"}, "api"},
		{"symbolic link as a queue entry", func(t *testing.T) outcome {
			if err := os.Symlink("/etc/passwd", filepath.Join(w.cfg.QueuePath(config.MainQueue), "99999999999999999991-1-deadbeef.json")); err != nil {
				t.Fatal(err)
			}
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.failure(t, config.MainQueue, "99999999999999999991-1-deadbeef.json")
		}, outcome{0, sysexits.DataErr, "99999999999999999991-1-deadbeef.json is a symbolic link, not a regular file"}, config.MainQueue},
		{"FIFO as a queue entry", func(t *testing.T) outcome {
			if err := syscall.Mkfifo(filepath.Join(w.cfg.QueuePath(config.MainQueue), "99999999999999999992-1-deadbeef.json"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := w.route(t); err != nil {
				return outcome{code: cli.ExitStatus(err), text: err.Error()}
			}
			return w.failure(t, config.MainQueue, "99999999999999999992-1-deadbeef.json")
		}, outcome{0, sysexits.DataErr, "99999999999999999992-1-deadbeef.json is not a regular file"}, config.MainQueue},
		{"queue's .tmp swapped for a link to another directory", func(t *testing.T) outcome {
			dir, file := w.victim(t)
			staging := filepath.Join(w.cfg.QueuePath(config.NginxQueue), queue.StagingDir)
			os.Rename(staging, staging+".orig")
			os.Symlink(dir, staging)
			defer func() { os.Remove(staging); os.Rename(staging+".orig", staging) }()
			got := w.lockErr(t, config.NginxQueue)
			intact(t, file)
			return got
		}, outcome{0, sysexits.NoPerm, "nginx/.tmp is not a directory (a symbolic link or a file): not what the queue's consumer made"}, ""},
		{"queue's .lock swapped for a link to the consumer's state", func(t *testing.T) outcome {
			_, file := w.victim(t)
			lock := filepath.Join(w.cfg.QueuePath(config.CertQueue), queue.LockFile)
			os.Remove(lock)
			os.Symlink(file, lock)
			defer os.Remove(lock)
			got := w.lockErr(t, config.CertQueue)
			intact(t, file)
			return got
		}, outcome{0, sysexits.NoPerm, "cert/.lock is a symbolic link: not what the queue's consumer made"}, ""},

		// Issue 17: a flood of valid deliveries.
		{"delivery while queues/main is at max_entries", func(t *testing.T) outcome {
			name, err := w.main.Publish([]byte(`{}`)) // the one entry it may hold
			if err != nil {
				t.Fatal(err)
			}
			w.main.SetLimits(queue.Limits{MaxEntries: 1})
			defer func() { w.main.SetLimits(queue.Limits{}); os.Remove(filepath.Join(w.main.Dir(), name)) }()
			return send(t, w.delivery("push", good))
		}, outcome{503, -1, "the delivery queue is full; nothing was read or stored: queue is full: 1 entries waiting, the most it may hold is 1"}, ""},
		{"delivery while queue_dir is below the free-space floor", func(t *testing.T) outcome {
			w.main.SetLimits(queue.Limits{MinFreeBytes: 1 << 62})
			defer w.main.SetLimits(queue.Limits{})
			return send(t, w.delivery("push", good))
		}, outcome{503, -1, "is full: the file system of " + "%QUEUES%" + "/main has"}, ""},
		{"delivery for a deployment whose queue is full: kept in queues/main", func(t *testing.T) outcome {
			held, err := queue.Open(w.cfg.QueuePath(config.MainQueue)).Publish(ghEntry(w.newGUID(), "", good))
			if err != nil {
				t.Fatal(err)
			}
			waiting, err := queue.Open(w.cfg.QueuePath("api")).Publish([]byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			w.cfg.Queues.Deployments.MaxEntries = 1
			defer func() {
				w.cfg.Queues.Deployments.MaxEntries = config.Default().Queues.Deployments.MaxEntries
				os.Remove(filepath.Join(w.cfg.QueuePath("api"), waiting))
				os.Remove(filepath.Join(w.cfg.QueuePath(config.MainQueue), held))
			}()
			err = w.route(t)
			if _, serr := os.Stat(filepath.Join(w.cfg.QueuePath(config.MainQueue), held)); serr != nil {
				t.Errorf("the held delivery left queues/main: %v", serr)
			}
			return outcome{code: cli.ExitStatus(err), text: fmt.Sprint(err)}
		}, outcome{0, sysexits.TempFail, "route to deployment api: queue is full: 1 entries waiting, the most it may hold is 1"}, ""},

		// Every tool at start: the configuration, strictly.
		{"config with an unknown key", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.web]\nrepository = \"acme/web\"\nbrnach = [\"main\"]\npath = \"/srv/web\"\n"))
		}, outcome{0, sysexits.Config, "config.toml:%LINE+4%: unknown key \"deployments.web.brnach\"\ndh-route: hint: did you mean \"branches\"?"}, ""},
		{"config: the status page in an unknown time zone", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[status]\ntime_zone = \"Europe/Lodnon\"\n"))
		}, outcome{0, sysexits.Config, "config.toml:%LINE+3%: status.time_zone: unknown time zone \"Europe/Lodnon\"\ndh-route: hint: use an IANA name such as \"Europe/London\" or \"UTC\" (see /usr/share/zoneinfo)"}, ""},
		{"config with a deployment named ../etc", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.\"../etc\"]\nrepository = \"acme/web\"\nbranches = [\"main\"]\npath = \"/srv/web\"\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+2%: deployments."../etc": name must match [a-z0-9][a-z0-9-]*`}, ""},
		{"config: two deployments claiming one domain", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.web-sites]\nkind = \"nginx\"\nrepository = \"acme/web\"\nbranches = [\"main\"]\npath = \"/srv/web\"\n"+
				"sites = [{ rule = \"include\", select = [\"*\"] }]\ndomains = [\"api.example.test\"]\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+8%: deployments.web-sites.domains[0]: "api.example.test" overlaps "*.test" of deployments.sites`}, ""},
		{"config naming a queue writer who does not exist", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[queues.main]\nwriters = [\"root\", \"no-such-user-x\"]\n"))
		}, outcome{0, sysexits.Config, `queues.main.writers[1]: no user "no-such-user-x" on this host`}, ""},
		{"config with a negative queue limit", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[queues.deployments]\nmax_entries = -1\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+3%: queues.deployments.max_entries: must not be negative (0 is no limit)`}, ""},
		{"config selecting a site ../etc", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.more-sites]\nkind = \"nginx\"\nrepository = \"acme/web\"\nbranches = [\"main\"]\npath = \"/srv/web\"\n"+
				"sites = [{ rule = \"include\", select = [\"../etc/passwd\"] }]\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+7%: deployments.more-sites.sites[0]: bad site name or pattern "../etc/passwd" in select`}, ""},
		{"config: a relative environment_file", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.web]\nrepository = \"acme/web\"\nbranches = [\"main\"]\npath = \"/srv/web\"\nenvironment_file = \"web.env\"\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+6%: deployments.web.environment_file: must be absolute`}, ""},
		{"config: a self deployment's sudo command with a wildcard", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.me]\nkind = \"self\"\nrepository = \"acme/me\"\nbranches = [\"main\"]\npath = \"/srv/me\"\n"+
				"self = { restart_self = [\"sudo\", \"-n\", \"/usr/bin/systemctl\", \"--no-block\", \"restart\", \"dh-deploy@*\"] }\n"))
		}, outcome{0, sysexits.Config, `argument "dh-deploy@*" cannot be allowed exactly by a sudo rule`}, ""},
		{"config pruning runs GitHub may still redeliver", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[retention]\nruns = \"24h\"\n"))
		}, outcome{0, sysexits.Config, "config.toml:%LINE+3%: retention.runs: 24h0m0s is shorter than GitHub's redelivery window\ndh-route: hint: use at least \"72h\" (or \"0s\" to keep forever)"}, ""},
		{"config sharing ../etc into releases", func(t *testing.T) outcome {
			return runTool(t, w.badConfig(t, "\n[deployments.web]\nrepository = \"acme/web\"\nbranches = [\"main\"]\npath = \"/srv/web\"\n"+
				"shared = [\"../etc\"]\n"))
		}, outcome{0, sysexits.Config, `config.toml:%LINE+6%: deployments.web.shared[0]: "../etc" must be a clean relative path inside the release`}, ""},
	}

	// %LINE+N% in a want is the Nth line of what badConfig appends.
	goodLines := 0
	if b, err := os.ReadFile(w.file); err == nil {
		goodLines = bytes.Count(b, []byte("\n"))
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			want := row.want
			want.text = strings.ReplaceAll(want.text, "%QUEUES%", w.cfg.QueueDir)
			want.text = lineRE.ReplaceAllStringFunc(want.text, func(m string) string {
				n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
				return strconv.Itoa(goodLines + n)
			})
			before := w.snapshot(t)
			got := row.input(t)
			t.Logf("%v", got) // go test -v shows the catalogue's real answers
			if got.status != want.status || got.code != want.code || !strings.Contains(got.text, want.text) {
				t.Errorf("got %v; want %v", got, want)
			}
			after := w.snapshot(t)
			var added []string
			for p, size := range after {
				if old, ok := before[p]; !ok {
					added = append(added, p)
				} else if old != size {
					t.Errorf("%s changed (%d → %d bytes)", p, old, size)
				}
			}
			for p := range before {
				// Only an entry waiting in a queue may go (it was handled);
				// nothing leaves failed/ or conf.d.
				if _, ok := after[p]; !ok && filepath.Dir(filepath.Dir(p)) != w.cfg.QueueDir {
					t.Errorf("%s vanished", p)
				}
			}
			slices.Sort(added)
			var wantAdded []string
			if row.failed != "" {
				dir := filepath.Join(w.cfg.QueuePath(row.failed), queue.FailedDir)
				if len(added) == 2 && filepath.Dir(added[0]) == dir && added[1] == added[0]+queue.WhySuffix {
					wantAdded = added
				} else {
					wantAdded = []string{dir + "/<entry>", dir + "/<entry>" + queue.WhySuffix}
				}
			}
			if !slices.Equal(added, wantAdded) {
				t.Errorf("new files %q; want %q", added, wantAdded)
			}
			for p := range after {
				if filepath.Base(filepath.Dir(p)) == queue.StagingDir {
					t.Errorf("staging file left behind: %s", p)
				}
			}
			for _, q := range []string{config.MainQueue, config.NginxQueue, config.CertQueue, config.StatusQueue, "api", "sites"} {
				if names, _ := queue.Open(w.cfg.QueuePath(q)).List(); len(names) != 0 {
					t.Errorf("queue %s still holds %q", q, names)
				}
			}
		})
	}
}

var lineRE = regexp.MustCompile(`%LINE\+(\d+)%`)

// fixture is the payload of the first fixture of an event.
func fixture(t *testing.T, event string) []byte {
	t.Helper()
	for _, f := range testenv.Fixtures(t) {
		if f.Event == event {
			b, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no %s fixture", event)
	return nil
}
