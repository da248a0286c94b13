package powerloss_test

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestNginxPowerLoss fills queues/nginx (durably, as dh-cert would after
// renewals) with nginx-reload entries and cuts the power under dh-nginx
// at a random moment, round after round, while it tests and reloads a
// private nginx (pkg/nginx/nginxtest). Its reload command notes each
// reload in a file off the crash file system. After each cut every entry
// is whole in queues/nginx or was consumed, none failed, and a round that
// consumed entries reloaded nginx (else they count lost). At the end
// dh-nginx drains queues/nginx.
func TestNginxPowerLoss(t *testing.T) {
	rounds, limit := bounds(t)
	bin := testenv.Build(t, "dh-nginx")
	url := storetest.NewMigrated(t)
	srv := nginxtest.Start(t, nginxtest.Options{})
	fs := crashfs.Mount(t)
	spool := makeQueues(t, fs, "nginx", "cert")
	nginxq := filepath.Join(spool, "nginx")

	dir := t.TempDir() // state_dir and the reload trace: not on the crash file system
	trace := filepath.Join(dir, "reloads")
	reload := append([]string{"/bin/sh", "-c", `echo reload >> "$0" && exec "$@"`, trace}, srv.ReloadCommand()...)
	cfgFile := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[nginx]
conf_dir = %q
snippets_dir = %q
cert_dir = %q
test_command = %s
reload_command = %s
`, spool, filepath.Join(dir, "state"), url, srv.ConfDir, srv.SnippetsDir, filepath.Join(dir, "certs"),
		config.TOMLArray(srv.TestCommand()), config.TOMLArray(reload))
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	const perRound = 60
	c := tally{stage: "dh-nginx"}
	began := time.Now()
	for c.rounds < rounds && time.Since(began) < limit {
		var batch [][]byte
		for i := range perRound {
			e := event.NginxReload{Reason: fmt.Sprintf("cut %d entry %d", c.rounds, i), RequestedAt: time.Now()}
			data, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, data)
		}
		before, _ := queue.Open(nginxq).List()
		publishDurably(t, nginxq, batch)
		c.acked += perRound
		os.Remove(trace)

		var out testenv.Buffer
		cmd := exec.Command(bin, "-c", cfgFile, "run")
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+mrand.IntN(900)) * time.Millisecond)
		cut(t, fs, cmd)
		c.rounds++
		checkReloaded(t, &c, nginxq, len(before)+perRound, trace)
	}

	out, err := exec.Command(bin, "-c", cfgFile, "run", "--once").CombinedOutput()
	if err != nil {
		t.Errorf("dh-nginx run --once after the last cut = %v\n%s", err, out)
	}
	if left, _ := queue.Open(nginxq).List(); len(left) > 0 {
		t.Errorf("queues/nginx holds %d entries after dh-nginx run --once; want none", len(left))
	}
	c.report(t, fs)
}

// checkReloaded counts, after a cut, the entries of queues/nginx that do
// not decode or that dh-nginx failed (corrupt), and the entries consumed
// without a reload since they were queued (lost): queued entries were in
// queues/nginx when dh-nginx started.
func checkReloaded(t *testing.T, c *tally, dir string, queued int, trace string) {
	t.Helper()
	names, err := queue.Open(dir).List()
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	var bad []string
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("after the cut: %v", err)
		}
		if _, err := event.DecodeNginxReload(data); err != nil {
			bad = append(bad, fmt.Sprintf("%s (%d bytes): %v", name, len(data), err))
		}
	}
	removeCorrupt(t, dir, bad)
	failed, _ := queue.Open(dir).Failed()
	for _, name := range failed {
		bad = append(bad, "failed/"+name)
	}
	c.corrupt += len(bad)
	if len(bad) > 0 {
		t.Errorf("round %d: %d corrupt or failed entries:\n%s", c.rounds, len(bad), some(bad, 5))
	}
	b, _ := os.ReadFile(trace)
	reloads := strings.Count(string(b), "reload\n")
	consumed := queued - len(names)
	t.Logf("round %d: %d of %d entries consumed, %d reloads", c.rounds, consumed, queued, reloads)
	if consumed > 0 && reloads == 0 {
		c.lost += consumed
		t.Errorf("round %d: %d entries consumed without a reload", c.rounds, consumed)
	}
}
