package receive

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// benchPayload is a real push payload padded to about 7 KB.
func benchPayload(b *testing.B) []byte {
	for _, f := range testenv.Fixtures(b) {
		if body, err := os.ReadFile(f.Path); err == nil && f.Event == "push" && len(body) > 6500 && len(body) < 7500 {
			return body
		}
	}
	b.Fatal("no push fixture of about 7 KB")
	return nil
}

// floorHandler is the least a durable webhook receiver can do: verify the
// HMAC, then write + fsync + rename + fsync the directory. Without
// syncDir it skips the directory fsync: the "ceiling", what the floor
// would do if its directory fsyncs cost nothing, which bounds what
// sharing them (dh-receive's group commit) can gain over the floor.
func floorHandler(dir string, syncDir bool) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="))
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		if err != nil || !hmac.Equal(m.Sum(nil), sum) {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		name := filepath.Join(dir, strconv.FormatInt(n.Add(1), 10))
		f, err := os.Create(name + ".tmp")
		if err == nil {
			_, err = f.Write(body)
		}
		if err == nil {
			err = f.Sync()
		}
		if f != nil {
			f.Close()
		}
		if err == nil {
			err = os.Rename(name+".tmp", name+".json")
		}
		if err == nil && syncDir {
			var d *os.File
			if d, err = os.Open(dir); err == nil {
				err = d.Sync()
				d.Close()
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(202)
	})
}

func serveBench(b *testing.B, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String() + "/github-webhook"
}

// target is one side of BenchmarkReceive at one concurrency: a server,
// its clients' connections, and what it measured over its chunks.
type target struct {
	url     string
	client  *http.Client
	next    atomic.Int64 // deliveries sent, over every run: each has its own id
	lat     []time.Duration
	elapsed time.Duration
}

func newTarget(url string, conc int) *target {
	return &target{url: url, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}}
}

// chunk sends n signed deliveries from conc clients and adds their
// latencies and the time they took to t's.
func (t *target) chunk(b *testing.B, conc, n int, body []byte, sig string) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				req, _ := http.NewRequest("POST", t.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("00000000-0000-4000-8000-%012d", t.next.Add(1)))
				req.Header.Set("X-Hub-Signature-256", sig)
				t0 := time.Now()
				resp, err := t.client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != 202 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	t.elapsed += time.Since(start)
	t.lat = append(t.lat, lat...)
}

// report reports t's throughput and latency percentiles over its chunks.
func (t *target) report(b *testing.B) {
	if len(t.lat) == 0 {
		b.Fatal("nothing measured")
	}
	lat := slices.Sorted(slices.Values(t.lat))
	b.ReportMetric(float64(len(lat))/t.elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// Chunks is how many parts BenchmarkReceive splits each side's requests
// into, alternating the sides.
const Chunks = 8

// interleave sends n deliveries to each of the sides in Chunks chunks,
// taking turns (each chunk round starts with the next side), so that all
// see the same phases of the disk's write-back, and keeps each side's
// figures of this run only.
func interleave(b *testing.B, sides []*target, conc, n int, body []byte) {
	sig := github.Sign(body, secret)
	for _, t := range sides {
		t.lat, t.elapsed = nil, 0
	}
	for k := range Chunks {
		size := n*(k+1)/Chunks - n*k/Chunks
		if size == 0 {
			continue
		}
		for i := range sides {
			sides[(k+i)%len(sides)].chunk(b, conc, size, body, sig)
		}
	}
}

// Writer is the concurrent build of the benchmarks' "writer" condition: a
// buffered writer keeping up to WriterSize bytes dirty on the queue's file
// system, without syncing, for at most WriterLimit.
const (
	WriterSize  = 1536 << 20 // 1.5 GB, what npm ci or a build writes
	WriterWarm  = 512 << 20  // written before the measurements start
	WriterLimit = 5 * time.Minute
)

// BenchmarkReceive compares dh-receive with the floor, at concurrency 1,
// 16 and 64, on a quiet disk and beside a buffered writer on the same file
// system, in the same run. Compare them as ratios: the machine is shared.
//
// The sides are measured together, interleaved: floor/cN sends b.N
// deliveries to each side in Chunks chunks, taking turns, and reports the
// floor's throughput and latency percentiles over its chunks;
// ceiling/cN and dh-receive/cN then report theirs, measured by the same
// run. So a writer's dirty data ages (the kernel writes it back after
// about 30 s) under every side alike, rather than under whichever ran
// last. The ceiling is the floor without its directory fsync: no way of
// sharing directory fsyncs beats it, so dh-receive ÷ floor can exceed
// ceiling ÷ floor only by doing less per request than the floor.
func BenchmarkReceive(b *testing.B) {
	body := benchPayload(b)
	for _, cond := range []string{"quiet", "writer"} {
		b.Run(cond, func(b *testing.B) {
			dir := b.TempDir()
			if cond == "writer" {
				stop := testenv.BufferedWriter(b, dir, WriterSize, WriterWarm, WriterLimit)
				defer stop()
			}
			for _, conc := range []int{1, 16, 64} {
				d, err := os.MkdirTemp(dir, "floor.")
				if err != nil {
					b.Fatal(err)
				}
				floor := newTarget(serveBench(b, floorHandler(d, true)), conc)
				if d, err = os.MkdirTemp(dir, "ceiling."); err != nil {
					b.Fatal(err)
				}
				ceiling := newTarget(serveBench(b, floorHandler(d, false)), conc)
				if d, err = os.MkdirTemp(dir, "receive."); err != nil {
					b.Fatal(err)
				}
				q := queue.Open(filepath.Join(d, "main"))
				if err := q.Init(); err != nil {
					b.Fatal(err)
				}
				s := &Server{Config: config.Default().Receive, Secrets: [][]byte{secret}, Queue: q,
					Logger: slog.New(slog.DiscardHandler), Now: time.Now}
				dh := newTarget(serveBench(b, s.Handler()), conc)

				b.Run(fmt.Sprintf("floor/c%d", conc), func(b *testing.B) {
					interleave(b, []*target{floor, ceiling, dh}, conc, b.N, body)
					b.StopTimer()
					floor.report(b)
				})
				for _, side := range []struct {
					name string
					t    *target
				}{{"ceiling", ceiling}, {"dh-receive", dh}} {
					b.Run(fmt.Sprintf("%s/c%d", side.name, conc), func(b *testing.B) {
						for range b.N { // measured with the floor, above
						}
						side.t.report(b)
					})
				}
			}
		})
	}
}

// BenchmarkIdleRSS starts the real dh-receive binary and reports its
// resident memory once it is idle.
func BenchmarkIdleRSS(b *testing.B) {
	dir := b.TempDir()
	bin := testenv.Build(b, "dh-receive")
	os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("queue_dir = %q\nstate_dir = %q\n[receive]\nlisten = %q\nsecret_files = [%q]\n",
		dir, dir, addr, filepath.Join(dir, "secret"))
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644)
	queue.Open(filepath.Join(dir, "main")).Init()
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "config.toml"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			b.Fatal("dh-receive did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(time.Second)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	var kb float64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(kb/1024, "idle-RSS-MB")
	b.ReportMetric(0, "ns/op")
}
