package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const raw = `# commit: v1.0.0-3-gabcdef0
# load start: 0.10 0.20 0.30
goos: linux
pkg: github.com/dh-deployer/dh-deployer/pkg/receive
BenchmarkReceive/quiet/floor/c1-2         	    2000	         2.000 p50-ms	        10.00 p99-ms	       200.0 req/s
BenchmarkReceive/quiet/ceiling/c1-2       	    2000	         1.500 p50-ms	         8.00 p99-ms	       300.0 req/s
BenchmarkReceive/quiet/dh-receive/c1-2    	    2000	         3.000 p50-ms	        20.00 p99-ms	       150.0 req/s
BenchmarkReceive/quiet/dh-receive/c1-2    	    2000	         3.000 p50-ms	        20.00 p99-ms	       170.0 req/s
BenchmarkReceive/quiet/dh-receive/c1-2    	    2000	         3.000 p50-ms	        20.00 p99-ms	       100.0 req/s
PASS
pkg: github.com/dh-deployer/dh-deployer/pkg/route
BenchmarkRouteBacklog/quiet-2      	       1	      2000 deliveries/s	        50.0 peak-RSS-MB
BenchmarkRouteBacklog/writer-2     	       1	      1500 deliveries/s	        52.0 peak-RSS-MB
pkg: github.com/dh-deployer/dh-deployer/pkg/demo
BenchmarkDaemons/dh-cert-2            	       5	         9.914 idle-RSS-MB	       127.0 start-ms
pkg: github.com/dh-deployer/dh-deployer/pkg/status
BenchmarkStatus/status-2     	      20	  60000000 ns/op	        20.00 10k-ms	        45.00 10k-KB	        25.00 1M-ms	        45.40 1M-KB	         1.25 1M-ratio
BenchmarkHistory/all-2        	       5	  900000000 ns/op	   100000 1M-runs	        21.50 1M-peak-RSS-MB
pkg: github.com/dh-deployer/dh-deployer/pkg/deploy
BenchmarkPrepareRelease-2   	      10	      6952 floor-ms	      5338 release-ms	         0.7678 x-floor
`

// The report shows each figure (the median of repeated runs) in its row,
// the ratio to the floor, "-" for what did not run, the header from the
// "# key: value" lines, and no trailing blanks for diff to trip on.
func TestReport(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	if code := run([]string{file}, &out, &errs); code != 0 {
		t.Fatalf("run = %d; want 0\n%s", code, errs.String())
	}
	report := out.String()
	for _, want := range []string{
		"  commit   v1.0.0-3-gabcdef0\n",
		"0.10 0.20 0.30 at start, - at end",
		"  quiet dh-receive c1            150     3.00    20.00     0.75x     2.00x\n",
		"  quiet ceiling c1               300     1.50     8.00     1.50x     0.80x\n",
		"  writer floor c16                 -        -        -\n",
		"  writer dh-receive c64            -        -        -         -         -\n",
		"  deliveries/s                 2000       1500\n",
		"  writer vs quiet            0.75x (target >= 0.70x)\n",
		"  dh-cert run                 127.0          9.9            -\n",
		"  /status 1M runs                      25.0      45.4     1.25x (target <= 1.50x)\n",
		"  /status.json 1M runs                    -         -         - (target <= 1.50x)\n",
		"    of 1M runs                       100000      21.5\n",
		"  release ms                 5338.0\n",
		"  release vs floor            0.77x (target <= 1.30x)\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for line := range strings.Lines(report) {
		if strings.TrimRight(line, " \n") != strings.TrimSuffix(line, "\n") {
			t.Errorf("trailing blank in %q", line)
		}
	}
	if code := run(nil, &out, &errs); code != 64 {
		t.Errorf("run(no file) = %d; want 64", code)
	}
}
