package receive

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// GET /metrics counts deliveries by event and answer, backlog refusals
// and latencies; an unverified delivery's event header never becomes a
// label; only the token's holder may read them.
func TestMetrics(t *testing.T) {
	r := start(t, "", func(s *Server) { s.MetricsToken = []byte("prom-token") })
	scrape := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, r.url+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for token, want := range map[string]int{"": http.StatusUnauthorized, "wrong": http.StatusForbidden} {
		if code, body := scrape(token); code != want {
			t.Errorf("GET /metrics with token %q = %d %s; want %d", token, code, body, want)
		}
	}

	var push []byte
	for _, f := range testenv.Fixtures(t) {
		if f.Event == "push" {
			b, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			push = b
			break
		}
	}
	if code, _ := do(t, delivery(r.url, "push", push)); code != http.StatusAccepted {
		t.Fatalf("push = %d; want 202", code)
	}
	forged := delivery(r.url, "made_up_event", push)
	forged.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	if code, _ := do(t, forged); code != http.StatusForbidden {
		t.Fatalf("forged delivery = %d; want 403", code)
	}
	r.q.SetLimits(queue.Limits{MaxEntries: 1})
	if code, _ := do(t, delivery(r.url, "push", push)); code != http.StatusServiceUnavailable {
		t.Fatalf("delivery at max_entries = %d; want 503", code)
	}

	code, body := scrape("prom-token")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s; want 200", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	got := map[string]float64{}
	for _, m := range fams["dh_receive_deliveries_total"].GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		got[strings.Join(labels, ",")] = m.GetCounter().GetValue()
	}
	want := map[string]float64{"code=202,event=push": 1, "code=403,event=unverified": 1, "code=503,event=unverified": 1}
	if len(got) != len(want) {
		t.Errorf("dh_receive_deliveries_total = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("dh_receive_deliveries_total{%s} = %v; want %v", k, got[k], v)
		}
	}
	if n := fams["dh_receive_backlog_refusals_total"].GetMetric()[0].GetCounter().GetValue(); n != 1 {
		t.Errorf("dh_receive_backlog_refusals_total = %v; want 1", n)
	}
	if n := fams["dh_receive_request_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); n != 3 {
		t.Errorf("dh_receive_request_duration_seconds count = %v; want 3", n)
	}
	if n := fams["dh_receive_bytes_in_flight"].GetMetric()[0].GetGauge().GetValue(); n != 0 {
		t.Errorf("dh_receive_bytes_in_flight = %v; want 0 between requests", n)
	}
}

// Without receive.metrics_token_file there is no /metrics.
func TestMetricsOff(t *testing.T) {
	r := start(t, "", nil)
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics without a token file = %d; want 404", resp.StatusCode)
	}
}
