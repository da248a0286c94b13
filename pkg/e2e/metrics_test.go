package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The real stages with dh-route's status listener and dh-receive's
// metrics: both scraped and parsed with Prometheus's text parser before
// and after a push, whose counts move; then dh-deploy@app stops, a push
// waits in its queue longer than status.stall_after and /healthz turns
// 503 naming the queue, until the worker runs again.
func TestMetrics(t *testing.T) {
	r := newRig(t, rigOptions{})
	app := r.newRepo("e2e/app")
	// Both commits are pushed now (the bare repository is dh-deploy's
	// after a push); each is delivered in turn.
	app.push(t, app.commit(t, map[string]string{"index.html": "<h1>e2e</h1>\n"}, 2))

	statusToken, receiveToken := "status-"+demo.NewGUID(), "receive-"+demo.NewGUID()
	statusTokenFile := filepath.Join(filepath.Dir(r.config), "status-token")
	receiveTokenFile := filepath.Join(filepath.Dir(r.config), "metrics-token")
	for file, tok := range map[string]string{statusTokenFile: statusToken, receiveTokenFile: receiveToken} {
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	chownName(t, statusTokenFile, "dh-route")
	chownName(t, receiveTokenFile, "dh-receive")
	statusAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	r.writeConfig(fmt.Sprintf(`
[status]
listen      = %q
token_file  = %q
stall_after = "2s"
%s`, statusAddr, statusTokenFile, r.appDeployment("app", app)))
	doc, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.Replace(string(doc), "[receive]\n", fmt.Sprintf("[receive]\nmetrics_token_file = %q\n", receiveTokenFile), 1))
	if err := os.WriteFile(r.config, doc, 0o640); err != nil {
		t.Fatal(err)
	}
	r.migrate()
	r.acl("deployment", "app")
	r.startStages([]string{"app"})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	routeURL, receiveURL := "http://"+statusAddr, "http://"+r.addr
	r.waitFor(ctx, "dh-route's status listener", func() bool {
		code, _ := r.get(routeURL+"/healthz", statusToken)
		return code == http.StatusOK
	})
	for _, u := range []string{routeURL + "/metrics", receiveURL + "/metrics"} {
		if code, body := r.get(u, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token = %d %s; want 401", u, code, body)
		}
		if code, body := r.get(u, "wrong"); code != http.StatusForbidden {
			t.Errorf("GET %s with a wrong token = %d %s; want 403", u, code, body)
		}
	}

	route := r.scrape(routeURL+"/metrics", statusToken)
	receive := r.scrape(receiveURL+"/metrics", receiveToken)
	for _, c := range []struct {
		fams   map[string]*dto.MetricFamily
		name   string
		labels []string
		want   float64
	}{
		{route, "dh_route_database_up", nil, 1},
		{route, "dh_route_queue_depth", []string{"queue", "app"}, 0},
		{route, "dh_route_queue_stalled", []string{"queue", "app"}, 0},
		{route, "dh_route_runs", []string{"deployment", "app", "state", "succeeded"}, 0},
		{route, "dh_route_deliveries", []string{"event", "push", "decision", "routed"}, 0},
		{route, "dh_route_run_duration_seconds", []string{"deployment", "app"}, 0},
		{receive, "dh_receive_deliveries_total", []string{"event", "push", "code", "202"}, 0},
		{receive, "dh_receive_bytes_in_flight", nil, 0},
		{receive, "dh_receive_backlog_refusals_total", nil, 0},
	} {
		if got := metricValue(c.fams, c.name, c.labels...); got != c.want {
			t.Errorf("before the push: %s%v = %v; want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := route["dh_route_last_success_age_seconds"]; ok {
		t.Errorf("before the push: dh_route_last_success_age_seconds present; want absent (app never succeeded)")
	}

	push := func(sha string) string {
		t.Helper()
		payload, err := demo.PushPayload(app.fullName, "refs/heads/main", github.ZeroSHA, sha)
		if err != nil {
			t.Fatal(err)
		}
		guid := demo.NewGUID()
		if status, err := r.post(ctx, "push", guid, payload); err != nil || status != 202 {
			t.Fatalf("push = %d, %v; want 202", status, err)
		}
		return guid
	}
	r.waitRun(ctx, push(app.commits[0]), "app")
	// The worker records the run's end before it removes its entry.
	r.waitFor(ctx, "queues/app to be empty", func() bool {
		route = r.scrape(routeURL+"/metrics", statusToken)
		return metricValue(route, "dh_route_queue_depth", "queue", "app") == 0
	})

	route = r.scrape(routeURL+"/metrics", statusToken)
	receive = r.scrape(receiveURL+"/metrics", receiveToken)
	for _, c := range []struct {
		fams   map[string]*dto.MetricFamily
		name   string
		labels []string
		want   float64
	}{
		{route, "dh_route_runs", []string{"deployment", "app", "state", "succeeded"}, 1},
		{route, "dh_route_deliveries", []string{"event", "push", "decision", "routed"}, 1},
		{route, "dh_route_run_duration_seconds", []string{"deployment", "app"}, 1},
		{route, "dh_route_queue_depth", []string{"queue", "app"}, 0},
		{receive, "dh_receive_deliveries_total", []string{"event", "push", "code", "202"}, 1},
		{receive, "dh_receive_request_duration_seconds", nil, 1},
	} {
		if got := metricValue(c.fams, c.name, c.labels...); got != c.want {
			t.Errorf("after the push: %s%v = %v; want %v", c.name, c.labels, got, c.want)
		}
	}
	if age := metricValue(route, "dh_route_last_success_age_seconds", "deployment", "app"); age < 0 || age > 60 {
		t.Errorf("after the push: dh_route_last_success_age_seconds{app} = %v; want a few seconds", age)
	}

	// The worker stops; the next push waits in queues/app.
	r.mu.Lock()
	worker := r.procs["dh-deploy@app"]
	r.mu.Unlock()
	worker.kill(syscall.SIGTERM)
	r.mu.Lock()
	delete(r.procs, "dh-deploy@app") // stopped on purpose: not an exit waitFor fails on
	r.mu.Unlock()
	guid := push(app.commits[1])
	var health struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
		Stalled []string `json:"stalled"`
	}
	began := time.Now()
	r.waitFor(ctx, "/healthz to report queues/app stalled", func() bool {
		code, body := r.get(routeURL+"/healthz", statusToken)
		health.Stalled = nil
		json.Unmarshal([]byte(body), &health)
		return code == http.StatusServiceUnavailable && slices.Contains(health.Stalled, "app")
	})
	t.Logf("/healthz red %v after the push: %q", time.Since(began).Round(time.Millisecond), health.Reasons)
	if len(health.Reasons) != 1 || !strings.Contains(health.Reasons[0], "dh-deploy@app") {
		t.Errorf("/healthz reasons = %q; want one naming the worker to start, dh-deploy@app", health.Reasons)
	}
	route = r.scrape(routeURL+"/metrics", statusToken)
	if got := metricValue(route, "dh_route_queue_stalled", "queue", "app"); got != 1 {
		t.Errorf("worker stopped: dh_route_queue_stalled{app} = %v; want 1", got)
	}
	if got := metricValue(route, "dh_route_queue_oldest_age_seconds", "queue", "app"); got < 2 {
		t.Errorf("worker stopped: dh_route_queue_oldest_age_seconds{app} = %v; want over stall_after (2s)", got)
	}

	// The worker runs again: green, and the waiting push deploys.
	if err := worker.start(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.procs["dh-deploy@app"] = worker
	r.mu.Unlock()
	r.waitFor(ctx, "/healthz to turn green", func() bool {
		code, _ := r.get(routeURL+"/healthz", statusToken)
		return code == http.StatusOK
	})
	r.waitRun(ctx, guid, "app")
	route = r.scrape(routeURL+"/metrics", statusToken)
	if got := metricValue(route, "dh_route_queue_stalled", "queue", "app"); got != 0 {
		t.Errorf("worker running: dh_route_queue_stalled{app} = %v; want 0", got)
	}
	if got := metricValue(route, "dh_route_runs", "deployment", "app", "state", "succeeded"); got != 2 {
		t.Errorf("after the second push: dh_route_runs{app,succeeded} = %v; want 2", got)
	}
}

// get does a GET with a bearer token (none if "") and returns the status
// and the body.
func (r *rig) get(url, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads url's metrics with Prometheus's text parser.
func (r *rig) scrape(url, token string) map[string]*dto.MetricFamily {
	r.t.Helper()
	code, body := r.get(url, token)
	if code != http.StatusOK {
		r.t.Fatalf("GET %s = %d %s; want 200", url, code, body)
	}
	return statustest.ParseMetrics(r.t, body)
}

// metricValue is statustest.Metric's value, 0 if there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	v, _ := statustest.Metric(fams, name, labels...)
	return v
}
