package demo

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// BenchmarkPushToStep reports the end-to-end latency of the pipeline, from
// the signed POST to dh-receive until the deployment's first step starts,
// over 200 pushes made one after the other (each a new commit pushed to
// the bare repository, then its webhook) through the real daemons of the
// demo's setup. The step writes its delivery into a fifo the benchmark
// reads.
func BenchmarkPushToStep(b *testing.B) {
	const pushes = 200
	bin := buildTools(b)
	dir := testenv.ShortTempDir(b, "dh-bench")
	fifo := filepath.Join(dir, "step-started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	// Opened for reading and writing, so that it never reports EOF and a
	// step's write never waits for a reader.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	type start struct {
		delivery string
		at       time.Time
	}
	started := make(chan start, pushes*b.N+1)
	go func() {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			started <- start{sc.Text(), time.Now()}
		}
	}()

	// The step runs in the checkout, dir/site.
	steps := [][]string{{"sh", "-c", `echo "$DH_DELIVERY" > ../step-started`}}
	ctx := context.Background()
	r, err := setup(ctx, Options{BinDir: bin, Dir: dir, Keep: true, Steps: steps})
	if r != nil {
		defer func() {
			if err := r.close(); err != nil {
				b.Error(err)
			}
		}()
	}
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	push := func() time.Duration {
		n++
		sha, err := r.push(map[string]string{"rev": strconv.Itoa(n)})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		delivery, err := r.post(ctx, sha)
		if err != nil {
			b.Fatal(err)
		}
		select {
		case s := <-started:
			if s.delivery != delivery {
				b.Fatalf("push %d: a step started for delivery %s; want %s", n, s.delivery, delivery)
			}
			return s.at.Sub(t0)
		case <-time.After(30 * time.Second):
			b.Fatalf("push %d: no step started 30s after the POST%s", n, r.logs())
		}
		return 0
	}
	push() // the first deployment clones the repository: not measured

	lat := make([]time.Duration, 0, pushes*b.N)
	b.ResetTimer()
	for range b.N {
		for range pushes {
			lat = append(lat, push())
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(0, "ns/op")
}
