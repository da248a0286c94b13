package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func runTool(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := cli.Run(context.Background(), app, env, args)
	return code, stdout.String(), stderr.String()
}

func TestHelp(t *testing.T) {
	code, out, errs := runTool("--help")
	for _, want := range []string{"run", "replay", "history"} {
		if code != 0 || !strings.Contains(out+errs, want) {
			t.Errorf("--help = %d, %q; want 0 naming %q", code, out+errs, want)
		}
	}
	if code, _, _ := runTool("frobnicate"); code != 64 {
		t.Errorf("frobnicate = %d; want 64", code)
	}
}

// fixture is a real nginx master, a git checkout with one site, a
// database and a configuration; testCmd, if not empty, replaces the test
// command (a TOML array).
type fixture struct {
	dir, cfgFile, sha, site string
	q                       *queue.Queue
	srv                     *nginxtest.Server
}

func newFixture(t *testing.T, testCmd string) *fixture {
	t.Helper()
	srv := nginxtest.Start(t, nginxtest.Options{})
	dir, port := srv.Dir, srv.Port
	os.MkdirAll(filepath.Join(dir, "checkout/production"), 0o755)

	checkout := filepath.Join(dir, "checkout")
	site := "server {\n    listen 127.0.0.1:" + fmt.Sprint(port) + ";\n    server_name a.example.test;\n    return 200 \"a\";\n}\n"
	os.WriteFile(filepath.Join(checkout, "production/a.example.test.conf"), []byte(site), 0o644)
	gitc := func(args ...string) string { return testenv.Git(t, checkout, args...) }
	gitc("init", "-q", "-b", "main")
	gitc("add", "-A")
	gitc("commit", "-q", "-m", "sites")
	sha := gitc("rev-parse", "HEAD")

	url := storetest.NewMigrated(t)
	if testCmd == "" {
		testCmd = config.TOMLArray(srv.TestCommand())
	}
	cfgFile := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q
[nginx]
conf_dir = %q
snippets_dir = %q
cert_dir = %q
test_command = %s
reload_command = %s
[deployments.sites]
kind = "nginx"
repository = "acme/nginx"
branches = ["main"]
path = %q
sites = [{ rule = "include", select = ["*"] }]
domains = ["*.test"]
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), url, srv.ConfDir,
		srv.SnippetsDir, filepath.Join(dir, "certs"), testCmd, config.TOMLArray(srv.ReloadCommand()), checkout)), 0o644)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	q := queue.Open(cfg.QueuePath(config.NginxQueue))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	entry, _ := (&event.NginxSites{Deployment: "sites", Commit: sha, Delivery: "d1", RequestedAt: time.Now(),
		RunID: storetest.Deployed(t, url, "sites", sha)}).Encode()
	if _, err := q.Publish(entry); err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, cfgFile: cfgFile, sha: sha, site: site, q: q, srv: srv}
}

// tomlArray writes argv as a TOML array (a JSON array of strings is one).

// TestRunOnceAndReplay drives the tool against a real nginx master, a git
// checkout and a database: run --once installs a queued site and reloads,
// history shows it, and replaying a bad entry exits 65.
func TestRunOnceAndReplay(t *testing.T) {
	f := newFixture(t, "")
	dir, cfgFile, sha, site, q := f.dir, f.cfgFile, f.sha, f.site, f.q
	if code, _, errs := runTool("-c", cfgFile, "run", "--once"); code != 0 {
		t.Fatalf("run --once = %d; want 0\n%s", code, errs)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "conf.d/a.example.test.conf")); string(got) != site {
		t.Errorf("installed site = %q, %v; want %q", got, err, site)
	}
	if names, _ := q.List(); len(names) != 0 {
		t.Errorf("queue still holds %v", names)
	}
	code, out, errs := runTool("-c", cfgFile, "history", "sites", "--json")
	var row store.NginxInstall
	if code != 0 || json.Unmarshal([]byte(out), &row) != nil || row.Outcome != store.NginxSucceeded || row.Commit != sha {
		t.Errorf("history --json = %d, %q, %q; want one succeeded row for %s", code, out, errs, sha)
	}

	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"version": 1, "kind": "nginx-sites", "deployment": "nope"}`), 0o644)
	if code, _, errs := runTool("-c", cfgFile, "replay", bad); code != 65 {
		t.Errorf("replay of a bad entry = %d, %q; want 65", code, errs)
	}
}

// TestKilledMidInstall kills dh-nginx with SIGKILL while the test command
// runs (the new files are in conf.d, the journal on disk): the next start
// restores the previous files, then converges the entry, still queued.
func TestKilledMidInstall(t *testing.T) {
	bin := testenv.Build(t, "dh-nginx")
	mark := filepath.Join(t.TempDir(), "testing")
	f := newFixture(t, fmt.Sprintf(`["/bin/sh", "-c", "echo $$ > %s; exec sleep 60"]`, mark))
	cmd := exec.Command(bin, "-c", f.cfgFile, "run", "--once")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The test command outlives dh-nginx's SIGKILL (it has its own
	// process group, which the service manager would kill): end it.
	t.Cleanup(func() {
		if b, err := os.ReadFile(mark); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(mark); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the test command never ran\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	installed := filepath.Join(f.dir, "conf.d/a.example.test.conf")
	if _, err := os.Stat(installed); err != nil {
		t.Fatalf("mid-install, the new file is not there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "state/nginx/sites.journal")); err != nil {
		t.Fatalf("mid-install, no journal: %v", err)
	}

	// Restart with the real test command.
	data, _ := os.ReadFile(f.cfgFile)
	fixed := strings.Replace(string(data), fmt.Sprintf(`["/bin/sh", "-c", "echo $$ > %s; exec sleep 60"]`, mark),
		config.TOMLArray(f.srv.TestCommand()), 1)
	os.WriteFile(f.cfgFile, []byte(fixed), 0o644)
	if code, _, errs := runTool("-c", f.cfgFile, "run", "--once"); code != 0 || !strings.Contains(errs, "restoring the files of an install that was interrupted") {
		t.Fatalf("run --once after the kill = %d; want 0 and a restore\n%s", code, errs)
	}
	if got, _ := os.ReadFile(installed); string(got) != f.site {
		t.Errorf("after the restart the site is %q; want it installed", got)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "state/nginx/sites.journal")); !os.IsNotExist(err) {
		t.Errorf("journal left after the restart: %v", err)
	}
	if names, _ := f.q.List(); len(names) != 0 {
		t.Errorf("queue still holds %v", names)
	}
	code, out, _ := runTool("-c", f.cfgFile, "history", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var newest, killed store.NginxInstall
	if code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &newest) != nil || json.Unmarshal([]byte(lines[1]), &killed) != nil ||
		newest.Outcome != store.NginxSucceeded || killed.Outcome != store.NginxInterrupted {
		t.Errorf("history = %d, %q; want succeeded, then the killed one interrupted", code, out)
	}
}

// A running dh-nginx learns a new nginx deployment on SIGHUP: its sites
// entry installs, instead of failing as "not an nginx deployment" until a
// restart.
func TestReloadLearnsNewDeployment(t *testing.T) {
	bin := testenv.Build(t, "dh-nginx")
	f := newFixture(t, "")
	names, _ := f.q.List()
	entry, err := os.ReadFile(filepath.Join(f.q.Dir(), names[0]))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(f.q.Dir(), names[0]))
	full, _ := os.ReadFile(f.cfgFile)
	before, _, _ := strings.Cut(string(full), "[deployments.sites]")
	os.WriteFile(f.cfgFile, []byte(before), 0o644)

	d := testenv.StartDaemon(t, exec.Command(bin, "-c", f.cfgFile, "run"))
	wait := func(what string, cond func() bool) { t.Helper(); d.WaitFor(t, what, 20*time.Second, cond) }
	stderr := d.Out
	wait("the start", func() bool { return strings.Contains(stderr.String(), "msg=installing") })
	os.WriteFile(f.cfgFile, full, 0o644)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	wait("the reload", func() bool {
		return strings.Contains(stderr.String(), `msg="configuration reloaded" deployments=sites`)
	})
	if _, err := f.q.Publish(entry); err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(f.dir, "conf.d/a.example.test.conf")
	wait("the install", func() bool { got, _ := os.ReadFile(installed); return string(got) == f.site })
	d.Stop(t)
	if failed, _ := f.q.Failed(); len(failed) != 0 {
		t.Errorf("failed/ holds %v; want nothing", failed)
	}
}
