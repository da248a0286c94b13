package receive

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// Waiting requests are bounded by receive.max_waiting: one more gets 503
// with Retry-After and queues nothing. With no status listener answering
// (a socket nobody listens on), a wait ends at its deadline with 202,
// outcome pending and the reason.
func TestWaitingBounded(t *testing.T) {
	const token = "ci-token-0123456789abcdef"
	r := start(t, "", func(s *Server) {
		s.Tokens = map[string][]config.DeployToken{"api": {{Name: "ci", Token: []byte(token)}}}
		s.Deployments = map[string]*config.Deployment{"api": {Name: "api", Branches: []string{"main"}}}
		s.Config.MaxWaiting = 1
		s.Status = awayStatus(t)
	})
	post := func(wait string) *http.Request {
		req, _ := http.NewRequest("POST", r.url+"/deploy/api", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set(HeaderWait, wait)
		return req
	}
	var wg sync.WaitGroup
	var first map[string]any
	var firstStatus int
	wg.Add(1)
	go func() {
		defer wg.Done()
		firstStatus, first = do(t, post("2"))
	}()
	// The first waits; the second finds the slot taken.
	untilWaiting(r)
	code, body := do(t, post("2"))
	if code != http.StatusServiceUnavailable || !strings.Contains(body["description"].(string), "receive.max_waiting") {
		t.Errorf("second waiting request = %d %v; want 503 naming receive.max_waiting", code, body)
	}
	wg.Wait()
	if firstStatus != http.StatusAccepted || first["outcome"] != OutcomePending || !strings.Contains(first["error"].(string), "status listener") ||
		!strings.HasSuffix(first["location"].(string), "/status/deliveries/"+first["delivery"].(string)) {
		t.Errorf("first waiting request = %d %v; want 202 pending at the deadline, saying the status listener is away", firstStatus, first)
	}
	if e := fmt.Sprint(first["error"]); strings.Contains(e, "none.sock") || strings.Contains(e, "dial") {
		t.Errorf("the waiting client is told %q; want no address or socket path of the status listener (the log has them)", e)
	}
	if names, _ := r.q.List(); len(names) != 1 {
		t.Errorf("queue holds %d entries; want the first request's only", len(names))
	}
	if n := r.s.waiting.Load(); n != 0 {
		t.Errorf("%d requests still counted as waiting; want 0", n)
	}
}

// awayStatus is a status listener nobody answers: a socket nobody
// listens on, asked again every 50ms.
func awayStatus(t *testing.T) *StatusClient {
	status, err := NewStatusClient("unix:"+filepath.Join(testenv.ShortTempDir(t, "dh-wait"), "none.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	status.Poll = 50 * time.Millisecond
	return status
}

// untilWaiting returns once a request waits on r's server (or after 10s).
func untilWaiting(r *rig) {
	deadline := time.Now().Add(10 * time.Second)
	for r.s.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// What a waiting hook prints comes from a build (its log) and reaches the
// pusher's terminal through git: Push shows it defused, escape sequences
// in caret notation and a carriage return as a line break, so a log can
// neither drive the terminal nor overwrite a line printed before it.
func TestHookWaitDefused(t *testing.T) {
	socket := filepath.Join(testenv.ShortTempDir(t, "dh-hook"), "hook.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Trailer", TrailerOutcome)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "dh-deployer: app: run 7 of "+strings.Repeat("a", 40)+"\n")
		io.WriteString(w, "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2Kbuild failed\rdh-deployer: app: run 7 \xe6")
		w.(http.Flusher).Flush()
		io.WriteString(w, "\x97\xa5 succeeded\n")
		w.Header().Set(TrailerOutcome, OutcomeFailed)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	var out strings.Builder
	_, err = Push(t.Context(), socket, "acme/app", strings.NewReader(""), time.Minute, &out)
	want := "dh-deployer: app: run 7 of " + strings.Repeat("a", 40) + "\n" +
		"^[]52;c;cm0gLXJmIH4=^G^[[2Kbuild failed\ndh-deployer: app: run 7 日 succeeded\n"
	if out.String() != want || cli.ExitStatus(err) != sysexits.Failure {
		t.Errorf("Push printed %q, %v; want %q and the failure", out.String(), err, want)
	}
}

// One deployment's token (a CI secret a pusher may reach) holds at most a
// quarter of receive.max_waiting: with 4 slots, a second waiting request
// for api gets 503 naming the share, while one for web still waits.
func TestWaitingShared(t *testing.T) {
	const token, other = "ci-token-0123456789abcdef", "web-token-0123456789abcdef"
	r := start(t, "", func(s *Server) {
		s.Tokens = map[string][]config.DeployToken{"api": {{Name: "ci", Token: []byte(token)}}, "web": {{Name: "web", Token: []byte(other)}}}
		s.Deployments = map[string]*config.Deployment{"api": {Name: "api", Branches: []string{"main"}}, "web": {Name: "web", Branches: []string{"main"}}}
		s.Config.MaxWaiting = 4
		s.Status = awayStatus(t)
	})
	post := func(name, tok string) *http.Request {
		req, _ := http.NewRequest("POST", r.url+"/deploy/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(HeaderWait, "2")
		return req
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); do(t, post("api", token)) }()
	untilWaiting(r)
	code, body := do(t, post("api", token))
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["description"]), "of deployment api are waiting already") {
		t.Errorf("second waiting request for api = %d %v; want 503 naming api's share", code, body)
	}
	if code, body := do(t, post("web", other)); code != http.StatusAccepted || body["outcome"] != OutcomePending {
		t.Errorf("waiting request for web = %d %v; want to wait (202 pending at the deadline)", code, body)
	}
	wg.Wait()
	if n := r.s.waiting.Load(); n != 0 || len(r.s.waitingBy) != 0 {
		t.Errorf("%d requests still counted as waiting (%v); want none", n, r.s.waitingBy)
	}
}
