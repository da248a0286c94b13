package main

import (
	"context"
	"io"
	"os/exec"
	"syscall"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// BenchmarkHistory runs dh-deploy history over 10,000 and 1,000,000 runs
// (storetest.Fill over 10 deployments): "page" is `history dep1` in
// process (its default page of 20 runs; target issue 21: 1M at most 1.5×
// the time of 10k), "all" is the built binary's `history never --all
// --json` (a tenth of the runs: 1,000 and 100,000), which reads a page at
// a time and reports its peak RSS (all-peak-RSS-MB) and runs printed.
func BenchmarkHistory(b *testing.B) {
	bin := testenv.Build(b, "dh-deploy")
	for _, c := range []struct {
		name string
		runs int
	}{{"runs=10k", 10_000}, {"runs=1M", 1_000_000}} {
		in := statustest.Many(b, storetest.History{Runs: c.runs, Deployments: 10})
		b.Run(c.name+"/page", func(b *testing.B) {
			for b.Loop() {
				env := &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
				if code := cli.Run(context.Background(), app, env, []string{"-c", in.ConfigPath, "history", "dep1"}); code != 0 {
					b.Fatalf("history dep1 = %d", code)
				}
			}
		})
		b.Run(c.name+"/all", func(b *testing.B) {
			var rss, lines int64
			for b.Loop() {
				cmd := exec.Command(bin, "-c", in.ConfigPath, "history", "never", "--all", "--json")
				n := &lineCounter{}
				cmd.Stdout = n
				if err := cmd.Run(); err != nil {
					b.Fatalf("history never --all = %v", err)
				}
				rss = max(rss, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
				lines = n.lines
			}
			b.ReportMetric(float64(rss)/1024, "all-peak-RSS-MB")
			b.ReportMetric(float64(lines), "runs")
		})
	}
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
