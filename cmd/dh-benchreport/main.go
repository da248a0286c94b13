// dh-benchreport prints the report of `make bench` from the raw output it
// kept: the output of `go test -bench` (benchstat's format) and the
// "# key: value" lines make bench writes around it (commit, date, machine,
// load average), which benchstat ignores. It is a development tool, not
// installed.
//
// Usage:
//
//	dh-benchreport FILE
//
// The report has one section per benchmark: receive throughput and latency
// beside the floor and the ceiling (the floor without its directory fsync)
// at c1, c16 and c64, quiet and beside a buffered writer, with the ratios
// to the floor (BenchmarkReceive), the routing backlog
// drain quiet and beside the writer, with their ratio
// (BenchmarkRouteBacklog), the end-to-end latency (BenchmarkPushToStep),
// and each daemon's start-up time and idle and peak memory
// (BenchmarkDaemons, and BenchmarkPushToStep's peaks), and the cost of
// the history at scale: the status page at 1M runs and at 1,000
// deployments and dh-deploy history at 1M runs, each with its ratio to
// the small case (BenchmarkStatus, BenchmarkHistory), and the size of a
// million deliveries and the pruning rate (BenchmarkPrune), the time to
// prepare a release beside a plain checkout (BenchmarkPrepareRelease), and
// the cost of more work: dh-receive's CPU per request beside the floor's
// on tmpfs (BenchmarkReceiveCPU), routing CPU at 1,000 deployments beside
// 1 (BenchmarkRouteDeployments), coalescing 1,000 waiting pushes beside 10
// (BenchmarkCoalesce) and 300 deployments on one host
// (BenchmarkManyDeployments). A figure that is
// missing prints as "-". With -count above 1 each figure is the median of
// the runs. Columns are fixed-width, so that two reports compare with
// diff. Exit status: 0 ok, 1 the file is unreadable, 64 usage.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: dh-benchreport FILE")
		return 64
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "dh-benchreport: error: %v\n", err)
		return 1
	}
	defer f.Close()
	res, err := parse(f)
	if err != nil {
		fmt.Fprintf(stderr, "dh-benchreport: error: %s: %v\n", args[0], err)
		return 1
	}
	report(stdout, args[0], res)
	return 0
}

// results holds what the raw output says.
type results struct {
	header map[string]string               // "# key: value" lines
	values map[string]map[string][]float64 // benchmark name -> unit -> one value per run
	iters  map[string]string               // benchmark name -> b.N of its last run
}

// procs is the -GOMAXPROCS suffix go test adds to benchmark names.
var procs = regexp.MustCompile(`-\d+$`)

func parse(r io.Reader) (*results, error) {
	res := &results{header: map[string]string{}, values: map[string]map[string][]float64{}, iters: map[string]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "# "); ok {
			if k, v, ok := strings.Cut(h, ": "); ok {
				res.header[k] = strings.TrimSpace(v)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		name := procs.ReplaceAllString(f[0], "")
		if res.values[name] == nil {
			res.values[name] = map[string][]float64{}
		}
		res.iters[name] = f[1]
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				res.values[name][f[i+1]] = append(res.values[name][f[i+1]], v)
			}
		}
	}
	return res, sc.Err()
}

// get returns the median of a benchmark's metric over its runs.
func (res *results) get(name, unit string) (float64, bool) {
	vs := slices.Clone(res.values[name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	return vs[len(vs)/2], true
}

// cell formats a metric right-aligned in width w, "-" if missing.
func (res *results) cell(w int, prec int, name, unit string) string {
	if v, ok := res.get(name, unit); ok {
		return fmt.Sprintf("%*.*f", w, prec, v)
	}
	return fmt.Sprintf("%*s", w, "-")
}

// ratio formats a's metric divided by b's as "0.75x" in 9 columns, or
// "-" if either is missing.
func (res *results) ratio(a, b, unit string) string {
	x, ok1 := res.get(a, unit)
	y, ok2 := res.get(b, unit)
	if !ok1 || !ok2 || y == 0 {
		return fmt.Sprintf("%9s", "-")
	}
	return fmt.Sprintf("%8.2fx", x/y)
}

// runs names a benchmark and its b.N for a section title.
func (res *results) runs(name string) string {
	n := "not run"
	for k, v := range res.iters {
		if k == name || strings.HasPrefix(k, name+"/") {
			n = "N=" + v
			break
		}
	}
	return fmt.Sprintf("(%s, %s)", name, n)
}

func report(w io.Writer, file string, res *results) {
	h := func(k string) string {
		if v, ok := res.header[k]; ok {
			return v
		}
		return "-"
	}
	fmt.Fprintf(w, "dh-deployer benchmark report\n")
	fmt.Fprintf(w, "  commit   %s\n", h("commit"))
	fmt.Fprintf(w, "  date     %s\n", h("date"))
	fmt.Fprintf(w, "  machine  %s CPUs, %s, %s, %s\n", h("nproc"), h("cpu model"), h("kernel"), h("go"))
	fmt.Fprintf(w, "  load     %s at start, %s at end (1, 5, 15 min averages)\n", h("load start"), h("load end"))
	fmt.Fprintf(w, "  raw      %s\n", file)

	fmt.Fprintf(w, "\nReceive: signed 7 KB pushes to the in-process handler; the floor only checks\n")
	fmt.Fprintf(w, "the HMAC and fsyncs the file and its directory; \"writer\" runs beside a buffered\n")
	fmt.Fprintf(w, "writer keeping 1.5 GB dirty on the same file system; the ceiling is the floor\n")
	fmt.Fprintf(w, "without its directory fsync, the most sharing directory fsyncs can give %s\n", res.runs("BenchmarkReceive"))
	fmt.Fprintf(w, "  %-23s %10s %8s %8s %9s %9s\n", "", "req/s", "p50 ms", "p99 ms", "vs floor", "p99 vs")
	for _, cond := range []string{"quiet", "writer"} {
		for _, c := range []string{"c1", "c16", "c64"} {
			floor := "BenchmarkReceive/" + cond + "/floor/" + c
			for _, who := range []string{"floor", "ceiling", "dh-receive"} {
				name := "BenchmarkReceive/" + cond + "/" + who + "/" + c
				ratio := ""
				if who != "floor" {
					ratio = res.ratio(name, floor, "req/s") + " " + res.ratio(name, floor, "p99-ms")
				}
				row := fmt.Sprintf("  %-23s %s %s %s %s", cond+" "+who+" "+c, res.cell(10, 0, name, "req/s"),
					res.cell(8, 2, name, "p50-ms"), res.cell(8, 2, name, "p99-ms"), ratio)
				fmt.Fprintln(w, strings.TrimRight(row, " "))
			}
		}
	}
	fmt.Fprintf(w, "  targets (issue 15): writer >= 0.90x the floor's req/s, p99 <= 2.00x the floor's;\n")
	fmt.Fprintf(w, "  quiet >= 1.00x at c1, >= 1.30x at c16 and c64, p99 <= 1.50x\n")

	const route = "BenchmarkRouteBacklog"
	fmt.Fprintf(w, "\nRouting: dh-route run drains a backlog of 10,000 deliveries, quiet and beside\n")
	fmt.Fprintf(w, "the same writer; peak RSS (VmHWM) and CPU are the daemon's, from /proc %s\n", res.runs(route))
	fmt.Fprintf(w, "  %-22s %10s %10s\n", "", "quiet", "writer")
	for _, m := range [][3]string{{"deliveries/s", "deliveries/s", "0"}, {"peak RSS MB", "peak-RSS-MB", "1"},
		{"cpu µs/delivery", "route-cpu-µs/delivery", "1"}} {
		prec, _ := strconv.Atoi(m[2])
		fmt.Fprintf(w, "  %-22s %s %s\n", m[0], res.cell(10, prec, route+"/quiet", m[1]), res.cell(10, prec, route+"/writer", m[1]))
	}
	fmt.Fprintf(w, "  %-22s %s (target >= 0.70x)\n", "writer vs quiet", res.ratio(route+"/writer", route+"/quiet", "deliveries/s"))

	costReport(w, res)

	const push = "BenchmarkPushToStep"
	fmt.Fprintf(w, "\nEnd to end: signed POST to dh-receive until the deployment's first step\n")
	fmt.Fprintf(w, "starts, 200 pushes one after the other %s\n", res.runs(push))
	for _, u := range []string{"p50", "p99", "max"} {
		fmt.Fprintf(w, "  %-22s %s\n", u+" ms", res.cell(10, 1, push, u+"-ms"))
	}

	const daemons = "BenchmarkDaemons"
	fmt.Fprintf(w, "\nDaemons: start-up is exec until READY=1 on $NOTIFY_SOCKET, idle RSS one second\n")
	fmt.Fprintf(w, "later, medians over the starts %s; peak RSS is the\n", res.runs(daemons))
	fmt.Fprintf(w, "high-water mark over BenchmarkPushToStep (none drives dh-nginx or dh-cert)\n")
	fmt.Fprintf(w, "  %-22s %10s %12s %12s\n", "", "start ms", "idle RSS MB", "peak RSS MB")
	for _, d := range []string{"dh-receive serve", "dh-route run", "dh-deploy run demo", "dh-nginx run", "dh-cert run"} {
		name, _, _ := strings.Cut(d, " ")
		fmt.Fprintf(w, "  %-22s %s %s %s\n", d, res.cell(10, 1, daemons+"/"+name, "start-ms"),
			res.cell(12, 1, daemons+"/"+name, "idle-RSS-MB"), res.cell(12, 1, push, name+"-peak-RSS-MB"))
	}

	const pages, hist = "BenchmarkStatus", "BenchmarkHistory"
	fmt.Fprintf(w, "\nHistory at scale: the status page's first page and dh-deploy history over 10k\n")
	fmt.Fprintf(w, "and 1M runs (10 deployments), and the page over 1,000 deployments, asked in turn;\n")
	fmt.Fprintf(w, "medians %s %s\n", res.runs(pages), res.runs(hist))
	fmt.Fprintf(w, "  %-30s %10s %9s %9s\n", "", "ms", "page KB", "ratio")
	for _, c := range [][4]string{
		{"/status", "10k", "10k runs", ""},
		{"/status", "1M", "1M runs", "<= 1.50x"},
		{"/status", "1000dep", "1000 deployments", "<= 2.00x"},
		{"/status.json", "10k", "10k runs", ""},
		{"/status.json", "1M", "1M runs", "<= 1.50x"},
		{"/status.json", "1000dep", "1000 deployments", "<= 2.00x"},
		{"history", "10k", "10k runs", ""},
		{"history", "1M", "1M runs", "<= 1.50x"},
	} {
		name := pages + c[0]
		if c[0] == "history" {
			name = hist + "/page"
		}
		row := fmt.Sprintf("  %-30s %s %s", c[0]+" "+c[2], res.cell(10, 1, name, c[1]+"-ms"), res.cell(9, 1, name, c[1]+"-KB"))
		if c[3] != "" {
			ratio := fmt.Sprintf("%9s", "-")
			if v, ok := res.get(name, c[1]+"-ratio"); ok {
				ratio = fmt.Sprintf("%8.2fx", v)
			}
			row += " " + ratio + " (target " + c[3] + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(row, " "))
	}
	fmt.Fprintf(w, "  %-30s %10s %9s\n", "history --all (streamed)", "runs", "peak MB")
	for _, c := range []string{"10k", "1M"} {
		fmt.Fprintf(w, "  %-30s %s %s\n", "  of "+c+" runs", res.cell(10, 0, hist+"/all", c+"-runs"),
			res.cell(9, 1, hist+"/all", c+"-peak-RSS-MB"))
	}

	const prune = "BenchmarkPrune"
	fmt.Fprintf(w, "\nRetention: a million deliveries, routes and runs over 400 days, pruned with the\n")
	fmt.Fprintf(w, "default retention, without dh-route's pause between batches %s\n", res.runs(prune))
	fmt.Fprintf(w, "  %-30s %s\n", "MB per 1M deliveries", res.cell(10, 0, prune, "MB-per-1M-deliveries"))
	fmt.Fprintf(w, "  %-30s %s\n", "rows pruned", res.cell(10, 0, prune, "rows-pruned"))
	fmt.Fprintf(w, "  %-30s %s\n", "rows/s", res.cell(10, 0, prune, "rows/s"))

	const release = "BenchmarkPrepareRelease"
	fmt.Fprintf(w, "\nReleases: preparing a release of a 10,000-file repository (a worktree of the\n")
	fmt.Fprintf(w, "bare mirror, a shared path linked) beside a plain git checkout of the same commit\n")
	fmt.Fprintf(w, "into an empty directory, the floor %s\n", res.runs(release))
	fmt.Fprintf(w, "  %-22s %s\n", "floor ms", res.cell(10, 1, release, "floor-ms"))
	fmt.Fprintf(w, "  %-22s %s\n", "release ms", res.cell(10, 1, release, "release-ms"))
	x := fmt.Sprintf("%10s", "-")
	if v, ok := res.get(release, "x-floor"); ok {
		x = fmt.Sprintf("%9.2fx", v)
	}
	fmt.Fprintf(w, "  %-22s %s (target <= 1.30x)\n", "release vs floor", x)

	fmt.Fprintf(w, "\nCompare two runs: diff -u two reports, or benchstat on the raw files (its\n")
	fmt.Fprintf(w, "significance test wants make bench BENCH_COUNT=6 or more, six times as long):\n")
	fmt.Fprintf(w, "  go run golang.org/x/perf/cmd/benchstat@latest bin/bench-OLD.txt bin/bench-NEW.txt\n")
}

// costReport prints the figures of issue 21: cost that stays flat as the
// work grows.
func costReport(w io.Writer, res *results) {
	const cpu = "BenchmarkReceiveCPU"
	fmt.Fprintf(w, "\nReceive CPU: the handlers called directly, one request at a time, queue on\n")
	fmt.Fprintf(w, "tmpfs (queue_dir_throwaway) so that the disk hides nothing %s\n", res.runs(cpu))
	fmt.Fprintf(w, "  %-22s %s\n", "floor cpu µs/request", res.cell(10, 1, cpu, "floor-cpu-µs/req"))
	fmt.Fprintf(w, "  %-22s %s\n", "dh-receive", res.cell(10, 1, cpu, "dh-cpu-µs/req"))
	fmt.Fprintf(w, "  %-22s %s (target <= 1.10x)\n", "dh-receive vs floor", res.cell(9, 2, cpu, "cpu-ratio")+"x")

	const dep = "BenchmarkRouteDeployments"
	fmt.Fprintf(w, "\nRouting at many deployments: CPU per delivery draining 2,000 pushes %s\n", res.runs(dep))
	fmt.Fprintf(w, "  %-22s %12s %12s %9s\n", "", "1 deployment", "1,000", "ratio")
	for _, kind := range []string{"followed", "unfollowed"} {
		one, many := dep+"/"+kind+"/deployments=1", dep+"/"+kind+"/deployments=1000"
		fmt.Fprintf(w, "  %-22s %s %s %s (target <= 1.50x)\n", kind+" cpu µs", res.cell(12, 1, one, "route-cpu-µs/delivery"),
			res.cell(12, 1, many, "route-cpu-µs/delivery"), res.ratio(many, one, "route-cpu-µs/delivery"))
	}

	const co = "BenchmarkCoalesce"
	fmt.Fprintf(w, "\nCoalescing: one worker drains N pushes of one branch waiting in its queue %s\n", res.runs(co))
	fmt.Fprintf(w, "  %-22s %10s %8s\n", "", "ms", "fetches")
	for _, n := range []string{"10", "1000"} {
		name := co + "/pushes=" + n
		fmt.Fprintf(w, "  %-22s %s %s\n", n+" pushes", res.cell(10, 1, name, "ms"), res.cell(8, 0, name, "fetches"))
	}
	fmt.Fprintf(w, "  %-22s %s (target <= 3.00x, at most 2 fetches)\n", "1000 vs 10", res.ratio(co+"/pushes=1000", co+"/pushes=10", "ms"))

	const many = "BenchmarkManyDeployments"
	fmt.Fprintf(w, "\nMany deployments: 300 dh-deploy run workers as one user, default max_connections\n")
	fmt.Fprintf(w, "(100) and inotify limits (128 per user), a push to each at once %s\n", res.runs(many))
	for _, m := range [][3]string{{"deployed", "deployed", "0"}, {"failed (target 0)", "failed", "0"},
		{"s until all deployed", "s-to-deploy-all", "1"}, {"idle RSS MB/worker", "worker-idle-RSS-MB", "1"},
		{"  of it private MB", "worker-idle-private-MB", "1"},
		{"idle db connections", "idle-db-connections", "0"}, {"inotify instances", "inotify-instances", "0"}} {
		prec, _ := strconv.Atoi(m[2])
		fmt.Fprintf(w, "  %-22s %s\n", m[0], res.cell(10, prec, many, m[1]))
	}
}
