package ghstatus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

const (
	token  = "ghs_0123456789abcdefTOKENxyz"
	repo   = "ducompsoc/durhack"
	sha    = "0123456789abcdef0123456789abcdef01234567"
	sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// call is one request the fake GitHub received.
type call struct {
	Method string
	Path   string // as sent, escaped
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// fakeGitHub is a GitHub API on 127.0.0.1 that records every request and
// answers with the next of its replies (201 Created once they run out).
type fakeGitHub struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []call
	replies []func(http.ResponseWriter, *http.Request)
}

func newFakeGitHub(t *testing.T, replies ...func(http.ResponseWriter, *http.Request)) *fakeGitHub {
	f := &fakeGitHub{replies: replies}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		c := call{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Raw: raw}
		if err := json.Unmarshal(raw, &c.Body); err != nil {
			t.Errorf("request body %q is not a JSON object: %v", raw, err)
		}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		var reply func(http.ResponseWriter, *http.Request)
		if len(f.replies) > 0 {
			reply, f.replies = f.replies[0], f.replies[1:]
		}
		f.mu.Unlock()
		if reply == nil {
			reply = answer(http.StatusCreated, `{"id":1,"state":"pending"}`)
		}
		reply(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// answer replies with a status, a JSON body and header pairs.
func answer(code int, body string, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// hangUp closes the connection without an answer: a network error.
func hangUp(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// client returns a client of f with short waits, logging into log.
func client(f *fakeGitHub, log *bytes.Buffer) *ghstatus.Client {
	c := &ghstatus.Client{
		BaseURL:   f.URL,
		Token:     token,
		Context:   "dh-deployer/api",
		UserAgent: "dh-deployer/v1.2.3",
		HTTP:      f.Client(),
		Retry:     httpretry.Policy{Backoff: time.Millisecond, Timeout: 5 * time.Second},
	}
	if log != nil {
		c.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// testContext bounds a test, so that a wait that should not happen fails
// it quickly instead of hanging.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSetContract posts pending then success and checks every part of
// each request against GitHub's documented contract.
func TestSetContract(t *testing.T) {
	f := newFakeGitHub(t)
	c := client(f, nil)
	ctx := testContext(t)
	statuses := []ghstatus.Status{
		{State: ghstatus.Pending, Description: "deploying api", TargetURL: "https://deploy.example/runs/7"},
		{State: ghstatus.Success, Description: "deployed api in 12s", TargetURL: "https://deploy.example/runs/7"},
	}
	for _, s := range statuses {
		if err := c.Set(ctx, repo, sha, s); err != nil {
			t.Fatalf("Set(%q) = %v; want nil", s.State, err)
		}
	}
	calls := f.Calls()
	if len(calls) != len(statuses) {
		t.Fatalf("GitHub got %d requests; want %d", len(calls), len(statuses))
	}
	for i, got := range calls {
		want := statuses[i]
		if got.Method != http.MethodPost {
			t.Errorf("request %d: method %s; want POST", i, got.Method)
		}
		if wantPath := "/repos/" + repo + "/statuses/" + sha; got.Path != wantPath {
			t.Errorf("request %d: path %q; want %q", i, got.Path, wantPath)
		}
		for name, value := range map[string]string{
			"Accept":               "application/vnd.github+json",
			"Authorization":        "Bearer " + token,
			"X-GitHub-Api-Version": "2022-11-28",
			"User-Agent":           "dh-deployer/v1.2.3",
			"Content-Type":         "application/json",
		} {
			if v := got.Header.Values(name); len(v) != 1 || v[0] != value {
				t.Errorf("request %d: header %s = %q; want [%q]", i, name, v, value)
			}
		}
		wantBody := map[string]any{
			"state":       string(want.State),
			"target_url":  want.TargetURL,
			"description": want.Description,
			"context":     "dh-deployer/api",
		}
		if !mapsEqual(got.Body, wantBody) {
			t.Errorf("request %d: body %s; want %v", i, got.Raw, wantBody)
		}
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestSetDefaults: an empty TargetURL is left out of the body, Context and
// User-Agent take their defaults.
func TestSetDefaults(t *testing.T) {
	f := newFakeGitHub(t)
	c := &ghstatus.Client{BaseURL: f.URL, Token: token, HTTP: f.Client()}
	if err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Error, Description: "checkout failed"}); err != nil {
		t.Fatalf("Set = %v; want nil", err)
	}
	calls := f.Calls()
	if len(calls) != 1 {
		t.Fatalf("GitHub got %d requests; want 1", len(calls))
	}
	want := map[string]any{"state": "error", "description": "checkout failed", "context": ghstatus.DefaultContext}
	if !mapsEqual(calls[0].Body, want) {
		t.Errorf("body %s; want %v (no target_url)", calls[0].Raw, want)
	}
	if ua := calls[0].Header.Get("User-Agent"); !strings.HasPrefix(ua, "dh-deployer/") {
		t.Errorf("User-Agent %q; want dh-deployer/...", ua)
	}
}

// TestSetEnterpriseBaseURL: a base with a path, with or without a final
// slash, keeps its path and gets no double slash.
func TestSetEnterpriseBaseURL(t *testing.T) {
	for _, suffix := range []string{"/api/v3", "/api/v3/", "/api/v3//"} {
		f := newFakeGitHub(t)
		c := client(f, nil)
		c.BaseURL = f.URL + suffix
		if err := c.Set(testContext(t), repo, sha256, ghstatus.Status{State: ghstatus.Pending}); err != nil {
			t.Fatalf("Set with BaseURL %q = %v; want nil", c.BaseURL, err)
		}
		want := "/api/v3/repos/" + repo + "/statuses/" + sha256
		if calls := f.Calls(); len(calls) != 1 || calls[0].Path != want {
			t.Errorf("Set with BaseURL %q: requests %+v; want one to %q", c.BaseURL, calls, want)
		}
	}
}

// TestSetRetries: answers that may go away are retried, with the wait the
// server asks for; the status is then set.
func TestSetRetries(t *testing.T) {
	past := strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name  string
		first func(http.ResponseWriter, *http.Request)
	}{
		{"500", answer(500, `{"message":"Server Error"}`)},
		{"502 not JSON", answer(502, `<html>bad gateway</html>`)},
		{"429 Retry-After 0", answer(429, `{"message":"slow down"}`, "Retry-After", "0")},
		{"403 secondary rate limit", answer(403, `{"message":"You have exceeded a secondary rate limit"}`, "Retry-After", "0")},
		{"403 primary rate limit", answer(403, `{"message":"API rate limit exceeded"}`, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", past)},
		{"connection closed", hangUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t, tc.first)
			c := client(f, nil)
			// A backoff longer than the test's context: only the server's
			// Retry-After or X-RateLimit-Reset, where sent, lets it pass.
			if strings.Contains(tc.name, "rate limit") || strings.Contains(tc.name, "Retry-After") {
				c.Retry.Backoff = time.Hour
			}
			if err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Success}); err != nil {
				t.Fatalf("Set = %v; want nil after a retry", err)
			}
			if n := len(f.Calls()); n != 2 {
				t.Errorf("GitHub got %d requests; want 2", n)
			}
		})
	}
}

// TestSetFinalAnswers: other answers are not retried, and the error names
// the status code and GitHub's message, and is classified.
func TestSetFinalAnswers(t *testing.T) {
	for _, tc := range []struct {
		reply    func(http.ResponseWriter, *http.Request)
		code     int
		contains []string
		class    int
	}{
		{
			answer(422, `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","field":"state","message":"state is not included in the list"}],"documentation_url":"https://docs.github.com/rest"}`),
			422, []string{"422", "Validation Failed", "state is not included in the list"}, sysexits.DataErr,
		},
		{answer(401, `{"message":"Bad credentials"}`), 401, []string{"401", "Bad credentials"}, sysexits.Config},
		{answer(404, `{"message":"Not Found"}`), 404, []string{"404", "Not Found"}, sysexits.NoPerm},
		{answer(403, `{"message":"Resource not accessible by integration"}`), 403, []string{"403", "Resource not accessible by integration"}, sysexits.NoPerm},
		{answer(200, `{}`), 200, []string{"200"}, sysexits.Failure},
	} {
		f := newFakeGitHub(t, tc.reply)
		err := client(f, nil).Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Failure})
		if err == nil {
			t.Errorf("Set answered %d = nil; want an error", tc.code)
			continue
		}
		for _, s := range tc.contains {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Set answered %d = %q; want it to contain %q", tc.code, err, s)
			}
		}
		if apiErr, ok := errors.AsType[*ghstatus.APIError](err); !ok || apiErr.StatusCode != tc.code {
			t.Errorf("Set answered %d = %#v; want an *APIError with that code", tc.code, err)
		}
		if got := sysexits.Code(err); got != tc.class {
			t.Errorf("Set answered %d: class %d; want %d", tc.code, got, tc.class)
		}
		if n := len(f.Calls()); n != 1 {
			t.Errorf("Set answered %d: GitHub got %d requests; want 1 (no retry)", tc.code, n)
		}
	}
}

// TestSetGivesUp: a server that keeps failing gets Attempts requests, and
// the error is temporary.
func TestSetGivesUp(t *testing.T) {
	f := newFakeGitHub(t)
	f.replies = slices.Repeat([]func(http.ResponseWriter, *http.Request){answer(503, `{"message":"Service Unavailable"}`)}, 10)
	c := client(f, nil)
	c.Retry.Attempts = 4
	err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if err == nil || !strings.Contains(err.Error(), "503") || !queue.IsRetry(err) {
		t.Errorf("Set = %v (class %d); want a 503 error classified %d", err, sysexits.Code(err), sysexits.TempFail)
	}
	if n := len(f.Calls()); n != 4 {
		t.Errorf("GitHub got %d requests; want 4", n)
	}
}

// TestSetWaitBeyondMaxWait: a server asking to wait longer than MaxWait is
// not retried.
func TestSetWaitBeyondMaxWait(t *testing.T) {
	f := newFakeGitHub(t, answer(429, `{"message":"API rate limit exceeded"}`, "Retry-After", "3600"))
	c := client(f, nil)
	c.Retry.MaxWait = time.Second
	err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "API rate limit exceeded") {
		t.Errorf("Set = %v; want a 429 error with GitHub's message", err)
	}
	if n := len(f.Calls()); n != 1 {
		t.Errorf("GitHub got %d requests; want 1", n)
	}
}

// TestSetNetworkError: a server that is not there is tried Attempts times;
// the error is temporary.
func TestSetNetworkError(t *testing.T) {
	f := newFakeGitHub(t)
	f.replies = slices.Repeat([]func(http.ResponseWriter, *http.Request){hangUp}, 10)
	c := client(f, nil)
	err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if err == nil || !queue.IsRetry(err) {
		t.Errorf("Set = %v (class %d); want an error classified %d", err, sysexits.Code(err), sysexits.TempFail)
	}
	if n := len(f.Calls()); n != httpretry.DefaultAttempts {
		t.Errorf("GitHub got %d requests; want %d", n, httpretry.DefaultAttempts)
	}
}

// TestSetContextEnds: Set stops waiting when its context ends.
func TestSetContextEnds(t *testing.T) {
	f := newFakeGitHub(t, answer(500, `{}`))
	c := client(f, nil)
	c.Retry.Backoff = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := c.Set(ctx, repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Set = %v; want context.DeadlineExceeded", err)
	}
}

// TestSetRejects: bad arguments are refused before any request.
func TestSetRejects(t *testing.T) {
	f := newFakeGitHub(t)
	c := client(f, nil)
	ok := ghstatus.Status{State: ghstatus.Pending}
	for _, tc := range []struct {
		repo, sha string
		s         ghstatus.Status
	}{
		{"", sha, ok},
		{"ducompsoc", sha, ok},
		{"ducompsoc/", sha, ok},
		{"/durhack", sha, ok},
		{"ducompsoc/durhack/x", sha, ok},
		{"../durhack", sha, ok},
		{"ducompsoc/..", sha, ok},
		{"ducompsoc/.", sha, ok},
		{"du compsoc/durhack", sha, ok},
		{"ducompsoc/dur%2fhack", sha, ok},
		{"ducompsoc/durhack?x=1", sha, ok},
		{"ducompsoc/dürhack", sha, ok},
		{repo, "", ok},
		{repo, sha[:39], ok},
		{repo, sha + "8", ok},
		{repo, strings.ToUpper(sha), ok},
		{repo, "g123456789abcdef0123456789abcdef01234567", ok},
		{repo, "main", ok},
		{repo, "../../../../user", ok},
		{repo, sha, ghstatus.Status{State: "done"}},
		{repo, sha, ghstatus.Status{State: ""}},
		{repo, sha, ghstatus.Status{State: ghstatus.Pending, TargetURL: "javascript:alert(1)"}},
		{repo, sha, ghstatus.Status{State: ghstatus.Pending, TargetURL: "/runs/1"}},
	} {
		if err := c.Set(testContext(t), tc.repo, tc.sha, tc.s); err == nil {
			t.Errorf("Set(%q, %q, %+v) = nil; want an error", tc.repo, tc.sha, tc.s)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("GitHub got %d requests, the first to %s; want none", len(calls), calls[0].Path)
	}
}

// TestSetAcceptsNames: every character GitHub allows in names passes.
func TestSetAcceptsNames(t *testing.T) {
	f := newFakeGitHub(t)
	c := client(f, nil)
	for _, r := range []string{"a/b", "Du-Comp.Soc_1/.github", "x/a..b", "o/-"} {
		if err := c.Set(testContext(t), r, sha, ghstatus.Status{State: ghstatus.Pending}); err != nil {
			t.Errorf("Set(%q) = %v; want nil", r, err)
		}
	}
	if n := len(f.Calls()); n != 4 {
		t.Errorf("GitHub got %d requests; want 4", n)
	}
}

// TestDescription: a description is cut to 140 characters on a rune
// boundary; one that fits is sent as it is.
func TestDescription(t *testing.T) {
	long := "déployé " + strings.Repeat("é€😀", 100)
	exact := strings.Repeat("€", ghstatus.MaxDescription)
	f := newFakeGitHub(t)
	c := client(f, nil)
	for _, d := range []string{long, exact, "line one\nline two"} {
		if err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending, Description: d}); err != nil {
			t.Fatalf("Set = %v", err)
		}
	}
	calls := f.Calls()
	if len(calls) != 3 {
		t.Fatalf("GitHub got %d requests; want 3", len(calls))
	}
	got, _ := calls[0].Body["description"].(string)
	if n := utf8.RuneCountInString(got); n != ghstatus.MaxDescription || !utf8.ValidString(got) ||
		!strings.HasPrefix(long, strings.TrimSuffix(got, "…")) || !strings.HasSuffix(got, "…") {
		t.Errorf("description sent %q (%d runes); want the first %d runes of %q ending in …", got, n, ghstatus.MaxDescription-1, long)
	}
	if got := calls[1].Body["description"]; got != exact {
		t.Errorf("description sent %q; want %q unchanged", got, exact)
	}
	if got := calls[2].Body["description"]; got != "line one line two" {
		t.Errorf("description sent %q; want %q", got, "line one line two")
	}
}

// TestDisabled: without a token nothing is sent, whatever the arguments.
func TestDisabled(t *testing.T) {
	f := newFakeGitHub(t)
	c := client(f, nil)
	c.Token = ""
	if c.Enabled() {
		t.Errorf("Enabled() = true without a token")
	}
	for _, s := range []ghstatus.Status{{State: ghstatus.Pending}, {State: "bogus"}} {
		if err := c.Set(testContext(t), repo, sha, s); err != nil {
			t.Errorf("disabled Set(%+v) = %v; want nil", s, err)
		}
	}
	var nilClient *ghstatus.Client
	if err := nilClient.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending}); err != nil {
		t.Errorf("nil Client Set = %v; want nil", err)
	}
	if n := len(f.Calls()); n != 0 {
		t.Errorf("GitHub got %d requests; want none", n)
	}
}

// TestTokenNeverShown: the token appears in no error and no log line,
// even when a server echoes it or the token is malformed.
func TestTokenNeverShown(t *testing.T) {
	f := newFakeGitHub(t,
		answer(500, `{"message":"upstream said `+token+`"}`),
		answer(401, `{"message":"Bad credentials: `+token+`"}`),
		answer(401, `{"message":"Bad credentials: `+token+`"}`),
	)
	var log bytes.Buffer
	c := client(f, &log)
	c.SetLogged(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if err == nil || !strings.Contains(err.Error(), "Bad credentials") {
		t.Fatalf("Set = %v; want the 401 error", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("Set = %q; contains the token", err)
	}
	if !strings.Contains(log.String(), "500") || !strings.Contains(log.String(), "commit status not set") {
		t.Errorf("log %q; want the retry and the failure", log.String())
	}
	if strings.Contains(log.String(), token) {
		t.Errorf("log %q; contains the token", log.String())
	}

	bad := token + "\nX-Evil: 1"
	c.Token = bad
	err = c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
	if err == nil || strings.Contains(err.Error(), token[4:12]) || sysexits.Code(err) != sysexits.Config {
		t.Errorf("Set with a bad token = %v; want a config error without the token", err)
	}
	if n := len(f.Calls()); n != 3 {
		t.Errorf("GitHub got %d requests; want 3", n)
	}
}

// TestSetLogged: a failure is logged with its repository and status code;
// SetLogged returns nothing for the caller to mistake for a deploy error.
func TestSetLogged(t *testing.T) {
	f := newFakeGitHub(t, answer(422, `{"message":"Validation Failed"}`))
	var log bytes.Buffer
	c := client(f, &log)
	c.SetLogged(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Success})
	for _, want := range []string{"level=WARN", "commit status not set", "repository=" + repo, "commit=" + sha, "state=success", "422", "Validation Failed"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q; want %q", log.String(), want)
		}
	}
	log.Reset()
	c.SetLogged(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Success})
	if log.Len() != 0 {
		t.Errorf("log after a success %q; want nothing", log.String())
	}
}

// TestBadBaseURL: a base URL that is not http(s) is a config error.
func TestBadBaseURL(t *testing.T) {
	for _, base := range []string{"ftp://example.com", "api.github.com", "https://user:pw@example.com", "https://example.com/?x=1"} {
		c := &ghstatus.Client{BaseURL: base, Token: token}
		err := c.Set(testContext(t), repo, sha, ghstatus.Status{State: ghstatus.Pending})
		if sysexits.Code(err) != sysexits.Config || strings.Contains(err.Error(), "pw") {
			t.Errorf("Set with BaseURL %q = %v; want a config error without the password", base, err)
		}
	}
}
