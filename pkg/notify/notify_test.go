package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/notify"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// hookPath is the secret part of the webhook URL.
const hookPath = "/hooks/T000/B000/SeCrEtHoOkKeY"

// request is one post the fake webhook received.
type request struct {
	Method, Path, ContentType string
	Body                      map[string]any
	Raw                       []byte
}

// fakeHook is an incoming webhook on 127.0.0.1 that records each post and
// answers with the given statuses in turn (200 "ok" once they run out).
type fakeHook struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
	statuses []int
	body     string // answered with a status that is not 200
}

func newFakeHook(t *testing.T, statuses ...int) *fakeHook {
	f := &fakeHook{statuses: statuses}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Raw: raw}
		if err := json.Unmarshal(raw, &req.Body); err != nil {
			t.Errorf("webhook body %q is not a JSON object: %v", raw, err)
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		code := http.StatusOK
		if len(f.statuses) > 0 {
			code, f.statuses = f.statuses[0], f.statuses[1:]
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		if code == http.StatusOK {
			io.WriteString(w, "ok")
		} else {
			io.WriteString(w, f.body)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeHook) Requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func webhook(f *fakeHook, log *bytes.Buffer) *notify.Webhook {
	w := &notify.Webhook{
		URL:   f.URL + hookPath,
		HTTP:  f.Client(),
		Retry: httpretry.Policy{Backoff: time.Millisecond, Timeout: 5 * time.Second},
	}
	if log != nil {
		w.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	return w
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	success = notify.Message{
		Deployment: "api", Repository: "ducompsoc/durhack", Commit: "abc1234def5678abc1234def5678abc1234def56",
		Ref: "refs/heads/main", State: notify.Success, Duration: 12300 * time.Millisecond,
	}
	failure = notify.Message{
		Deployment: "api", Repository: "ducompsoc/durhack", Commit: "abc1234def5678abc1234def5678abc1234def56",
		Ref: "refs/heads/main", State: notify.Failure, Step: 2, Command: "pnpm build", ExitCode: 1,
		Error: "exit status 1", Duration: 95 * time.Second,
	}
)

func TestText(t *testing.T) {
	noStep := failure
	noStep.Step, noStep.Command, noStep.ExitCode = 0, "", 0
	noStep.Error = "git fetch: could not resolve host\n\tgithub.com"
	noStep.Duration = 3 * time.Second
	killed := failure
	killed.ExitCode, killed.Error, killed.Duration = 0, "killed after 10m0s timeout", 0
	fast := success
	fast.Ref, fast.Duration = "", 850*time.Millisecond
	for _, tc := range []struct {
		m    notify.Message
		want string
	}{
		{success, "api: deployed ducompsoc/durhack@abc1234 (refs/heads/main) in 12s"},
		{failure, "api: FAILED at step 2 (pnpm build, exit 1) deploying ducompsoc/durhack@abc1234 (refs/heads/main) after 1m35s: exit status 1"},
		{noStep, "api: FAILED deploying ducompsoc/durhack@abc1234 (refs/heads/main) after 3s: git fetch: could not resolve host github.com"},
		{killed, "api: FAILED at step 2 (pnpm build) deploying ducompsoc/durhack@abc1234 (refs/heads/main): killed after 10m0s timeout"},
		{fast, "api: deployed ducompsoc/durhack@abc1234 in 850ms"},
		{notify.Message{Deployment: "web", State: "weird"}, "web: FAILED"},
	} {
		if got := tc.m.Text(); got != tc.want {
			t.Errorf("%+v.Text() =\n%q; want\n%q", tc.m, got, tc.want)
		}
	}
}

// TestTextLongError: a long, multi-line error is cut on a rune boundary
// and the text stays one line.
func TestTextLongError(t *testing.T) {
	m := failure
	m.Error = strings.Repeat("ошибка\n", 200)
	got := m.Text()
	_, errText, _ := strings.Cut(got, "after 1m35s: ")
	if strings.ContainsAny(got, "\n\r\t") || !utf8.ValidString(got) ||
		utf8.RuneCountInString(errText) != 300 || !strings.HasSuffix(got, "…") {
		t.Errorf("Text() = %q (error part %d runes); want one valid line with the error cut to 300 runes", got, utf8.RuneCountInString(errText))
	}
}

// TestSend: one POST of JSON with the text and the username.
func TestSend(t *testing.T) {
	f := newFakeHook(t)
	w := webhook(f, nil)
	w.Username = "dh-deployer"
	if err := w.Send(testContext(t), success); err != nil {
		t.Fatalf("Send = %v; want nil", err)
	}
	reqs := f.Requests()
	if len(reqs) != 1 {
		t.Fatalf("webhook got %d posts; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != hookPath || r.ContentType != "application/json" {
		t.Errorf("webhook got %s %s (%s); want POST %s (application/json)", r.Method, r.Path, r.ContentType, hookPath)
	}
	want := map[string]any{"text": success.Text(), "username": "dh-deployer"}
	if len(r.Body) != len(want) || r.Body["text"] != want["text"] || r.Body["username"] != want["username"] {
		t.Errorf("webhook body %s; want %v", r.Raw, want)
	}
}

// TestSendEscapes: text from a build cannot format, link or mention.
func TestSendEscapes(t *testing.T) {
	f := newFakeHook(t)
	m := failure
	m.Error = "<!channel> a & b > c @here (x@y)/@all"
	if err := webhook(f, nil).Send(testContext(t), m); err != nil {
		t.Fatalf("Send = %v; want nil", err)
	}
	reqs := f.Requests()
	if len(reqs) != 1 {
		t.Fatalf("webhook got %d posts; want 1", len(reqs))
	}
	text, _ := reqs[0].Body["text"].(string)
	if !strings.HasSuffix(text, ": &lt;!channel&gt; a &amp; b &gt; c @\u200bhere (x@y)/@\u200ball") {
		t.Errorf("text %q; want <, >, & escaped and @ broken", text)
	}
	if _, ok := reqs[0].Body["username"]; ok {
		t.Errorf("body %s has a username; want none when Username is empty", reqs[0].Raw)
	}
}

// TestSendRetries: 5xx and 429 are retried until a 2xx.
func TestSendRetries(t *testing.T) {
	f := newFakeHook(t, 500, 429, 204)
	if err := webhook(f, nil).Send(testContext(t), failure); err != nil {
		t.Fatalf("Send = %v; want nil after retries", err)
	}
	if n := len(f.Requests()); n != 3 {
		t.Errorf("webhook got %d posts; want 3", n)
	}
}

// TestSendErrors: a 4xx is final and a 5xx that does not go away is
// temporary; neither error nor log shows the URL's secret path.
func TestSendErrors(t *testing.T) {
	for _, tc := range []struct {
		statuses []int
		body     string
		posts    int
		class    int
		contains []string
	}{
		{[]int{400}, "invalid_payload", 1, sysexits.Config, []string{"400", "invalid_payload"}},
		{[]int{404}, `{"id":"web.incoming_webhook.invalid.app_error","message":"Invalid webhook","status_code":404}`, 1, sysexits.Config, []string{"404", "Invalid webhook"}},
		{[]int{503, 503, 503}, "", 3, sysexits.TempFail, []string{"503"}},
	} {
		f := newFakeHook(t, tc.statuses...)
		f.body = tc.body
		var log bytes.Buffer
		w := webhook(f, &log)
		err := w.Send(testContext(t), failure)
		if err == nil || cli.ExitStatus(err) != tc.class {
			t.Errorf("Send answered %v = %v (class %d); want an error classified %d", tc.statuses, err, cli.ExitStatus(err), tc.class)
			continue
		}
		for _, s := range tc.contains {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Send answered %v = %q; want it to contain %q", tc.statuses, err, s)
			}
		}
		if n := len(f.Requests()); n != tc.posts {
			t.Errorf("Send answered %v: webhook got %d posts; want %d", tc.statuses, n, tc.posts)
		}
		f.mu.Lock()
		f.statuses = tc.statuses
		f.mu.Unlock()
		w.SendLogged(testContext(t), failure)
		if !strings.Contains(log.String(), "notification not sent") {
			t.Errorf("SendLogged answered %v logged %q; want the failure", tc.statuses, log.String())
		}
		if strings.Contains(err.Error()+log.String(), "SeCrEt") {
			t.Errorf("error %q or log %q shows the webhook URL's secret", err, log.String())
		}
	}
}

// TestSendNetworkError: a webhook that is not there is an error that does
// not show the URL's secret path.
func TestSendNetworkError(t *testing.T) {
	f := newFakeHook(t)
	w := webhook(f, nil)
	f.Close()
	err := w.Send(testContext(t), success)
	if err == nil || !queue.IsRetry(err) || strings.Contains(err.Error(), "SeCrEt") {
		t.Errorf("Send to a closed server = %v; want a temporary error without the URL's path", err)
	}
}

// TestDisabled: without a URL nothing is sent.
func TestDisabled(t *testing.T) {
	var w notify.Webhook
	if w.Enabled() {
		t.Errorf("Enabled() = true without a URL")
	}
	if err := w.Send(testContext(t), success); err != nil {
		t.Errorf("disabled Send = %v; want nil", err)
	}
	var nilHook *notify.Webhook
	if err := nilHook.Send(testContext(t), success); err != nil {
		t.Errorf("nil Webhook Send = %v; want nil", err)
	}
}

// TestBadURL: a URL that is not http(s) is a config error that does not
// repeat the URL.
func TestBadURL(t *testing.T) {
	for _, u := range []string{"hooks.slack.com/services/SeCrEt", "ftp://example.com/SeCrEt", "https:///SeCrEt"} {
		w := &notify.Webhook{URL: u}
		err := w.Send(testContext(t), success)
		if cli.ExitStatus(err) != sysexits.Config || strings.Contains(err.Error(), "SeCrEt") {
			t.Errorf("Send to %q = %v; want a config error without the URL", u, err)
		}
	}
}
