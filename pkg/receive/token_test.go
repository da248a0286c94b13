package receive

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestDeployRequest(t *testing.T) {
	const token, other = "ci-token-0123456789abcdef", "next-token-0123456789abcd"
	r := start(t, "", func(s *Server) {
		s.Tokens = map[string][]config.DeployToken{"api": {{Name: "ci", Token: []byte(token)}, {Name: "other", Token: []byte(other)}}}
		s.Deployments = map[string]*config.Deployment{"api": {Name: "api", Branches: []string{"main", "release"}, Tags: []string{"v*"}}}
	})
	post := func(path, auth, ctype, body string) *http.Request {
		req, _ := http.NewRequest("POST", r.url+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		return req
	}
	sha := strings.Repeat("ab", 20)
	for _, tc := range []struct {
		name       string
		req        *http.Request
		status     int
		wantReason string
	}{
		{"no token", post("/deploy/api", "", "", ""), 401, "Authorization"},
		{"wrong token", post("/deploy/api", "Bearer nope", "", ""), 403, `wrong token, or no deployment "api" that takes tokens`},
		{"basic auth", post("/deploy/api", "Basic "+token, "", ""), 401, "Bearer"},
		{"token in the URL", post("/deploy/api?token="+token, "Bearer "+token, "", ""), 400, "query string"},
		{"unknown deployment", post("/deploy/web", "Bearer "+token, "", ""), 403, `wrong token, or no deployment "web" that takes tokens`},
		{"deployment name with ../", post("/deploy/..%2Fetc", "Bearer "+token, "", ""), 403, "wrong token"},
		// Issue 17, finding 4: only the refs the deployment follows.
		{"branch not followed", post("/deploy/api", "Bearer "+token, "application/json", `{"ref":"refs/heads/feature-unreviewed"}`), 403, "does not follow"},
		{"tag not followed", post("/deploy/api", "Bearer "+token, "application/json", `{"ref":"refs/tags/nightly"}`), 403, "does not follow"},
		{"not JSON", post("/deploy/api", "Bearer "+token, "text/plain", "commit="+sha), 415, "application/json"},
		{"unknown field", post("/deploy/api", "Bearer "+token, "application/json", `{"branch":"main"}`), 400, "unknown field"},
		{"bad commit", post("/deploy/api", "Bearer "+token, "application/json", `{"commit":"$(reboot)"}`), 400, "commit"},
		{"bad ref", post("/deploy/api", "Bearer "+token, "application/json", `{"ref":"refs/heads/../x"}`), 400, "ref"},
		{"too large", post("/deploy/api", "Bearer "+token, "application/json", `{"ref":"`+strings.Repeat("x", 5000)+`"}`), 413, ""},
	} {
		status, body := do(t, tc.req)
		if status != tc.status || !strings.Contains(body["description"].(string), tc.wantReason) {
			t.Errorf("%s: %d %v; want %d mentioning %q", tc.name, status, body, tc.status, tc.wantReason)
		}
	}
	if names, _ := r.q.List(); len(names) != 0 {
		t.Fatalf("rejected requests queued %v", names)
	}

	for _, tc := range []struct{ auth, body, ref, commit string }{
		{"Bearer " + token, "", "", ""},
		{"Bearer " + other, `{"commit":"` + sha + `","ref":"refs/heads/release"}`, "refs/heads/release", sha},
	} {
		req := post("/deploy/api", tc.auth, "application/json", tc.body)
		status, body := do(t, req)
		if status != 202 || body["queued"] != true || !strings.HasPrefix(body["delivery"].(string), "token-") {
			t.Fatalf("good request %q = %d %v; want 202 queued", tc.body, status, body)
		}
		names, _ := r.q.List()
		data, _ := os.ReadFile(filepath.Join(r.q.Dir(), names[len(names)-1]))
		e, err := event.DecodeDeployRequest(data)
		wantName := "ci"
		if strings.Contains(tc.auth, other) {
			wantName = "other"
		}
		if err != nil || e.Deployment != "api" || e.Delivery != body["delivery"] || e.Ref != tc.ref || e.Commit != tc.commit ||
			e.From != "127.0.0.1" || e.TokenName != wantName || bytes.Contains(data, []byte(token)) || bytes.Contains(data, []byte(other)) {
			t.Errorf("queued %s = %+v, %v", data, e, err)
		}
	}
}

// Issue 17, finding 4: an unknown deployment and a wrong token get the
// same answer, and failed attempts are limited per source: 429 with
// Retry-After after tokenFailures, even for the right token, logged once
// per burst rather than per guess; another window later lets it try again.
func TestTokenGuessesLimited(t *testing.T) {
	const token = "ci-token-0123456789abcdef"
	var logs testenv.Buffer
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	r := start(t, "", func(s *Server) {
		s.Tokens = map[string][]config.DeployToken{"app": {{Name: "ci", Token: []byte(token)}}}
		s.Deployments = map[string]*config.Deployment{"app": {Name: "app", Branches: []string{"main"}}}
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		s.Now = func() time.Time { return now }
	})
	post := func(name, tok string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", r.url+"/deploy/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.ReplaceAll(string(b), `\"`+name+`\"`, "NAME"), resp.Header
	}
	s1, b1, _ := post("app", "guess-0")
	s2, b2, _ := post("nope", "guess-1")
	if s1 != 403 || s1 != s2 || b1 != b2 {
		t.Errorf("wrong token for app = %d %s, any token for an unknown deployment = %d %s; want the same 403", s1, b1, s2, b2)
	}
	for i := 2; i < tokenFailures+5; i++ {
		status, _, h := post("app", fmt.Sprintf("guess-%d", i))
		if want := 403; i >= tokenFailures {
			want = 429
			if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 1 || ra > 61 {
				t.Errorf("guess %d: Retry-After = %q; want 1..61 seconds", i, h.Get("Retry-After"))
			}
		} else if status != want {
			t.Errorf("guess %d = %d; want %d", i, status, want)
		}
	}
	if status, _, _ := post("app", token); status != 429 {
		t.Errorf("the right token from a limited source = %d; want 429", status)
	}
	if n, m := strings.Count(logs.String(), "token refused"), strings.Count(logs.String(), "token attempts limited"); n != 1 || m != 1 {
		t.Errorf("log has %d \"token refused\" and %d \"token attempts limited\" lines for one burst; want 1 and 1:\n%s", n, m, logs.String())
	}
	now = now.Add(tokenWindow)
	if status, body, _ := post("app", token); status != 202 {
		t.Errorf("the right token after the window = %d %s; want 202", status, body)
	}
}
