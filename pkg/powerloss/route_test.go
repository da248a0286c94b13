package powerloss_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// Deployments of the route test: crash/one fans out to two, crash/three
// goes to one, anything else is not followed.
const routeDeployments = `
[deployments.one]
repository = "crash/one"
branches   = ["main"]
path       = "/srv/one"

[deployments.two]
repository = "crash/one"
branches   = ["main"]
path       = "/srv/two"

[deployments.three]
repository = "crash/three"
branches   = ["main"]
path       = "/srv/three"
`

// routeDelivery is the i-th delivery of round r and the deployments it
// goes to.
func routeDelivery(t *testing.T, r, i int) (string, []byte, []string) {
	t.Helper()
	delivery := fmt.Sprintf("cut-%03d-%04d", r, i)
	repo, targets := "crash/one", []string{"one", "two"}
	switch i % 3 {
	case 1:
		repo, targets = "crash/three", []string{"three"}
	case 2:
		repo, targets = "someone/else", nil
	}
	payload := fmt.Sprintf(`{"ref":"refs/heads/main","before":"%040d","after":"%040x","created":false,"deleted":false,"forced":false,`+
		`"repository":{"full_name":%q,"created_at":1700000000,"pushed_at":1700000001},"head_commit":{"id":"%040x","message":"change %d"}}`,
		i, i+1, repo, i+1, i)
	ev := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: time.Now(), Payload: []byte(payload)}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return delivery, data, targets
}

// TestRoutePowerLoss fills queues/main (durably, as dh-receive would) and
// cuts the power under dh-route at a random moment, round after round:
// after each cut every delivery is in queues/main or in each of its
// deployment queues, never in neither. At the end dh-route drains
// queues/main and each delivery is in each of its deployment queues
// exactly once.
func TestRoutePowerLoss(t *testing.T) {
	bin := testenv.Build(t, "dh-route")
	url := storetest.NewMigrated(t)
	fs := crashfs.Mount(t)
	deployments := []string{"one", "two", "three"}
	spool := makeQueues(t, fs, append([]string{"main", "status"}, deployments...)...)
	main := filepath.Join(spool, "main")
	config := filepath.Join(t.TempDir(), "config.toml")
	// The deployment queues are never consumed here: no backlog limits.
	doc := fmt.Sprintf("queue_dir = %q\ndatabase_url = %q\n%s\n[queues.deployments]\nmax_entries = 0\nmax_bytes = 0\n", spool, url, routeDeployments)
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	const perRound = 300
	want := map[string][]string{} // delivery -> deployments, not yet found lost
	c := tally{stage: "dh-route"}
	b := bounds(t)
	for b.another(c.rounds, 0) {
		var batch [][]byte
		for i := range perRound {
			delivery, data, targets := routeDelivery(t, c.rounds, i)
			want[delivery] = targets
			batch = append(batch, data)
		}
		publishDurably(t, main, batch)
		c.acked += perRound

		runAndCut(t, fs, 50*time.Millisecond, 400*time.Millisecond, bin, "-c", config, "run")
		c.rounds++
		checkRouted(t, &c, spool, deployments, want, false)
	}

	out, err := exec.Command(bin, "-c", config, "run", "--once").CombinedOutput()
	if err != nil {
		t.Errorf("dh-route run --once after the last cut = %v\n%s", err, out)
	}
	if left, _ := queue.Open(main).List(); len(left) > 0 {
		t.Errorf("queues/main holds %d entries after dh-route run --once; want none", len(left))
	}
	checkRouted(t, &c, spool, deployments, want, true)
	c.report(t, fs, b)
}

// publishDurably puts entries into the queue at dir the way DESIGN.md
// says (each staged and fsynced, linked, the directory fsynced), whatever
// pkg/queue does, and returns their names.
func publishDurably(t *testing.T, dir string, entries [][]byte) []string {
	t.Helper()
	var names []string
	for _, data := range entries {
		name := queue.NewName()
		names = append(names, name)
		tmp := filepath.Join(dir, queue.StagingDir, name)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, queue.EntryPerm)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, queue.StagingDir)} {
		if err := durable.SyncDir(d); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// checkRouted counts, after a cut, the deliveries in neither queues/main
// nor each of their deployment queues (lost), the entries that do not
// decode or that dh-route failed (corrupt) and, once final, the deliveries
// in a deployment queue more than once (duplicates). What it counts it
// forgets or removes, so that later rounds count only their own.
func checkRouted(t *testing.T, c *tally, spool string, deployments []string, want map[string][]string, final bool) {
	t.Helper()
	main := filepath.Join(spool, "main")
	inMain := scan(t, main, false)
	var bad []string
	failed, _ := queue.Open(main).Failed()
	for _, name := range failed {
		bad = append(bad, "main/failed/"+name)
	}
	for _, s := range inMain.corrupt {
		bad = append(bad, "main/"+s)
	}
	queued := map[string]found{}
	for _, d := range deployments {
		queued[d] = scan(t, filepath.Join(spool, d), true)
		for _, s := range queued[d].corrupt {
			bad = append(bad, d+"/"+s)
		}
		removeCorrupt(t, filepath.Join(spool, d), queued[d].corrupt)
	}
	c.corrupt += len(bad)
	if len(bad) > 0 {
		t.Errorf("round %d: %d corrupt or failed entries:\n%s", c.rounds, len(bad), some(bad, 5))
	}
	var lost, doubled []string
	for _, delivery := range slices.Sorted(maps.Keys(want)) {
		if len(inMain.entries[delivery]) > 0 {
			continue
		}
		missing := false
		for _, d := range want[delivery] {
			switch n := len(queued[d].entries[delivery]); {
			case n == 0:
				lost = append(lost, delivery+" in "+d)
				missing = true
			case n > 1 && final:
				doubled = append(doubled, fmt.Sprintf("%s in %s: %d times", delivery, d, n))
			}
		}
		if missing {
			delete(want, delivery) // counted once
		}
	}
	c.lost += len(lost)
	c.duplicates += len(doubled)
	if len(lost) > 0 {
		t.Errorf("round %d: %d deliveries in neither queues/main nor their deployment queue:\n%s", c.rounds, len(lost), some(lost, 5))
	}
	if len(doubled) > 0 {
		t.Errorf("after recovery, %d deliveries queued more than once:\n%s", len(doubled), some(doubled, 5))
	}
}
