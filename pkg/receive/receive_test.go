package receive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

var (
	secret    = []byte("a-real-secret-of-some-length-0123")
	oldSecret = []byte("the-previous-secret-still-valid-x")
)

type rig struct {
	s   *Server
	url string
	q   *queue.Queue
}

// start serves a Server on 127.0.0.1 with a fresh queue under dir (a temp
// dir if empty).
func start(t *testing.T, dir string, tweak func(*Server)) *rig {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	q := queue.Open(filepath.Join(dir, "main"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Receive
	cfg.ReadHeaderTimeout = 300 * time.Millisecond
	s := &Server{Config: cfg, Secrets: [][]byte{secret, oldSecret}, Queue: q,
		Logger: slog.New(slog.DiscardHandler), Now: time.Now}
	if tweak != nil {
		tweak(s)
	}
	l, _, err := Listen("127.0.0.1:0", "", os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v; want nil after cancel", err)
		}
	})
	return &rig{s: s, url: "http://" + l.Addr().String(), q: q}
}

var guidN int

func newGUID() string {
	guidN++
	return fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", guidN)
}

// delivery builds a signed GitHub-style request.
func delivery(url, event string, body []byte) *http.Request {
	req, _ := http.NewRequest("POST", url+"/github-webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", newGUID())
	req.Header.Set("X-GitHub-Hook-ID", "292430182")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set("X-Hub-Signature-256", github.Sign(body, secret))
	return req
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", req.Method, req.URL, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	return resp.StatusCode, body
}

// entries decodes every entry in the queue.
func (r *rig) entries(t *testing.T) []*event.GitHubEvent {
	t.Helper()
	names, err := r.q.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.GitHubEvent
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(r.q.Dir(), n))
		if err != nil {
			t.Fatal(err)
		}
		e, err := event.DecodeGitHubEvent(b)
		if err != nil {
			t.Fatalf("entry %s: %v", n, err)
		}
		out = append(out, e)
	}
	return out
}

func TestFixturesLandByteForByte(t *testing.T) {
	r := start(t, "", nil)
	n := 0
	for _, f := range testenv.Fixtures(t) {
		if f.Event != "push" && f.Event != "ping" {
			continue
		}
		n++
		body, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		req := delivery(r.url, f.Event, body)
		guid := req.Header.Get("X-GitHub-Delivery")
		status, answer := do(t, req)
		if status != http.StatusAccepted || answer["delivery"] != guid || answer["queued"] != true {
			t.Fatalf("POST %s = %d %v; want 202 with the delivery queued", f.Path, status, answer)
		}
		names, _ := r.q.List()
		raw, _ := os.ReadFile(filepath.Join(r.q.Dir(), names[len(names)-1]))
		if !bytes.HasSuffix(raw, append(append([]byte(`,"payload":`), body...), "}\n"...)) {
			t.Errorf("%s: the entry file does not hold the body byte for byte", f.Path)
		}
		es := r.entries(t)
		last := es[len(es)-1]
		if !bytes.Equal(last.Payload, bytes.TrimSpace(body)) {
			t.Errorf("%s: decoded payload differs from the body sent (%d vs %d bytes)", f.Path, len(last.Payload), len(body))
		}
		if last.Delivery != guid || last.Event != f.Event || last.HookID != 292430182 || last.ReceivedAt.IsZero() {
			t.Errorf("%s: entry = %+v; want delivery %s, event %s, hook 292430182, a receipt time", f.Path, last.Envelope, guid, f.Event)
		}
	}
	if n < 20 || len(r.entries(t)) != n {
		t.Errorf("queued %d entries for %d push and ping fixtures", len(r.entries(t)), n)
	}
}

func TestFormEncodedAndOtherForges(t *testing.T) {
	r := start(t, "", nil)
	payload := []byte(`{"zen":"Design for failure.","hook_id":1}`)
	form := []byte(url.Values{"payload": {string(payload)}}.Encode())

	// GitHub: the signature covers the form body as sent.
	req := delivery(r.url, "ping", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, body := do(t, req); status != http.StatusAccepted {
		t.Fatalf("form delivery = %d %v; want 202", status, body)
	}
	// Gitea: its own signature header, bare hex over the JSON payload.
	req = delivery(r.url, "push", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Del("X-Hub-Signature-256")
	req.Header.Set("X-Gitea-Signature", strings.TrimPrefix(github.Sign(payload, secret), "sha256="))
	req.Header.Set("X-Gitea-Event", "push")
	if status, body := do(t, req); status != http.StatusAccepted {
		t.Fatalf("gitea delivery = %d %v; want 202", status, body)
	}
	// Rotation: the previous secret still signs.
	req = delivery(r.url, "ping", payload)
	req.Header.Set("X-Hub-Signature-256", github.Sign(payload, oldSecret))
	if status, body := do(t, req); status != http.StatusAccepted {
		t.Fatalf("delivery signed with the second secret = %d %v; want 202", status, body)
	}
	es := r.entries(t)
	if len(es) != 3 || !bytes.Equal(es[0].Payload, payload) || !bytes.Equal(es[1].Payload, payload) || es[1].Source != "gitea" || es[0].Source != "" {
		t.Errorf("entries = %d, payloads %q / %q, sources %q / %q; want both payloads decoded, the second from gitea",
			len(es), es[0].Payload, es[1].Payload, es[0].Source, es[1].Source)
	}
}

func TestBadInputGetsItsStatusAndLeavesNothing(t *testing.T) {
	push := []byte(`{"ref":"refs/heads/main"}`)
	big := bytes.Repeat([]byte("x"), 2048)
	cases := []struct {
		name   string
		status int
		want   string // in the description
		tweak  func(*Server)
		req    func(url string) *http.Request
	}{
		{"GET", 405, "POST", nil, func(u string) *http.Request {
			r, _ := http.NewRequest("GET", u+"/github-webhook", nil)
			return r
		}},
		{"no signature", 401, "missing X-Hub-Signature-256", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Del("X-Hub-Signature-256")
			return r
		}},
		{"sha1 only", 401, "SHA-1", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Del("X-Hub-Signature-256")
			r.Header.Set("X-Hub-Signature", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")
			return r
		}},
		{"malformed signature", 401, "sha256=<64 hex digits>", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-Hub-Signature-256", "sha256=zz")
			return r
		}},
		{"wrong signature", 403, "does not match", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-Hub-Signature-256", github.Sign(push, []byte("some-other-secret-entirely")))
			return r
		}},
		{"body changed after signing", 403, "does not match", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Body = io.NopCloser(bytes.NewReader(append(push[:len(push)-1:len(push)-1], ' ', '}')))
			r.ContentLength++
			return r
		}},
		{"no event", 400, "X-GitHub-Event", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Del("X-GitHub-Event")
			return r
		}},
		{"event with shell characters", 400, "X-GitHub-Event", nil, func(u string) *http.Request {
			return delivery(u, "push;rm -rf /", push)
		}},
		{"no delivery", 400, "X-GitHub-Delivery", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Del("X-GitHub-Delivery")
			return r
		}},
		{"delivery not a GUID", 400, "X-GitHub-Delivery", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-GitHub-Delivery", "../../etc/passwd")
			return r
		}},
		{"bad hook id", 400, "X-GitHub-Hook-ID", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-GitHub-Hook-ID", "12abc")
			return r
		}},
		{"text/plain", 415, "content type", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}},
		{"too large", 413, "larger than 1024", func(s *Server) { s.Config.MaxBody = 1024 }, func(u string) *http.Request {
			return delivery(u, "push", big)
		}},
		{"too large, chunked", 413, "larger than 1024", func(s *Server) { s.Config.MaxBody = 1024 }, func(u string) *http.Request {
			r := delivery(u, "push", big)
			r.ContentLength = -1
			r.Body = io.NopCloser(bytes.NewReader(big))
			return r
		}},
		{"signed but not JSON (GitHub's test vector)", 400, "not valid JSON", func(s *Server) {
			s.Secrets = [][]byte{[]byte("It's a Secret to Everybody")}
		}, func(u string) *http.Request {
			r := delivery(u, "push", []byte("Hello, World!"))
			r.Header.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
			return r
		}},
		{"JSON but not an object", 400, "not a JSON object", nil, func(u string) *http.Request {
			return delivery(u, "push", []byte(`["x"]`))
		}},
		{"form without payload", 400, "no payload field", nil, func(u string) *http.Request {
			r := delivery(u, "push", []byte("other=1"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}},
		{"source not allowed", 403, "127.0.0.1 is not allowed", func(s *Server) {
			s.Allowed = []netip.Prefix{netip.MustParsePrefix("192.30.252.0/22")}
		}, func(u string) *http.Request { return delivery(u, "push", push) }},
		{"spoofed X-Forwarded-For", 403, "198.51.100.7 is not allowed", func(s *Server) {
			s.Allowed = []netip.Prefix{netip.MustParsePrefix("192.30.252.0/22")}
			s.Proxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		}, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-Forwarded-For", "192.30.252.1, 198.51.100.7")
			return r
		}},
		{"missing X-Forwarded-For behind a proxy", 403, "without X-Forwarded-For", func(s *Server) {
			s.Proxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		}, func(u string) *http.Request { return delivery(u, "push", push) }},
		// Issue 17, finding 3: with the proxy elsewhere, a client reaching
		// dh-receive directly cannot name its address in the header.
		{"X-Forwarded-For from a peer that is not a proxy", 403, "127.0.0.1 is not allowed", func(s *Server) {
			s.Allowed = []netip.Prefix{netip.MustParsePrefix("192.30.252.0/22")}
			s.Proxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
		}, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.Header.Set("X-Forwarded-For", "192.30.252.1")
			return r
		}},
		{"unknown path", 404, "no such endpoint", nil, func(u string) *http.Request {
			r := delivery(u, "push", push)
			r.URL.Path = "/other"
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, "", tc.tweak)
			status, body := do(t, tc.req(r.url))
			desc, _ := body["description"].(string)
			if status != tc.status || !strings.Contains(desc, tc.want) || body["status"] != float64(tc.status) || body["message"] != http.StatusText(tc.status) {
				t.Errorf("answer = %d %v; want %d with a description containing %q", status, body, tc.status, tc.want)
			}
			if names, _ := r.q.List(); len(names) != 0 {
				t.Errorf("queue has %d entries after a rejected delivery", len(names))
			}
			if tmp, _ := os.ReadDir(filepath.Join(r.q.Dir(), queue.StagingDir)); len(tmp) != 0 {
				t.Errorf("staging has %d files after a rejected delivery", len(tmp))
			}
		})
	}
}

func TestForwardedForFromTrustedProxy(t *testing.T) {
	r := start(t, "", func(s *Server) {
		s.Allowed = []netip.Prefix{netip.MustParsePrefix("192.30.252.0/22")}
		s.Proxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	// Two proxies (10.1.2.3, then the one on 127.0.0.1): the client is the
	// right-most address that is not a proxy.
	req := delivery(r.url, "ping", []byte(`{}`))
	req.Header.Set("X-Forwarded-For", "198.51.100.7, 192.30.252.1, 10.1.2.3")
	if status, body := do(t, req); status != http.StatusAccepted {
		t.Errorf("delivery via a trusted proxy from an allowed address = %d %v; want 202", status, body)
	}
}

// A full queue file system gives 503, never 202, and nothing half-written;
// once space returns, deliveries are accepted again.
func TestFullDiskAnswers503(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs and must run as root (make test runs as root on our machines)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	r := start(t, dir, nil)
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	f.Write(make([]byte, 200<<10)) // more than fits: fills the file system
	f.Close()

	body := bytes.Repeat([]byte(" "), 16<<10)
	body[0], body[len(body)-1] = '{', '}'
	for i := 0; i < 3; i++ {
		if status, answer := do(t, delivery(r.url, "push", body)); status != http.StatusServiceUnavailable {
			t.Fatalf("delivery to a full disk = %d %v; want 503", status, answer)
		}
	}
	if names, _ := r.q.List(); len(names) != 0 {
		t.Errorf("queue has %d entries after 503s", len(names))
	}
	if tmp, _ := os.ReadDir(filepath.Join(r.q.Dir(), queue.StagingDir)); len(tmp) != 0 {
		t.Errorf("staging has %d files after 503s", len(tmp))
	}
	if h := r.s.Check(); h.Status != "unhealthy" {
		t.Errorf("Check() on a full disk = %+v; want unhealthy", h)
	}
	os.Remove(filler)
	if status, answer := do(t, delivery(r.url, "push", body)); status != http.StatusAccepted {
		t.Errorf("delivery after space returned = %d %v; want 202", status, answer)
	}
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	r := start(t, "", nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /github-webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n") // and never finish
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after 10 s with ReadHeaderTimeout 300ms (read %d bytes)", n)
	}
}

func TestHealthAndInfo(t *testing.T) {
	r := start(t, "", nil)
	status, body := do(t, mustGet(r.url+"/healthz"))
	if status != 200 || body["status"] != "ok" {
		t.Errorf("GET /healthz = %d %v; want 200 ok", status, body)
	}
	status, body = do(t, mustGet(r.url+"/"))
	if status != 200 || body["service"] != "dh-receive" || body["webhook"] != "/github-webhook" {
		t.Errorf("GET / = %d %v; want service info", status, body)
	}
	// An entry waiting for an hour: dh-route is stalled.
	old := fmt.Sprintf("%020d-1-00000000.json", time.Now().Add(-time.Hour).UnixNano())
	os.WriteFile(filepath.Join(r.q.Dir(), old), []byte(`{}`), 0o640)
	status, body = do(t, mustGet(r.url+"/healthz"))
	if status != 503 || !strings.Contains(fmt.Sprint(body["reasons"]), "max_queue_age") || body["queue_depth"] != float64(1) {
		t.Errorf("GET /healthz with a stale entry = %d %v; want 503 naming max_queue_age", status, body)
	}
	os.Remove(filepath.Join(r.q.Dir(), old))
	os.RemoveAll(filepath.Join(r.q.Dir(), queue.StagingDir))
	status, body = do(t, mustGet(r.url+"/healthz"))
	if status != 503 || !strings.Contains(fmt.Sprint(body["reasons"]), "not writable") {
		t.Errorf("GET /healthz without a writable queue = %d %v; want 503 naming the queue", status, body)
	}
}

func mustGet(u string) *http.Request {
	r, _ := http.NewRequest("GET", u, nil)
	return r
}

func TestUnixSocket(t *testing.T) {
	dir := testenv.ShortTempDir(t, "rcv")
	sock := filepath.Join(dir, "receive.sock")
	os.WriteFile(sock, nil, 0o600) // a plain file is not replaced
	if _, _, err := Listen(sock, "", os.Getenv); err == nil {
		t.Fatalf("Listen(%q) over a regular file = nil; want an error", sock)
	}
	os.Remove(sock)
	l, _, err := Listen(sock, "", os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, err := os.Stat(sock); err == nil && fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v; want 0660", fi.Mode().Perm())
	}
}

func TestWebhookPathIsLiteral(t *testing.T) {
	r := start(t, "", func(s *Server) { s.Config.Path = "/hooks/{name}" })
	req := delivery(r.url, "ping", []byte(`{}`))
	req.URL.Path = "/hooks/{name}"
	if status, body := do(t, req); status != http.StatusAccepted {
		t.Errorf("POST /hooks/{name} = %d %v; want 202", status, body)
	}
	req = delivery(r.url, "ping", []byte(`{}`))
	req.URL.Path = "/hooks/other"
	if status, _ := do(t, req); status != http.StatusNotFound {
		t.Errorf("POST /hooks/other = %d; want 404", status)
	}
}
