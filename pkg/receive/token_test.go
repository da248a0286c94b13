package receive

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
)

func TestDeployRequest(t *testing.T) {
	const token, other = "ci-token-0123456789abcdef", "next-token-0123456789abcd"
	r := start(t, "", func(s *Server) {
		s.Tokens = map[string][]config.DeployToken{"api": {{Name: "ci", Token: []byte(token)}, {Name: "other", Token: []byte(other)}}}
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
		{"wrong token", post("/deploy/api", "Bearer nope", "", ""), 403, "wrong token"},
		{"basic auth", post("/deploy/api", "Basic "+token, "", ""), 401, "Bearer"},
		{"token in the URL", post("/deploy/api?token="+token, "Bearer "+token, "", ""), 400, "query string"},
		{"unknown deployment", post("/deploy/web", "Bearer "+token, "", ""), 404, "web"},
		{"deployment name with ../", post("/deploy/..%2Fetc", "Bearer "+token, "", ""), 404, ""},
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
