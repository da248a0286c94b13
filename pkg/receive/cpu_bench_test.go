package receive

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// ShmDir is the tmpfs BenchmarkReceiveCPU writes its queues to, so that
// the disk (fsync, write-back) does not hide the handlers' own CPU.
const ShmDir = "/dev/shm"

// BenchmarkReceiveCPU measures the CPU time per request of dh-receive's
// handler and of the floor's (the HMAC check and a fsync'd write and
// rename), each called directly (no network, no client in the measure) one
// request at a time, on a tmpfs queue (what queue_dir_throwaway allows),
// in Chunks alternating chunks of b.N requests per side. It reports both
// figures in µs and their ratio, dh-receive ÷ floor.
func BenchmarkReceiveCPU(b *testing.B) {
	body := benchPayload(b)
	sig := github.Sign(body, secret)
	dir, err := os.MkdirTemp(ShmDir, "dh-receive-cpu.")
	if err != nil {
		b.Fatalf("a tmpfs for the queue: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	floorDir := filepath.Join(dir, "floor")
	if err := os.Mkdir(floorDir, 0o755); err != nil {
		b.Fatal(err)
	}
	q := queue.Open(filepath.Join(dir, "main"))
	if err := q.Init(); err != nil {
		b.Fatal(err)
	}
	dh := (&Server{Config: config.Default().Receive, Secrets: [][]byte{secret}, Queue: q,
		Logger: slog.New(slog.DiscardHandler), Now: time.Now}).Handler()
	floor := floorHandler(floorDir, true)

	var next int
	send := func(h http.Handler, n int) time.Duration {
		reqs := make([]*http.Request, n)
		for i := range reqs {
			next++
			r := httptest.NewRequest("POST", "http://127.0.0.1/github-webhook", bytes.NewReader(body))
			r.RemoteAddr = "127.0.0.1:1"
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-GitHub-Event", "push")
			r.Header.Set("X-GitHub-Delivery", fmt.Sprintf("00000000-0000-4000-8000-%012d", next))
			r.Header.Set("X-Hub-Signature-256", sig)
			reqs[i] = r
		}
		start := testenv.SelfCPU()
		for _, r := range reqs {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
		return testenv.SelfCPU() - start
	}
	var cpu [2]time.Duration
	b.ResetTimer()
	for k := range Chunks {
		size := b.N*(k+1)/Chunks - b.N*k/Chunks
		if size == 0 {
			continue
		}
		order := []int{0, 1}
		if k%2 == 1 {
			order = []int{1, 0}
		}
		for _, side := range order {
			cpu[side] += send([]http.Handler{floor, dh}[side], size)
		}
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(per(cpu[0]), "floor-cpu-µs/req")
	b.ReportMetric(per(cpu[1]), "dh-cpu-µs/req")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-ratio")
	b.ReportMetric(0, "ns/op")
}
