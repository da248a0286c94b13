package demo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
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
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	// The daemons' peak resident memory over the whole run (VmHWM).
	for _, d := range r.daemons {
		b.ReportMetric(testenv.ProcStatus(b, d.cmd.Process.Pid, "VmHWM")/1024, d.name+"-peak-RSS-MB")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkDaemons reports the start-up time and the idle resident memory
// of each long-running daemon: dh-receive, dh-route run, dh-deploy run
// demo, dh-nginx run and dh-cert run, each started alone b.N times on the
// demo's setup (with [nginx] and [cert] tables whose commands are true).
// The start-up time runs from the exec until the daemon sends READY=1 to
// $NOTIFY_SOCKET (sd_notify(3)), a unix datagram socket the benchmark
// listens on: what systemd waits for with Type=notify. The idle memory is
// VmRSS one second after READY=1. Both are medians over the starts.
func BenchmarkDaemons(b *testing.B) {
	const idle = time.Second
	bin := buildTools(b)
	for _, name := range []string{"dh-nginx", "dh-cert"} {
		if err := os.Symlink(testenv.Build(b, name), filepath.Join(bin, name)); err != nil {
			b.Fatal(err)
		}
	}
	truePath, err := progpath.Find("true")
	if err != nil {
		b.Fatal(err)
	}
	dir := testenv.ShortTempDir(b, "dh-bench")
	extra := fmt.Sprintf(`
[nginx]
conf_dir       = %q
snippets_dir   = %q
cert_dir       = %q
test_command   = [%q]
reload_command = [%q]

[cert]
command = [%q]
`, filepath.Join(dir, "nginx", "conf.d"), filepath.Join(dir, "nginx", "snippets"), filepath.Join(dir, "live"),
		truePath, truePath, truePath)
	r, err := prepare(context.Background(), Options{BinDir: bin, Dir: dir, Keep: true, Config: extra})
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
	for _, q := range []string{"nginx", "cert"} {
		if err := queue.Open(filepath.Join(dir, "queues", q)).Init(); err != nil {
			b.Fatal(err)
		}
	}

	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ready := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
				ready <- time.Now()
			}
		}
	}()

	for _, argv := range [][]string{{"dh-receive", "serve"}, {"dh-route", "run"}, {"dh-deploy", "run", Deployment},
		{"dh-nginx", "run"}, {"dh-cert", "run"}} {
		b.Run(argv[0], func(b *testing.B) {
			var start, rss []float64
			for range b.N {
				t0 := time.Now()
				d, err := r.start([]string{"NOTIFY_SOCKET=" + sock}, argv[0], argv[1:]...)
				if err != nil {
					b.Fatal(err)
				}
				select {
				case at := <-ready:
					start = append(start, ms(at.Sub(t0)))
				case <-d.done:
					b.Fatalf("%s exited before READY=1: %v\n%s", d.name, d.err, tail(d.log, 12))
				case <-time.After(readyTimeout):
					b.Fatalf("%s sent no READY=1 within %v\n%s", d.name, readyTimeout, tail(d.log, 12))
				}
				time.Sleep(idle)
				rss = append(rss, testenv.ProcStatus(b, d.cmd.Process.Pid, "VmRSS")/1024)
				err = d.stop()
				r.daemons = slices.DeleteFunc(r.daemons, func(x *daemon) bool { return x == d })
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(median(start), "start-ms")
			b.ReportMetric(median(rss), "idle-RSS-MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
