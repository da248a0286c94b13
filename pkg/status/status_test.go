package status_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func handler(in *statustest.Install, token string) *status.Handler {
	var tok []byte
	if token != "" {
		tok = []byte(token)
	}
	return status.New(func() *config.Config { return in.Config }, in.Store,
		status.Options{Token: tok, Now: func() time.Time { return in.Now }})
}

// get serves one request and returns the response and its body.
func get(t *testing.T, h http.Handler, method, target string, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func TestCollect(t *testing.T) {
	in := statustest.New(t, "")
	p := collect(t, handler(in, ""), status.View{})
	if len(p.Errors) > 0 {
		t.Errorf("Collect().Errors = %q; want none", p.Errors)
	}
	if p.Paused != nil {
		t.Errorf("Collect().Paused = %v; want no global pause", p.Paused)
	}
	got := map[string]status.Deployment{}
	for _, d := range p.Deployments {
		got[d.Name] = d
	}
	for name, want := range statustest.Deployments {
		if got[name].State != want {
			t.Errorf("deployment %s: state %q (%s); want %q", name, got[name].State, got[name].Detail, want)
		}
	}
	api := got["api"]
	if api.Commit != statustest.CommitOK {
		t.Errorf("api: current commit %q; want %q (its last succeeded run)", api.Commit, statustest.CommitOK)
	}
	if len(api.Runs) != 2 || api.Runs[0].ID != in.Runs["api-failed"] || api.Runs[1].ID != in.Runs["api-ok"] {
		t.Fatalf("api: runs %+v; want api-failed, then api-ok", api.Runs)
	}
	failed, ok := api.Runs[0], api.Runs[1]
	if failed.State != store.RunFailed || !strings.HasPrefix(failed.Result, "exit 2 at step 1: step 1 (pnpm build) exited 2") ||
		failed.Commit != statustest.CommitFailed || failed.Duration == "" || failed.Seconds == nil {
		t.Errorf("api's failed run = %+v; want state failed, result exit 2 at step 1, a duration", failed)
	}
	if want := status.LogURL("api", in.Runs["api-ok"]); ok.Log != want || ok.Result != "ok" || ok.Trigger != "webhook" ||
		ok.By != "pusher=alice sender=alice-gh" {
		t.Errorf("api's succeeded run = %+v; want log %s, result ok, trigger webhook by pusher=alice sender=alice-gh", ok, want)
	}
	if !strings.Contains(api.Detail, "exited 2") {
		t.Errorf("api: detail %q; want the failed run's error", api.Detail)
	}
	if web := got["web"]; web.Pause == nil || !strings.Contains(web.Detail, "exam week") || web.Commit != statustest.CommitWeb {
		t.Errorf("web = %+v; want its pause and commit", web)
	}
	if blog := got["blog"]; blog.InWindow || blog.NextWindow == nil ||
		!blog.NextWindow.Equal(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)) || len(blog.Runs) != 1 || blog.Runs[0].State != store.RunQueued {
		t.Errorf("blog = %+v; want outside its windows, next Monday 09:00, one queued run", blog)
	}
	if docs := got["docs"]; docs.Commit != "" || len(docs.Runs) != 1 || docs.Runs[0].Duration == "" {
		t.Errorf("docs = %+v; want no current commit and a running run with a duration", docs)
	}
	for _, r := range got["cms"].Runs {
		if (r.ID == in.Runs["cms-outside"] || r.ID == in.Runs["cms-ok"]) && r.Log != "" {
			t.Errorf("cms run %d: log link %q; want none (no log, or a log_path outside the log directory)", r.ID, r.Log)
		}
	}

	queues := map[string]status.Queue{}
	for _, q := range p.Queues {
		queues[q.Name] = q
	}
	if len(p.Queues) != 7 {
		t.Errorf("Collect().Queues = %+v; want main and the 6 deployments", p.Queues)
	}
	for name, want := range map[string][2]int{"main": {1, 0}, "api": {1, 1}, "web": {0, 0}} {
		q := queues[name]
		if q.Depth == nil || q.Failed == nil || *q.Depth != want[0] || *q.Failed != want[1] {
			t.Errorf("queue %s = %+v; want depth %d, failed %d", name, q, want[0], want[1])
		}
	}
	if q := queues["main"]; q.Oldest == nil {
		t.Errorf("queue main: no oldest entry time")
	}
	if q := queues["old"]; q.Depth != nil || q.Error == "" {
		t.Errorf("queue old (a file) = %+v; want no depth and an error", q)
	}
	if len(p.Failed) != 1 || p.Failed[0].Entry != in.FailedEntry || p.Failed[0].Queue != "api" ||
		!strings.Contains(p.Failed[0].Error, "entry has no kind") {
		t.Errorf("Collect().Failed = %+v; want %s in api with its reason", p.Failed, in.FailedEntry)
	}
	if len(p.Decisions) != 2 || p.Decisions[0].Delivery != "voided-0002" || !strings.HasPrefix(p.Decisions[0].Reason, "not-followed") ||
		p.Decisions[1].Status != store.StatusRouted || strings.Join(p.Decisions[1].Deployments, ",") != "api" {
		t.Errorf("Collect().Decisions = %+v; want the voided, then the routed delivery", p.Decisions)
	}
}

func TestJSON(t *testing.T) {
	in := statustest.New(t, "")
	res, body := get(t, handler(in, ""), "GET", "/status.json")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status.json = %d %s; want 200 application/json", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var p struct {
		Deployments []struct {
			Name, State, Commit string
			Runs                []struct {
				ID    int64
				State string
				Log   string
			}
		}
		Queues []struct {
			Name  string
			Depth *int
		}
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET /status.json: %v\n%s", err, body)
	}
	if len(p.Deployments) != len(statustest.Deployments) {
		t.Fatalf("GET /status.json: %d deployments; want %d", len(p.Deployments), len(statustest.Deployments))
	}
	for _, d := range p.Deployments {
		if d.State != statustest.Deployments[d.Name] {
			t.Errorf("GET /status.json: %s is %q; want %q", d.Name, d.State, statustest.Deployments[d.Name])
		}
	}
	if d := p.Deployments[0]; d.Name != "api" || d.Commit != statustest.CommitOK || len(d.Runs) != 2 || d.Runs[1].Log == "" {
		t.Errorf("GET /status.json: first deployment %+v; want api with its commit and a log link", d)
	}
	for _, q := range p.Queues {
		if (q.Name == "old") != (q.Depth == nil) {
			t.Errorf("GET /status.json: queue %s depth %v; want null only for the unreadable queue old", q.Name, q.Depth)
		}
	}
}

func TestHTML(t *testing.T) {
	in := statustest.New(t, "")
	h := handler(in, "")
	res, body := get(t, h, "GET", "/status")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /status = %d %s; want 200 text/html", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("GET /status: Content-Security-Policy %q; want default-src 'none'", csp)
	}
	for name, state := range statustest.Deployments {
		want := `<tr data-deployment="` + name + `">`
		i := strings.Index(body, want)
		if i < 0 {
			t.Errorf("GET /status: no row %s", want)
			continue
		}
		if row := body[i:]; !strings.Contains(row[:strings.Index(row, "</tr>")], `data-state="`+state+`"`) {
			t.Errorf("GET /status: row of %s has no state %q", name, state)
		}
	}
	for _, want := range []string{
		statustest.CommitOK[:12],
		`href="` + status.LogURL("api", in.Runs["api-ok"]) + `"`,
		in.FailedEntry,
		"voided-0002",
		`<td>-</td>`, // the unreadable queue
		`webhook<br><span class="meta">pusher=alice sender=alice-gh</span>`,
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /status: no %q in the page", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Errorf("GET /status: the page holds an unescaped tag from the data:\n%s", body)
	}
	// HEAD and / work too.
	if res, _ := get(t, h, "HEAD", "/status"); res.StatusCode != 200 {
		t.Errorf("HEAD /status = %d; want 200", res.StatusCode)
	}
	if res, _ := get(t, h, "GET", "/"); res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/status" {
		t.Errorf("GET / = %d %s; want a redirect to /status", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestLogs(t *testing.T) {
	in := statustest.New(t, "")
	h := handler(in, "")
	logURL := func(name, role string) string { return status.LogURL(name, in.Runs[role]) }
	res, body := get(t, h, "GET", logURL("api", "api-ok"))
	if res.StatusCode != 200 || body != statustest.LogText || res.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET %s = %d %s %q; want 200 text/plain with the log", logURL("api", "api-ok"), res.StatusCode,
			res.Header.Get("Content-Type"), body)
	}
	if res, body := get(t, h, "GET", logURL("api", "api-ok"), "Range", "bytes=0-6"); res.StatusCode != http.StatusPartialContent || body != "step 1/" {
		t.Errorf("GET %s with Range = %d %q; want 206 %q", logURL("api", "api-ok"), res.StatusCode, body, "step 1/")
	}
	tests := []struct {
		name, target string
		want         int
	}{
		{"log gone", logURL("api", "api-failed"), 404},
		{"log_path outside the log directory", logURL("cms", "cms-outside"), 403},
		{"symlink out of the log directory", logURL("cms", "cms-symlink"), 403},
		{"run without a log", logURL("cms", "cms-ok"), 404},
		{"run of another deployment", status.LogURL("cms", in.Runs["api-ok"]), 404},
		{"unknown deployment", "/status/logs/nope/1", 404},
		{"unknown run", "/status/logs/api/999999", 404},
		{"run not a number", "/status/logs/api/x1", 404},
		{"negative run", "/status/logs/api/-1", 404},
		{"dot-dot", "/status/logs/api/../../../etc/passwd", 307}, // ServeMux redirects to the clean path, /etc/passwd: 404
		{"encoded dot-dot", "/status/logs/api/..%2f..%2f..%2fetc%2fpasswd", 404},
		{"encoded slash in name", "/status/logs/..%2fapi/" + strconv.FormatInt(in.Runs["api-ok"], 10), 404},
	}
	for _, tt := range tests {
		res, body := get(t, h, "GET", tt.target)
		if res.StatusCode != tt.want || strings.Contains(body, "root:") {
			t.Errorf("%s: GET %s = %d %q; want %d", tt.name, tt.target, res.StatusCode, body, tt.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	in := statustest.New(t, "")
	h := handler(in, "")
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		for _, target := range []string{"/status", "/status.json", status.LogURL("api", in.Runs["api-ok"])} {
			res, _ := get(t, h, method, target)
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d (Allow %q); want 405 (Allow GET, HEAD)", method, target, res.StatusCode, res.Header.Get("Allow"))
			}
		}
	}
}

func TestToken(t *testing.T) {
	in := statustest.New(t, "")
	const token = "Zq8vN3xK1pL7rT5wY2mB9cE4"
	h := handler(in, token)
	tests := []struct {
		name, target string
		header       []string
		want         int
	}{
		{"no token", "/status", nil, 401},
		{"wrong token", "/status", []string{"Authorization", "Bearer " + token + "x"}, 403},
		{"basic auth", "/status", []string{"Authorization", "Basic " + token}, 401},
		{"right token", "/status", []string{"Authorization", "Bearer " + token}, 200},
		{"right token, JSON", "/status.json", []string{"Authorization", "Bearer " + token}, 200},
		{"right token, log", status.LogURL("api", in.Runs["api-ok"]), []string{"Authorization", "Bearer " + token}, 200},
		{"token in the query", "/status?token=" + token, nil, 400},
		{"token in the query and the header", "/status?token=" + token, []string{"Authorization", "Bearer " + token}, 400},
		{"no token for the log", status.LogURL("api", in.Runs["api-ok"]), nil, 401},
	}
	for _, tt := range tests {
		res, body := get(t, h, "GET", tt.target, tt.header...)
		if res.StatusCode != tt.want {
			t.Errorf("%s: GET %s = %d; want %d", tt.name, tt.target, res.StatusCode, tt.want)
		}
		if tt.want != 200 && strings.Contains(body, "api") {
			t.Errorf("%s: GET %s shows the page: %q", tt.name, tt.target, body)
		}
	}
	// Without a configured token, a token in the query is refused too.
	if res, _ := get(t, handler(in, ""), "GET", "/status.json?token=abc"); res.StatusCode != 400 {
		t.Errorf("GET /status.json?token= without a configured token = %d; want 400", res.StatusCode)
	}
}

func TestDatabaseDown(t *testing.T) {
	in := statustest.New(t, "")
	st, err := store.Open(context.Background(), in.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	st.Close() // every query now fails
	h := status.New(func() *config.Config { return in.Config }, st, status.Options{Now: func() time.Time { return in.Now }})
	res, body := get(t, h, "GET", "/status")
	if res.StatusCode != 200 {
		t.Fatalf("GET /status with the database down = %d; want 200", res.StatusCode)
	}
	for _, want := range []string{"banner-error", "database:", `data-deployment="web"`, `data-state="paused"`, `data-state="waiting"`, in.FailedEntry} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /status with the database down: no %q in the page", want)
		}
	}
	p := collect(t, h, status.View{})
	if len(p.Errors) != 1 {
		t.Errorf("Collect().Errors = %q; want one database error", p.Errors)
	}
	if res, _ := get(t, h, "GET", status.LogURL("api", in.Runs["api-ok"])); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET a log with the database down = %d; want 503", res.StatusCode)
	}
}

func TestGlobalPause(t *testing.T) {
	in := statustest.New(t, "")
	if err := os.WriteFile(filepath.Join(in.Config.QueueDir, ".paused"), []byte(`{"reason":"release freeze","since":"2026-11-22T10:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := collect(t, handler(in, ""), status.View{})
	if p.Paused == nil || p.Paused.Reason != "release freeze" {
		t.Errorf("Collect().Paused = %v; want the global pause", p.Paused)
	}
	for _, d := range p.Deployments {
		want := "paused"
		if d.Name == "docs" || d.Name == "old" {
			want = statustest.Deployments[d.Name] // running and disabled come first
		}
		if d.State != want {
			t.Errorf("deployment %s under a global pause: %q; want %q", d.Name, d.State, want)
		}
	}
	_, body := get(t, handler(in, ""), "GET", "/status")
	if !strings.Contains(body, `id="global-pause"`) || !strings.Contains(body, "release freeze") {
		t.Errorf("GET /status under a global pause: no banner")
	}
}

// collect is h.Collect(v), failing the test on an error.
func collect(t *testing.T, h *status.Handler, v status.View) *status.Page {
	t.Helper()
	p, err := h.Collect(context.Background(), v)
	if err != nil {
		t.Fatalf("Collect(%+v) = %v", v, err)
	}
	return p
}

// TestPages checks the pages above 2×PageSize deployments: each page has
// PageSize of them with their newest run only, the same states as on one
// page, and a deployment's own page has its runs.
func TestPages(t *testing.T) {
	in := statustest.New(t, "")
	h := status.New(func() *config.Config { return in.Config }, in.Store,
		status.Options{PageSize: 2, Now: func() time.Time { return in.Now }})
	first := collect(t, h, status.View{})
	second, third := collect(t, h, status.View{Page: 2}), collect(t, h, status.View{Page: 3})
	if first.Pages != 3 || first.Total != 6 || !first.Compact || first.Page != 1 || third.Page != 3 {
		t.Errorf("Collect() = page %d of %d (%d deployments, compact %v), then page %d; want page 1 of 3 (6, compact), then 3",
			first.Page, first.Pages, first.Total, first.Compact, third.Page)
	}
	var names []string
	for _, d := range slices.Concat(first.Deployments, second.Deployments, third.Deployments) {
		names = append(names, d.Name)
		if want := statustest.Deployments[d.Name]; d.State != want {
			t.Errorf("paginated %s: state %q; want %q", d.Name, d.State, want)
		}
		if len(d.Runs) > 1 {
			t.Errorf("paginated %s: %d runs; want the newest only", d.Name, len(d.Runs))
		}
	}
	if want := []string{"api", "blog", "cms", "docs", "old", "web"}; !slices.Equal(names, want) {
		t.Errorf("pages 1 to 3 show %q; want %q", names, want)
	}
	if len(first.Queues) != 3 || first.Queues[0].Name != "main" {
		t.Errorf("page 1 queues = %+v; want main and its 2 deployments'", first.Queues)
	}
	one := collect(t, h, status.View{Deployment: "api"})
	if len(one.Deployments) != 1 || len(one.Deployments[0].Runs) < 2 || one.Compact {
		t.Errorf("Collect(deployment api) = %+v; want api with all its runs", one.Deployments)
	}
	for _, c := range []struct {
		target string
		code   int
		msg    string
	}{
		{"/status?page=3", 200, `href="/status?deployment=web"`},
		{"/status.json?page=1", 200, `"pages": 3`},
		{"/status?deployment=api", 200, `data-run=`},
		{"/status?page=4", 404, "no page 4: the deployments take 3"},
		{"/status?page=x", 400, "a page is a number from 1"},
		{"/status.json?page=0", 400, "a page is a number from 1"},
		{"/status?deployment=nope", 404, `no deployment "nope"`},
		{"/status?deployment=api&page=1", 400, "not both"},
	} {
		res, body := get(t, h, "GET", c.target)
		if res.StatusCode != c.code || !strings.Contains(body, c.msg) {
			t.Errorf("GET %s = %d %q; want %d with %q", c.target, res.StatusCode, body[:min(len(body), 200)], c.code, c.msg)
		}
	}
}

// TestRunDetails checks what the page shows of each run (issue 20): the
// commit's subject and author, its link to the repository's page, who
// triggered it, how long it waited and ran, times in status.time_zone
// (the JSON staying in UTC), and a bounded refresh. Hostile subjects,
// authors and triggered_by are shown as one line of text.
func TestRunDetails(t *testing.T) {
	in := statustest.New(t, "")
	link := "https://github.com/ducompsoc/durhack/commit/"

	// JSON: the raw values, times in RFC 3339 UTC.
	_, body := get(t, handler(in, ""), "GET", "/status.json")
	type run struct {
		ID              int64
		CommitSubject   string   `json:"commit_subject"`
		Author          string   `json:"commit_author"`
		CommitURL       string   `json:"commit_url"`
		TriggeredBy     string   `json:"triggered_by"`
		Started         string   `json:"started_at"`
		Wait            string   `json:"wait"`
		WaitSeconds     *float64 `json:"wait_seconds"`
		Duration        string   `json:"duration"`
		DurationSeconds *float64 `json:"duration_seconds"`
	}
	var p struct {
		Deployments []struct {
			Name, Commit  string
			CommitSubject string `json:"commit_subject"`
			CommitURL     string `json:"commit_url"`
			Runs          []run
		}
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET /status.json: %v\n%s", err, body)
	}
	runs := map[int64]run{}
	deps := map[string]int{}
	for i, d := range p.Deployments {
		deps[d.Name] = i
		for _, r := range d.Runs {
			runs[r.ID] = r
		}
	}
	secs := func(f *float64) float64 {
		if f == nil {
			return -1
		}
		return *f
	}
	if api := p.Deployments[deps["api"]]; api.CommitURL != link+statustest.CommitOK || api.CommitSubject != statustest.SubjectOK {
		t.Errorf("GET /status.json: api's current commit_url %q, commit_subject %q; want %q, %q", api.CommitURL,
			api.CommitSubject, link+statustest.CommitOK, statustest.SubjectOK)
	}
	started := in.Now.Add(-3*time.Hour + statustest.WaitOK).UTC().Format(time.RFC3339)
	if r := runs[in.Runs["api-ok"]]; r.CommitSubject != statustest.SubjectOK || r.Author != statustest.AuthorOK ||
		r.CommitURL != link+statustest.CommitOK || r.Started != started || r.Wait != "30s" || secs(r.WaitSeconds) != 30 ||
		r.Duration != "2m30s" || secs(r.DurationSeconds) != 150 {
		t.Errorf("GET /status.json: api-ok = %+v; want subject %q, author %q, commit_url, started_at %s, wait 30s, duration 2m30s",
			r, statustest.SubjectOK, statustest.AuthorOK, started)
	}
	if r := runs[in.Runs["api-failed"]]; r.CommitSubject != statustest.SubjectHostile || r.Author != statustest.AuthorHostile ||
		r.TriggeredBy != statustest.ByHostile || r.CommitURL != link+statustest.CommitFailed {
		t.Errorf("GET /status.json: api-failed = %+v; want the hostile subject, author and triggered_by as they are (JSON escapes them)", r)
	}
	if r := runs[in.Runs["docs-running"]]; r.Wait != "1m0s" || r.Duration != "2m0s" || secs(r.DurationSeconds) != 120 {
		t.Errorf("GET /status.json: docs-running = %+v; want waited 1m0s, running for 2m0s at Now", r)
	}
	if r := runs[in.Runs["blog-waiting"]]; r.Wait != "10m0s" || secs(r.WaitSeconds) != 600 || r.Duration != "" {
		t.Errorf("GET /status.json: blog-waiting = %+v; want waiting for 10m0s at Now, no duration", r)
	}
	for _, r := range p.Deployments[deps["web"]].Runs {
		if r.CommitURL != "" {
			t.Errorf("GET /status.json: web's run %d has commit_url %q; want none (web fetches from a local clone_url)", r.ID, r.CommitURL)
		}
	}

	// HTML in New York (EST in November), reloading every 30 s.
	cfg := *in.Config
	cfg.Status.TimeZone, cfg.Status.Refresh = "America/New_York", 30*time.Second
	h := status.New(func() *config.Config { return &cfg }, in.Store, status.Options{Now: func() time.Time { return in.Now }})
	res, body := get(t, h, "GET", "/status")
	if res.StatusCode != 200 {
		t.Fatalf("GET /status = %d; want 200", res.StatusCode)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="30">`,
		`times in <span id="time-zone">America/New_York</span>`,
		`Generated <span id="generated">2026-11-22 07:00:00 EST</span>`,
		`<td class="t">2026-11-22 04:00:30 EST<br>`, // api-ok started at 09:00:30 UTC
		`<a class="commit" href="` + link + statustest.CommitOK + `"><code title="` + statustest.CommitOK + `">` + statustest.CommitOK[:12] + `</code></a>`,
		`<span class="subject">Add the login page</span>`,
		`<span class="meta author">Alice Example &lt;alice@example.org&gt;</span>`,
		`<code title="` + statustest.CommitWeb + `">` + statustest.CommitWeb[:12] + `</code>`,                        // web: no link
		`<span class="meta wait">queued 2026-11-22 04:00:00 EST, waited 30s</span>`, `<td class="t took">2m30s</td>`, // api-ok
		`<td class="t took">2m0s so far</td>`, // docs-running
		`<td class="t">-<br><span class="meta wait">queued 2026-11-22 06:50:00 EST, waiting 10m0s so far</span>`, // blog-waiting
		// The hostile values, escaped, each on one line.
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &#34;quoted&#34; &#39;single&#39;`,
		`Mallory &#34;&lt;/td&gt;&lt;script&gt;x&lt;/script&gt;&#34; &lt;m@example.org&gt;`,
		`pusher=&lt;b&gt;eve&lt;/b&gt; sender=&#34;x&#34; onmouseover=&#34;alert(1)&#34;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /status in New York: no %q in the page", want)
		}
	}
	if strings.Contains(body, `href="`+link+statustest.CommitWeb) {
		t.Errorf("GET /status: web's commit is linked; want it bare (a local clone_url)")
	}
	for _, bad := range []string{"<script", "<b>", `onmouseover="`, "</td><script"} {
		if strings.Contains(body, bad) {
			t.Errorf("GET /status: the page holds %q from the data", bad)
		}
	}
	for i, r := range body {
		if r != '\n' && unicode.IsControl(r) {
			t.Errorf("GET /status: control character %q at byte %d: %q", r, i, body[max(i-60, 0):i])
			break
		}
	}
	if _, body := get(t, h, "GET", "/status.json"); !strings.Contains(body, `"started_at": "`+started+`"`) {
		t.Errorf("GET /status.json in New York: no started_at %s; want the JSON in UTC", started)
	}

	// The default zone is UTC, and no refresh.
	_, body = get(t, handler(in, ""), "GET", "/status")
	if !strings.Contains(body, `<td class="t">2026-11-22 09:00:30 UTC<br>`) || strings.Contains(body, "http-equiv") {
		t.Errorf("GET /status by default: want times in UTC and no refresh")
	}
}

// TestRefresh checks ?refresh=SECONDS: bounded, 0 turning the configured
// refresh off, and kept by the links to the other views.
func TestRefresh(t *testing.T) {
	in := statustest.New(t, "")
	cfg := *in.Config
	cfg.Status.Refresh = time.Minute
	h := status.New(func() *config.Config { return &cfg }, in.Store,
		status.Options{PageSize: 2, Now: func() time.Time { return in.Now }})
	for _, c := range []struct {
		target string
		code   int
		want   string // in the body
		not    string // not in the body
	}{
		{"/status", 200, `<meta http-equiv="refresh" content="60">`, ""},
		{"/status?refresh=10", 200, `<meta http-equiv="refresh" content="10">`, `content="60"`},
		{"/status?refresh=3600", 200, `<meta http-equiv="refresh" content="3600">`, ""},
		{"/status?refresh=0", 200, "<h1>", "http-equiv"},
		{"/status?page=1&refresh=10", 200, `href="/status?page=2&amp;refresh=10"`, ""},
		{"/status?page=1&refresh=10", 200, `href="/status?deployment=api&amp;refresh=10"`, ""},
		{"/status?page=1", 200, `href="/status?page=2"`, "refresh=60"},
		{"/status?deployment=api&refresh=10", 200, `href="/status?refresh=10">all deployments`, ""},
		{"/status.json?refresh=10", 200, `"deployments"`, "refresh"},
		{"/status?refresh=4", 400, "refresh \"4\": want 0 (no refresh) or seconds from 5 to 3600", ""},
		{"/status?refresh=3601", 400, "refresh \"3601\": want 0", ""},
		{"/status?refresh=-10", 400, "refresh \"-10\": want 0", ""},
		{"/status?refresh=1e3", 400, "refresh \"1e3\": want 0", ""},
		{"/status?refresh=", 400, "refresh \"\": want 0", ""},
		{"/status?refresh=%3Cscript%3E%0A", 400, `refresh "<script>\n": want 0`, ""}, // text/plain, quoted
	} {
		res, body := get(t, h, "GET", c.target)
		if c.code != 200 && res.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q; want text/plain", c.target, res.Header.Get("Content-Type"))
		}
		if res.StatusCode != c.code || !strings.Contains(body, c.want) || c.not != "" && strings.Contains(body, c.not) {
			t.Errorf("GET %s = %d %q; want %d with %q, without %q", c.target, res.StatusCode, body[:min(len(body), 300)], c.code, c.want, c.not)
		}
	}
}
