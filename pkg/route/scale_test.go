package route_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// manyDeployments is a configuration of n deployments, each of its own
// repository org/repo-K, following main, release-* and tags v*.
func manyDeployments(n int) string {
	var b strings.Builder
	for k := range n {
		fmt.Fprintf(&b, "[deployments.d%04d]\nrepository = \"org/repo-%d\"\nbranches = [\"main\", \"release-*\"]\ntags = [\"v*\"]\npath = \"/srv/d%04d\"\n\n", k, k, k)
	}
	return b.String()
}

// scalePush is the i-th push of BenchmarkRouteDeployments to one of n
// deployments' repositories: followed (main, a release-* branch or a v*
// tag) or not (a feature branch, or a repository nobody follows).
func scalePush(t testing.TB, prefix string, n, i int, followed bool) []byte {
	delivery := fmt.Sprintf("%s-%06d", prefix, i)
	repo := fmt.Sprintf("Org/Repo-%d", (i*7919)%n)
	ref := []string{"refs/heads/main", "refs/heads/release-" + delivery, "refs/tags/v" + delivery}[i%3]
	if !followed {
		ref = "refs/heads/feature-" + delivery
		if i%2 == 1 {
			repo = "someone/else"
		}
	}
	payload := fmt.Sprintf(`{"ref":%q,"before":"%040d","after":"%040x","created":false,"deleted":false,"forced":false,`+
		`"repository":{"full_name":%q},"head_commit":{"id":"%040x","message":"change %d"}}`, ref, i, i+1, repo, i+1, i)
	return entry(t, delivery, "push", []byte(payload))
}

// BenchmarkRouteDeployments measures dh-route's CPU per delivery (the
// router in this process, its database calls included; PostgreSQL's own
// CPU not) draining 2,000 pushes at 1 and at 1,000 configured
// deployments, followed pushes (each forwarded to one deployment queue:
// at 1,000 deployments, to up to 256 different queues per batch) and
// unfollowed ones (voided), and reports each and the ratio to 1
// deployment. Issue 21's target: at most 1.5x.
func BenchmarkRouteDeployments(b *testing.B) {
	const backlog = 2000
	url := storetest.NewMigrated(b)
	base := map[bool]float64{}
	for _, n := range []int{1, 1000} {
		for _, followed := range []bool{true, false} {
			kind := map[bool]string{true: "followed", false: "unfollowed"}[followed]
			b.Run(fmt.Sprintf("%s/deployments=%d", kind, n), func(b *testing.B) {
				r := newRig(b, url)
				// At 1 deployment every push goes to one queue: more than
				// its default limit.
				r.writeConfig(b, manyDeployments(n)+"[queues.deployments]\nmax_entries = 0\n")
				cfg, err := config.Load(r.file)
				if err != nil {
					b.Fatal(err)
				}
				for _, name := range cfg.DeploymentNames() { // a router running for a while has made them
					if err := queue.Open(cfg.QueuePath(name)).Init(); err != nil {
						b.Fatal(err)
					}
				}
				var cpu time.Duration
				for round := range b.N {
					b.StopTimer()
					prefix := fmt.Sprintf("scale-%s-%d-%d", kind, n, round)
					for i := range backlog {
						if err := os.WriteFile(filepath.Join(r.main.Dir(), queue.NewName()), scalePush(b, prefix, n, i, followed), 0o640); err != nil {
							b.Fatal(err)
						}
					}
					c, err := r.main.Lock(b.Context(), true)
					if err != nil {
						b.Fatal(err)
					}
					router := route.New(cfg, r.st, route.Options{})
					b.StartTimer()
					start := testenv.SelfCPU()
					err = c.RunBatch(b.Context(), router.HandleBatch, queue.Options{Once: true})
					cpu += testenv.SelfCPU() - start
					b.StopTimer()
					c.Close()
					if err != nil {
						b.Fatalf("RunBatch(once) = %v", err)
					}
					if names, _ := r.main.List(); len(names) != 0 {
						b.Fatalf("queues/main holds %d entries after draining", len(names))
					}
				}
				per := float64(cpu.Microseconds()) / float64(backlog*b.N)
				b.ReportMetric(per, "route-cpu-µs/delivery")
				if n == 1 {
					base[followed] = per
				} else if base[followed] > 0 {
					b.ReportMetric(per/base[followed], "ratio-to-1")
				}
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
