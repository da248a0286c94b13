package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func noEnv(string) string { return "" }

// unixClient talks HTTP over the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// TestRunServesStatus runs dh-route run with [status] on a unix socket and
// a token: the page answers while it routes, and stops with it.
func TestRunServesStatus(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t, "dh-route"), "status.sock")
	tokenFile := filepath.Join(t.TempDir(), "status-token")
	const token = "mV4pQ8sX2zR6tY1uK9wE3bN7"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := statustest.New(t, "\n[status]\nlisten = \""+sock+"\"\ntoken_file = \""+tokenFile+"\"\n")
	// dh-route run consumes queues/status too, which the install makes.
	if err := queue.Open(in.Config.QueuePath(config.StatusQueue)).Init(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- cli.Run(ctx, app, &cli.Env{Stdout: io.Discard, Stderr: &stderr, Getenv: noEnv}, []string{"-c", in.ConfigPath, "run"})
	}()

	client := unixClient(sock)
	get := func(path, auth string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://status"+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		var res *http.Response
		var err error
		for i := 0; i < 400; i++ {
			if res, err = client.Do(req); err == nil {
				break
			}
			select {
			case code := <-done:
				t.Fatalf("dh-route run exited %d before serving: %s", code, stderr.String())
			case <-time.After(25 * time.Millisecond):
			}
		}
		if err != nil {
			t.Fatalf("GET %s: %v (stderr: %s)", path, err, stderr.String())
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, body
	}

	if res, _ := get("/status", ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /status without the token = %d; want 401", res.StatusCode)
	}
	res, body := get("/status.json", "Bearer "+token)
	if res.StatusCode != 200 {
		t.Fatalf("GET /status.json = %d %s; want 200", res.StatusCode, body)
	}
	var p struct {
		Deployments []struct{ Name, State, Commit string }
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	states := map[string]string{}
	for _, d := range p.Deployments {
		states[d.Name] = d.State
	}
	for _, name := range []string{"api", "docs", "old", "web"} { // blog's state depends on the clock
		if states[name] != statustest.Deployments[name] {
			t.Errorf("GET /status.json: %s is %q; want %q", name, states[name], statustest.Deployments[name])
		}
	}
	res, body = get("/status", "Bearer "+token)
	if res.StatusCode != 200 || !strings.Contains(string(body), statustest.CommitOK[:12]) {
		t.Errorf("GET /status = %d; want 200 with api's commit", res.StatusCode)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("status socket: %v, %v; want mode 0660", fi, err)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("dh-route run after cancel = %d; want 0 (stderr: %s)", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dh-route run did not stop after cancel")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("status socket after stop: %v; want it removed", err)
	}
	if !strings.Contains(stderr.String(), "serving the status page") {
		t.Errorf("stderr %q; want the status page's log line", stderr.String())
	}
}

// A status page on a TCP address without a token, loopback included
// (issue 14, attack 5: an nginx site proxied to it), is a configuration
// error: dh-route exits 78 before it routes anything.
func TestRunRefusesTCPStatusWithoutToken(t *testing.T) {
	in := statustest.New(t, "")
	f, err := os.OpenFile(in.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[status]\nlisten = \"127.0.0.1:3401\"\n")
	f.Close()
	var stderr bytes.Buffer
	code := cli.Run(context.Background(), app, &cli.Env{Stdout: io.Discard, Stderr: &stderr, Getenv: noEnv},
		[]string{"-c", in.ConfigPath, "run", "--once"})
	if code != 78 || !strings.Contains(stderr.String(), "status.listen") {
		t.Errorf("dh-route run = %d, %q; want 78 naming status.listen", code, stderr.String())
	}
}

// prune deletes, now, the deliveries older than the retention, and only
// them.
func TestPrune(t *testing.T) {
	in := statustest.New(t, "\n[retention]\ndeliveries = \"72h\"\n")
	db, err := sql.Open("postgres", in.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// statustest's deliveries come from its fixed clock: make them recent.
	res, err := db.Exec(`UPDATE events SET received_at = now()`)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := res.RowsAffected()
	if _, err := db.Exec(`INSERT INTO events (delivery, event, received_at, status)
		VALUES ('old-delivery', 'push', now() - interval '4 days', 'voided')`); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	code := cli.Run(context.Background(), app, &cli.Env{Stdout: &out, Stderr: &errs, Getenv: noEnv},
		[]string{"-c", in.ConfigPath, "prune"})
	if code != 0 || !strings.HasPrefix(out.String(), "pruned 1 deliveries, 0 routes, 0 runs in ") {
		t.Errorf("prune = %d, %q, %q; want 0 and one delivery pruned", code, out.String(), errs.String())
	}
	var after int64
	if err := db.QueryRow(`SELECT count(*) FROM events`).Scan(&after); err != nil || after != before {
		t.Errorf("events after prune = %d, %v; want the %d recent ones", after, err, before)
	}
}

// TestStatusUnreadableQueue: a queue that cannot be read keeps the table's
// four columns and says why under it.
func TestStatusUnreadableQueue(t *testing.T) {
	in := statustest.New(t, "")
	api := filepath.Join(in.Dir, "queues", "api")
	if err := os.RemoveAll(api); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(api, nil, 0o644); err != nil { // a file where the directory should be
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cli.Run(context.Background(), app, &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: noEnv}, []string{"-c", in.ConfigPath, "status"})
	table, _, _ := strings.Cut(stdout.String(), "\n\n")
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "api ") && len(strings.Fields(line)) != 4 {
			t.Errorf("row %q has %d cells under 4 headers", line, len(strings.Fields(line)))
		}
	}
	if !strings.Contains(stdout.String(), "queue api: ") {
		t.Errorf("dh-route status does not say why queue api is unreadable:\n%s", stdout.String())
	}
}
