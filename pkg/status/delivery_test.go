package status_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// A delivery's page tells its story: received, decided, each run with its
// state, timings, exit status, failed step and log; as HTML and as JSON
// (.json or Accept), 404 for an unknown delivery, 400 for a malformed id.
func TestDeliveryPage(t *testing.T) {
	in := statustest.New(t, "")
	story := in.Story(t)
	h := handler(in, "")
	for _, target := range []string{"/status/deliveries/" + story.GUID + ".json", "/status/deliveries/" + story.GUID} {
		var header []string
		if !strings.HasSuffix(target, ".json") {
			header = []string{"Accept", "application/json"}
		}
		res, body := get(t, h, "GET", target, header...)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s %v = %d %s; want 200 JSON\n%s", target, header, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		var d status.Delivery
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("GET %s: %v\n%s", target, err, body)
		}
		if d.Delivery != story.GUID || d.Outcome != status.OutcomePending || d.Received == nil || d.Received.Event != "push" ||
			d.Received.Source != status.SourceWebhook || d.Received.After != statustest.CommitFailed || d.Received.Ref != "refs/heads/main" ||
			d.Decision == nil || d.Decision.Status != store.StatusRouted || strings.Join(d.Decision.Deployments, ",") != "api,docs" {
			t.Errorf("GET %s = %+v; want the push received, routed to api and docs, pending (docs runs)", target, d)
		}
		if len(d.Runs) != 2 {
			t.Fatalf("GET %s: runs %+v; want api's and docs's", target, d.Runs)
		}
		api, docs := d.Runs[0], d.Runs[1]
		if api.Deployment != "api" || api.ID != story.Failed || api.State != store.RunFailed || api.ExitCode == nil || *api.ExitCode != 2 ||
			api.FailedStep == nil || *api.FailedStep != 1 || api.FinishedAt == nil || api.Duration == "" ||
			api.Log != status.LogURL("api", story.Failed) || api.Follow != "" || api.By != "pusher=alice sender=alice-gh" {
			t.Errorf("api's run = %+v; want failed, exit 2 at step 1, finished, with its log", api)
		}
		if docs.Deployment != "docs" || docs.State != store.RunRunning || docs.Follow != status.LogURL("docs", story.Running)+"?follow=1" {
			t.Errorf("docs's run = %+v; want running with a follow link", docs)
		}
	}

	res, body := get(t, h, "GET", "/status/deliveries/"+story.GUID)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET the delivery page = %d %s; want 200 HTML", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<code id="delivery">` + story.GUID + `</code>`,
		`data-outcome="pending"`,
		`<tr data-run="` + itoa(story.Failed) + `" data-deployment="api">`,
		`data-state="failed"`, `data-state="running"`,
		statustest.StorySubject, "Alice &lt;alice@example.org&gt;",
		`<a class="follow" href="` + status.LogURL("docs", story.Running) + `?follow=1">live</a>`,
		"exit 2 at step 1: step 1 (pnpm build) exited 2 &lt;script&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the delivery page has no %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("the delivery page holds a script element")
	}
	// The status page links each decision to its delivery's page, and a
	// running run to its live log.
	_, page := get(t, h, "GET", "/status")
	if !strings.Contains(page, `<a href="/status/deliveries/`+story.GUID+`">`) {
		t.Errorf("the status page does not link the decision to /status/deliveries/%s", story.GUID)
	}
	if live := `<a class="follow" href="` + status.LogURL("docs", story.Running) + `?follow=1">live</a>`; !strings.Contains(page, live) {
		t.Errorf("the status page has no %s for docs's running run", live)
	}

	for _, c := range []struct {
		target string
		code   int
		says   string
	}{
		{"/status/deliveries/0b2a9ad0-0000-0000-0000-000000000000", 404, "no delivery"},
		{"/status/deliveries/0b2a9ad0-0000-0000-0000-000000000000.json", 404, "is dh-route running?"},
		{"/status/deliveries/..%2Fetc", 400, "invalid delivery"},
		{"/status/deliveries/a%20b", 400, "X-GitHub-Delivery GUID"},
	} {
		res, body := get(t, h, "GET", c.target)
		if res.StatusCode != c.code || !strings.Contains(body, c.says) {
			t.Errorf("GET %s = %d %q; want %d saying %q", c.target, res.StatusCode, body, c.code, c.says)
		}
	}

	// Once docs's run ends, the delivery has failed (api's did).
	if err := in.Store.FinishRun(context.Background(), story.Running, store.RunResult{State: store.RunSucceeded, ExitCode: new(0)}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, h, "GET", "/status/deliveries/"+story.GUID+".json")
	var d status.Delivery
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Outcome != status.OutcomeFailed {
		t.Errorf("after docs's run succeeded: outcome %q, %v; want failed (api's run failed)", d.Outcome, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// ?follow=1 streams a running run's log: a line written while the run
// goes on arrives before it ends, and the stream ends when the run's
// state in the database is final.
func TestLogFollow(t *testing.T) {
	in := statustest.New(t, "")
	story := in.Story(t)
	srv := httptest.NewServer(handler(in, ""))
	defer srv.Close()
	resp, err := http.Get(srv.URL + status.LogURL("docs", story.Running) + "?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("GET ?follow=1 = %d %s; want 200 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() (string, bool) {
		select {
		case l, ok := <-lines:
			return l, ok
		case <-time.After(20 * time.Second):
			t.Fatal("no line within 20s")
		}
		return "", false
	}
	if l, _ := next(); !strings.Contains(l, "step 1/1: build") {
		t.Fatalf("first line %q; want the log's first line", l)
	}
	f, err := os.OpenFile(story.LogPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("compiling while the run goes on\n")
	if l, _ := next(); l != "compiling while the run goes on" {
		t.Fatalf("next line %q; want the line just written, while the run still runs", l)
	}
	f.WriteString("last words\n")
	f.Close()
	if err := in.Store.FinishRun(context.Background(), story.Running, store.RunResult{State: store.RunSucceeded, ExitCode: new(0)}); err != nil {
		t.Fatal(err)
	}
	if l, _ := next(); l != "last words" {
		t.Errorf("after the end: %q; want the last line", l)
	}
	if l, ok := next(); ok {
		t.Errorf("after the run ended: %q; want the end of the stream", l)
	}

	// An ended run's log is served whole, follow or not.
	res, err := http.Get(srv.URL + status.LogURL("api", story.Failed) + "?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != statustest.StoryLog {
		t.Errorf("GET the ended run's log with follow = %q; want it whole", b)
	}
}

// At most Options.MaxFollowers logs are followed at once: one more gets
// 503 with Retry-After, and the slot is free again once a follower left.
func TestLogFollowBounded(t *testing.T) {
	in := statustest.New(t, "")
	story := in.Story(t)
	srv := httptest.NewServer(status.New(func() *config.Config { return in.Config }, in.Store,
		status.Options{Now: func() time.Time { return in.Now }, MaxFollowers: 1}))
	defer srv.Close()
	url := srv.URL + status.LogURL("docs", story.Running) + "?follow=1"
	first, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if first.StatusCode != 200 {
		t.Fatalf("first follower: %d; want 200", first.StatusCode)
	}
	second, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "logs are followed already") {
		t.Errorf("second follower: %d %q; want 503 with Retry-After", second.StatusCode, b)
	}
	first.Body.Close() // the first leaves: its slot is freed when the server notices
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the first follower left: %d; want 200", res.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A followed log is read live, often by curl on a terminal: what the
// build wrote comes defused (termsafe), escape sequences in caret
// notation and a carriage return as a line break. The log served whole
// stays the file's bytes.
func TestLogFollowDefused(t *testing.T) {
	in := statustest.New(t, "")
	story := in.Story(t)
	srv := httptest.NewServer(handler(in, ""))
	defer srv.Close()
	f, err := os.OpenFile(story.LogPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostile := "\x1b]0;owned\x07\x1b[2Jdone\rFAKE: deploy succeeded\n"
	f.WriteString(hostile)
	f.Close()
	resp, err := http.Get(srv.URL + status.LogURL("docs", story.Running) + "?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "owned") {
				got <- sc.Text()
				return
			}
		}
		got <- ""
	}()
	select {
	case l := <-got:
		if l != "^[]0;owned^G^[[2Jdone" {
			t.Errorf("followed line %q; want the escapes shown as ^[ and ^G, cut at the CR", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no line within 20s")
	}
	if err := in.Store.FinishRun(context.Background(), story.Running, store.RunResult{State: store.RunSucceeded, ExitCode: new(0)}); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(srv.URL + status.LogURL("docs", story.Running))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasSuffix(string(b), hostile) {
		t.Errorf("the ended run's log ends %q; want the file's bytes", b[max(0, len(b)-60):])
	}
}

// A run whose worker died stays "running" until the worker starts again;
// following its log would hold a follower's slot for ever. Once the run
// has been running longer than its deployment's timeout (plus
// store.OverdueGrace), the stream ends, saying why.
func TestLogFollowOverdue(t *testing.T) {
	in := statustest.New(t, "")
	story := in.Story(t)
	// An hour later: the docs run (started 2 minutes before) is past its
	// 30 minute timeout.
	srv := httptest.NewServer(status.New(func() *config.Config { return in.Config }, in.Store,
		status.Options{Now: func() time.Time { return time.Now().Add(time.Hour) }}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+status.LogURL("docs", story.Running)+"?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(b), "stopped following the log") || !strings.Contains(string(b), "its worker has stopped") {
		t.Errorf("following an overdue run: %q, %v; want the stream to end saying its worker has stopped", b, err)
	}
}
