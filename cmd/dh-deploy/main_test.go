package main

import (
	"context"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// BenchmarkHistory runs dh-deploy history over 10,000 and 1,000,000 runs
// (storetest.Fill over 10 deployments). "page" is `history dep1` in
// process (its default page of 20 runs), each iteration over both
// histories in turn: 10k-ms, 1M-ms and 1M-ratio (target, issue 21: at
// most 1.5). "all" is the built binary's `history never --all --json`
// over both (a tenth of the runs: 1,000 and 100,000), which reads a page
// at a time: the peak RSS of each (10k-peak-RSS-MB, 1M-peak-RSS-MB) and
// the runs it printed.
func BenchmarkHistory(b *testing.B) {
	bin := testenv.Build(b, "dh-deploy")
	names := []string{"10k", "1M"}
	configs := make([]string, len(names))
	for i, n := range []int{10_000, 1_000_000} {
		configs[i] = statustest.Many(b, storetest.History{Runs: n, Deployments: 10}).ConfigPath
	}
	b.Run("page", func(b *testing.B) {
		times := make([][]time.Duration, len(configs))
		for b.Loop() {
			for i, cfg := range configs {
				start := time.Now()
				env := &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
				if code := cli.Run(context.Background(), app, env, []string{"-c", cfg, "history", "dep1"}); code != 0 {
					b.Fatalf("history dep1 = %d", code)
				}
				times[i] = append(times[i], time.Since(start))
			}
		}
		statustest.ReportTimes(b, names[0], times[0], 0)
		statustest.ReportTimes(b, names[1], times[1], 0, times[0])
	})
	b.Run("all", func(b *testing.B) {
		rss, lines := make([]int64, len(configs)), make([]int64, len(configs))
		for b.Loop() {
			for i, cfg := range configs {
				cmd := exec.Command(bin, "-c", cfg, "history", "never", "--all", "--json")
				n := &lineCounter{}
				cmd.Stdout = n
				if err := cmd.Run(); err != nil {
					b.Fatalf("history never --all = %v", err)
				}
				rss[i] = max(rss[i], cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
				lines[i] = n.lines
			}
		}
		for i, name := range names {
			b.ReportMetric(float64(rss[i])/1024, name+"-peak-RSS-MB")
			b.ReportMetric(float64(lines[i]), name+"-runs")
		}
	})
}

// lineCounter counts the lines written to it.
type lineCounter struct{ lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, ch := range p {
		if ch == '\n' {
			c.lines++
		}
	}
	return len(p), nil
}
