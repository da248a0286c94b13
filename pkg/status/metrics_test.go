package status_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// scrape serves GET /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, h http.Handler, header ...string) map[string]*dto.MetricFamily {
	t.Helper()
	res, body := get(t, h, http.MethodGet, "/metrics", header...)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s; want 200", res.StatusCode, body)
	}
	return statustest.ParseMetrics(t, body)
}

func TestMetrics(t *testing.T) {
	// The certificates' files are not readable here (none in cert_dir,
	// as on a host where dh-route may not look into it): their expiry
	// is what dh-cert recorded.
	in := statustest.New(t, "\n[nginx]\ncert_dir = \""+t.TempDir()+"\"\n")
	expires := time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, c := range []store.Cert{
		{Name: "app.test", Domains: []string{"app.test"}, State: store.CertIssued, IssuedAt: in.Now, NotAfter: expires},
		{Name: "pending.test", Domains: []string{"pending.test"}, State: store.CertWaiting}, // no expiry recorded yet
	} {
		if err := in.Store.PutCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	h := handler(in, "s3cret")
	if res, _ := get(t, h, http.MethodGet, "/metrics"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token = %d; want 401", res.StatusCode)
	}
	fams := scrape(t, h, "Authorization", "Bearer s3cret")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"dh_route_database_up", nil, 1},
		{"dh_route_queue_depth", []string{"queue", "main"}, 1},
		{"dh_route_queue_depth", []string{"queue", "api"}, 1},
		{"dh_route_queue_depth", []string{"queue", "cms"}, 0},
		{"dh_route_queue_failed", []string{"queue", "api"}, 1},
		{"dh_route_queue_stalled", []string{"queue", "api"}, 0}, // its entry is younger than stall_after at in.Now
		{"dh_route_runs", []string{"deployment", "api", "state", "failed"}, 1},
		{"dh_route_runs", []string{"deployment", "api", "state", "succeeded"}, 1},
		{"dh_route_runs", []string{"deployment", "cms", "state", "succeeded"}, 3},
		{"dh_route_runs", []string{"deployment", "docs", "state", "running"}, 1},
		{"dh_route_runs", []string{"deployment", "blog", "state", "queued"}, 1},
		{"dh_route_run_duration_seconds", []string{"deployment", "api"}, 2},
		{"dh_route_run_duration_seconds", []string{"deployment", "docs"}, 0}, // still running
		{"dh_route_deliveries", []string{"event", "push", "decision", "routed"}, 1},
		{"dh_route_deliveries", []string{"event", "push", "decision", "voided"}, 1},
		{"dh_route_cert_expiry_timestamp_seconds", []string{"cert", "app.test"}, float64(expires.Unix())},
		{"dh_route_scrape_errors", []string{"source", "queue"}, 1}, // old's queue is a file
		{"dh_route_scrape_errors", []string{"source", "cert"}, 0},  // pending.test's expiry is not known yet: not an error
		{"dh_route_scrape_errors", []string{"source", "database"}, 0},
	} {
		if got, ok := statustest.Metric(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%q = %v (present %t); want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if b := fams["dh_route_run_duration_seconds"].GetMetric()[0].GetHistogram().GetBucket(); len(b) != len(status.RunDurationBuckets)+1 { // and +Inf
		t.Errorf("dh_route_run_duration_seconds has %d buckets; want all %d and +Inf", len(b), len(status.RunDurationBuckets))
	}
	if _, ok := statustest.Metric(fams, "dh_route_last_success_age_seconds", "deployment", "cms"); !ok {
		t.Errorf("dh_route_last_success_age_seconds{cms} absent; want present (cms succeeded)")
	}
	if _, ok := statustest.Metric(fams, "dh_route_last_success_age_seconds", "deployment", "docs"); ok {
		t.Errorf("dh_route_last_success_age_seconds{docs} present; want absent (docs never succeeded)")
	}
	if _, ok := statustest.Metric(fams, "dh_route_cert_expiry_timestamp_seconds", "cert", "pending.test"); ok {
		t.Errorf("dh_route_cert_expiry_timestamp_seconds{pending.test} present; want absent (no expiry recorded)")
	}
}

func TestMetricsDatabaseDown(t *testing.T) {
	in := statustest.New(t, "")
	h := status.New(func() *config.Config { return in.Config }, nil, status.Options{Now: func() time.Time { return in.Now }})
	fams := scrape(t, h)
	if got, ok := statustest.Metric(fams, "dh_route_database_up"); !ok || got != 0 {
		t.Errorf("no database: dh_route_database_up = %v (present %t); want 0", got, ok)
	}
	if got, ok := statustest.Metric(fams, "dh_route_queue_depth", "queue", "api"); !ok || got != 1 {
		t.Errorf("no database: dh_route_queue_depth{api} = %v (present %t); want 1 (the queues are still read)", got, ok)
	}
}

// An entry older than stall_after waits in queues without a worker: red,
// naming them; once a worker holds each queue's lock, green.
func TestHealthzStalledWorker(t *testing.T) {
	in := statustest.New(t, "")
	later := time.Now().Add(time.Hour) // the entries of main and api are an hour old
	h := status.New(func() *config.Config { return in.Config }, in.Store, status.Options{Now: func() time.Time { return later }})
	health := func() (int, status.Health) {
		t.Helper()
		res, body := get(t, h, http.MethodGet, "/healthz")
		var hl status.Health
		if err := json.Unmarshal([]byte(body), &hl); err != nil {
			t.Fatalf("GET /healthz: %v: %s", err, body)
		}
		return res.StatusCode, hl
	}
	code, hl := health()
	if code != http.StatusServiceUnavailable || !slices.Equal(hl.Stalled, []string{"main", "api"}) {
		t.Fatalf("GET /healthz, no worker = %d %+v; want 503 with main and api stalled", code, hl)
	}
	if !strings.Contains(strings.Join(hl.Reasons, "\n"), "systemctl start dh-deploy@api") {
		t.Errorf("reasons %q; want the fix for api: systemctl start dh-deploy@api", hl.Reasons)
	}
	if got, _ := statustest.Metric(scrape(t, h), "dh_route_queue_stalled", "queue", "api"); got != 1 {
		t.Errorf("dh_route_queue_stalled{api} = %v; want 1", got)
	}

	// The probes left no lock behind: the workers get theirs.
	for _, name := range []string{"main", "api"} {
		c, err := queue.Open(in.Config.QueuePath(name)).Lock(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if code, hl := health(); code != http.StatusOK || len(hl.Stalled) > 0 {
		t.Errorf("GET /healthz, workers holding the locks = %d %+v; want 200", code, hl)
	}
	if got, _ := statustest.Metric(scrape(t, h), "dh_route_queue_stalled", "queue", "api"); got != 0 {
		t.Errorf("dh_route_queue_stalled{api} with its worker = %v; want 0", got)
	}
}
