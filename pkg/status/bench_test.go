package status_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// BenchmarkStatus serves GET /status, /status.json (the first page),
// /metrics and a delivery's page (delivery.json) from three installations: 10,000 runs and 1,000,000 runs over 10
// deployments (and "never", a tenth of the runs), and 10,000 runs over
// 1,000 deployments. Each iteration asks each of them in turn, so that
// the three see the same load, and reports the median time of each
// (10k-ms, 1M-ms, 1000dep-ms), their ratios to the 10k case
// (1M-ratio, 1000dep-ratio) and the size of each page (…-KB).
// Targets (issue 21): 1M runs at most 1.5× the time of 10k; 1,000
// deployments at most 2× the time of 10, the page's size bounded.
func BenchmarkStatus(b *testing.B) {
	cases := []struct {
		name string
		h    storetest.History
	}{
		{"10k", storetest.History{Runs: 10_000, Deployments: 10, Events: 10_000}},
		{"1M", storetest.History{Runs: 1_000_000, Deployments: 10, Events: 200_000}},
		{"1000dep", storetest.History{Runs: 10_000, Deployments: 1000, Events: 10_000}},
	}
	handlers := make([]*status.Handler, len(cases))
	for i, c := range cases {
		in := statustest.Many(b, c.h)
		handlers[i] = status.New(func() *config.Config { return in.Config }, in.Store, status.Options{})
	}
	// A delivery every installation has (Fill's event and run 5001), for
	// its page: two statements by key, whatever the history.
	delivery := status.DeliveryURL(storetest.DeliveryName(5001)) + ".json"
	for _, path := range []string{"/status", "/status.json", "/metrics", delivery} {
		name := path[1:]
		if path == delivery {
			name = "delivery.json"
		}
		b.Run(name, func(b *testing.B) {
			times := make([][]time.Duration, len(cases))
			sizes := make([]int, len(cases))
			for b.Loop() {
				for i, h := range handlers {
					start := time.Now()
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
					times[i] = append(times[i], time.Since(start))
					if rec.Code != 200 {
						b.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
					}
					sizes[i] = rec.Body.Len()
				}
			}
			statustest.ReportTimes(b, cases[0].name, times[0], sizes[0])
			for i := 1; i < len(cases); i++ {
				statustest.ReportTimes(b, cases[i].name, times[i], sizes[i], times[0])
			}
		})
	}
}
