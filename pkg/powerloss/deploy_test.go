package powerloss_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestDeployPowerLoss fills queues/sites (durably, as dh-route would) with
// pushes for an nginx-kind deployment and cuts the power under dh-deploy
// at a random moment, round after round. dh-deploy hands each checkout to
// dh-nginx (an entry in queues/nginx) before it records the run
// succeeded, and removes the queue entry after. Every delivery carries the
// same commit, so once it is live the later ones are recorded unchanged
// (issue 16: the live commit is not rebuilt). After each cut every
// delivery is still in queues/sites or has a succeeded or unchanged run,
// and a succeeded run's hand-off is in queues/nginx (a rerun would find
// the run and not publish again). At the end dh-deploy drains queues/sites
// and each delivery has exactly one such run; a hand-off may be in
// queues/nginx more than once (at least once: a cut between the publish
// and the record runs it again).
func TestDeployPowerLoss(t *testing.T) {
	bin := testenv.Build(t, "dh-deploy")
	url := storetest.NewMigrated(t)
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs := crashfs.Mount(t)
	spool := makeQueues(t, fs, "sites", "nginx")
	sites := filepath.Join(spool, "sites")

	dir := t.TempDir() // the repository, the checkout and state_dir: not on the crash file system
	remote, work := filepath.Join(dir, "remote.git"), filepath.Join(dir, "work")
	testenv.Git(t, "", "init", "-q", "--bare", "-b", "main", remote)
	testenv.Git(t, "", "init", "-q", "-b", "main", work)
	if err := os.WriteFile(filepath.Join(work, "site.conf"), []byte("server {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, work, "add", "-A")
	testenv.Git(t, work, "commit", "-q", "-m", "the site")
	testenv.Git(t, work, "push", "-q", remote, "HEAD:refs/heads/main")
	sha := testenv.Git(t, work, "rev-parse", "HEAD")

	config := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[deployments.sites]
repository = "crash/sites"
branches = ["main"]
path = %q
clone_url = %q
kind = "nginx"
coalesce = false
sites = [{ rule = "include", select = ["*"] }]
`, spool, filepath.Join(dir, "state"), url, filepath.Join(dir, "checkout"), remote)
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	const perRound = 20
	var pending []string // deliveries published and not yet counted lost
	c := tally{stage: "dh-deploy"}
	b := bounds(t)
	for b.another(c.rounds, 0) {
		var batch [][]byte
		for i := range perRound {
			delivery := fmt.Sprintf("cut-%03d-%04d", c.rounds, i)
			batch = append(batch, deployEntry(t, delivery, sha))
			pending = append(pending, delivery)
		}
		publishDurably(t, sites, batch)
		c.acked += perRound

		runAndCut(t, fs, 100*time.Millisecond, 900*time.Millisecond, bin, "-c", config, "run", "sites")
		c.rounds++
		pending = checkDeployed(t, &c, st, spool, pending, false)
	}

	out, err := exec.Command(bin, "-c", config, "run", "sites", "--once").CombinedOutput()
	if err != nil {
		t.Errorf("dh-deploy run sites --once after the last cut = %v\n%s", err, out)
	}
	if left, _ := queue.Open(sites).List(); len(left) > 0 {
		t.Errorf("queues/sites holds %d entries after dh-deploy run --once; want none", len(left))
	}
	checkDeployed(t, &c, st, spool, pending, true)
	c.report(t, fs, b)
}

// deployEntry is a routed push of sha for the deployment sites.
func deployEntry(t *testing.T, delivery, sha string) []byte {
	t.Helper()
	payload := fmt.Sprintf(`{"ref":"refs/heads/main","before":"%040d","after":%q,"repository":{"full_name":"crash/sites"},"head_commit":{"id":%q}}`,
		0, sha, sha)
	ev := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: time.Now(), Deployment: "sites", Payload: []byte(payload)}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkDeployed counts, after a cut, the deliveries neither in
// queues/sites nor run successfully, and those run successfully whose
// hand-off is not in queues/nginx (lost); the entries that do not decode
// or that dh-deploy failed (corrupt); and, once final, the deliveries
// still queued, never run or run successfully more than once. It returns
// the deliveries not counted lost.
func checkDeployed(t *testing.T, c *tally, st *store.Store, spool string, pending []string, final bool) []string {
	t.Helper()
	sites := filepath.Join(spool, "sites")
	queued := scan(t, sites, false)
	bad := queued.corrupt
	failed, _ := queue.Open(sites).Failed()
	for _, name := range failed {
		bad = append(bad, "sites/failed/"+name)
	}
	handoffs := map[string]int{}
	nginx := filepath.Join(spool, "nginx")
	names, err := queue.Open(nginx).List()
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(nginx, name))
		if err != nil {
			t.Fatalf("after the cut: %v", err)
		}
		e, err := event.DecodeNginxSites(data)
		if err != nil {
			bad = append(bad, fmt.Sprintf("nginx/%s (%d bytes): %v", name, len(data), err))
			continue
		}
		handoffs[e.Delivery]++
	}
	c.corrupt += len(bad)
	if len(bad) > 0 {
		t.Errorf("round %d: %d corrupt or failed entries:\n%s", c.rounds, len(bad), some(bad, 5))
	}

	runs, err := st.ListRuns(context.Background(), "sites", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Every delivery carries the same commit: once it is live, later
	// deliveries are recorded unchanged (no steps, no hand-off needed).
	succeeded, unchanged := map[string]int{}, map[string]int{}
	for _, r := range runs {
		switch r.State {
		case store.RunSucceeded:
			succeeded[r.Delivery]++
		case store.RunUnchanged:
			unchanged[r.Delivery]++
		}
	}
	var lost, doubled, kept []string
	var done int
	for _, delivery := range pending {
		inQueue := len(queued.entries[delivery]) > 0
		if !inQueue {
			done++
		}
		switch n := succeeded[delivery] + unchanged[delivery]; {
		case n == 0 && !inQueue:
			lost = append(lost, delivery+": neither queued nor run")
		case succeeded[delivery] > 0 && handoffs[delivery] == 0:
			lost = append(lost, delivery+": run succeeded, its hand-off not in queues/nginx")
		case final && n != 1:
			doubled = append(doubled, fmt.Sprintf("%s: %d succeeded or unchanged runs", delivery, n))
			kept = append(kept, delivery)
		default:
			kept = append(kept, delivery)
		}
	}
	t.Logf("round %d: %d of %d deliveries consumed, %d hand-offs in queues/nginx", c.rounds, done, len(pending), len(names))
	c.lost += len(lost)
	c.duplicates += len(doubled)
	if len(lost) > 0 {
		t.Errorf("round %d: %d deliveries lost:\n%s", c.rounds, len(lost), some(lost, 5))
	}
	if len(doubled) > 0 {
		t.Errorf("after recovery, %d deliveries not run exactly once:\n%s", len(doubled), some(doubled, 5))
	}
	return kept
}
