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
// HMAC, then write + fsync + rename + fsync the directory.
func floorHandler(dir string) http.Handler {
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
		if err == nil {
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

// load sends b.N signed deliveries from conc clients and reports
// throughput and latency percentiles.
func load(b *testing.B, url string, conc int, body []byte) {
	sig := github.Sign(body, secret)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
				req.Header.Set("X-Hub-Signature-256", sig)
				t0 := time.Now()
				resp, err := client.Do(req)
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
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
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
				b.Run(fmt.Sprintf("floor/c%d", conc), func(b *testing.B) {
					d, err := os.MkdirTemp(dir, "floor.")
					if err != nil {
						b.Fatal(err)
					}
					load(b, serveBench(b, floorHandler(d)), conc, body)
				})
				b.Run(fmt.Sprintf("dh-receive/c%d", conc), func(b *testing.B) {
					d, err := os.MkdirTemp(dir, "receive.")
					if err != nil {
						b.Fatal(err)
					}
					q := queue.Open(filepath.Join(d, "main"))
					if err := q.Init(); err != nil {
						b.Fatal(err)
					}
					s := &Server{Config: config.Default().Receive, Secrets: [][]byte{secret}, Queue: q,
						Logger: slog.New(slog.DiscardHandler), Now: time.Now}
					load(b, serveBench(b, s.Handler()), conc, body)
				})
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
