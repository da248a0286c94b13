package status_test

import (
	"net/http/httptest"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// BenchmarkStatus serves GET /status and /status.json (the first page)
// over three histories: 10,000 runs and 1,000,000 runs over 10
// deployments (and "never", a tenth of the runs), and 10,000 runs over
// 1,000 deployments. Targets (issue 21): 1M runs at most 1.5× the time of
// 10k; 1,000 deployments at most 2× the time of 10, the page's size
// bounded. It reports page-KB, the size of the response.
func BenchmarkStatus(b *testing.B) {
	for _, c := range []struct {
		name string
		h    storetest.History
	}{
		{"runs=10k", storetest.History{Runs: 10_000, Deployments: 10, Events: 10_000}},
		{"runs=1M", storetest.History{Runs: 1_000_000, Deployments: 10, Events: 200_000}},
		{"deployments=1000", storetest.History{Runs: 10_000, Deployments: 1000, Events: 10_000}},
	} {
		in := statustest.Many(b, c.h)
		h := status.New(func() *config.Config { return in.Config }, in.Store, status.Options{})
		for _, path := range []string{"/status", "/status.json"} {
			b.Run(c.name+"/"+path[1:], func(b *testing.B) {
				var size int
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
					if rec.Code != 200 {
						b.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
					}
					size = rec.Body.Len()
				}
				b.ReportMetric(float64(size)/1024, "page-KB")
			})
		}
	}
}
