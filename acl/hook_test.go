package acl_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// Issue 17, finding 5, with real users: dh-receive runs as dh-receive and
// owns the hook socket; receive.hook_users gives nobody local/a and daemon
// local/b. nobody may queue a push of local/a through the hook, but not of
// local/b, and cannot write queues/main itself; a user outside dh-hook
// cannot connect at all. None of them is in dh-deployer.
func TestHookSocket(t *testing.T) {
	root := setup(t)
	aclTool(t, root, "queues")
	bin := testenv.BuildInto(t, root, "dh-receive") // a directory every user may enter
	spool := filepath.Join(root, "var/spool/dh-deployer")
	run := filepath.Join(root, "run")
	os.Mkdir(run, 0o755)
	if u, err := user.Lookup("dh-receive"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		os.Chown(run, uid, -1)
	}
	secret := filepath.Join(root, "webhook-secret")
	os.WriteFile(secret, []byte("a-long-enough-webhook-secret\n"), 0o644)
	socket := filepath.Join(run, "hook.sock")
	cfg := filepath.Join(root, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`queue_dir = %q
state_dir = %q
[receive]
listen = "127.0.0.1:%d"
secret_files = [%q]
hook_socket = %q
[receive.hook_users]
nobody = ["local/a"]
daemon = ["local/b"]
`, spool, filepath.Join(root, "var/lib/dh-deployer"), testenv.FreePort(t), secret, socket)), 0o644)
	for _, u := range []string{"nobody", "daemon"} {
		aclTool(t, root, "hook", u)
		t.Cleanup(func() { aclTool(t, root, "--undo", "hook", u) })
	}
	// In a user namespace (what PrivateUsers= makes) SO_PEERCRED would show
	// every user as nobody: dh-receive refuses to serve the hook socket.
	if out, err := exec.Command("unshare", "--user", "--map-root-user", bin, "-c", cfg).CombinedOutput(); !strings.Contains(string(out), "user namespace") || err == nil {
		t.Errorf("dh-receive in a user namespace with hook_users = %v, %q; want exit 78 naming the user namespace", err, out)
	}
	// As its unit runs it: group dh-deployer, and its other groups (dh-hook);
	// setpriv execs it, so that SIGTERM reaches it.
	d := testenv.StartDaemon(t, exec.Command("setpriv", "--reuid=dh-receive", "--regid=dh-deployer", "--groups=dh-hook", "--", bin, "-c", cfg))
	d.Logged(t, "listening for the git hook", 10*time.Second)
	defer d.Stop(t)
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("hook socket: %v, %v; want mode 0660", fi, err)
	}

	main := queue.Open(filepath.Join(spool, "main"))
	count := func() int { names, _ := main.List(); return len(names) }
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	hook := func(u, repository string) (int, string) {
		t.Helper()
		// As git runs a hook: the pushing user with its own groups, no -g.
		cmd := exec.Command("runuser", "-u", u, "--", bin, "-c", cfg, "hook", "--repository", repository)
		cmd.Stdin = strings.NewReader(a + " " + b + " refs/heads/main\n")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	for _, tc := range []struct {
		user, repository string
		code             int
		want             string
	}{
		{"nobody", "local/b", 77, "may not queue pushes of local/b"},
		{"daemon", "local/a", 77, "may not queue pushes of local/a"},
		{"bin", "local/a", 77, "dh-deployer-acl hook USER"}, // not in dh-hook: cannot connect
	} {
		if code, out := hook(tc.user, tc.repository); code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: hook --repository %s = %d %q; want %d naming %q", tc.user, tc.repository, code, out, tc.code, tc.want)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("refused hooks queued %d entries", n)
	}
	if code, out := hook("nobody", "local/a"); code != 0 || !strings.Contains(out, "queued as delivery hook-") {
		t.Fatalf("nobody: hook --repository local/a = %d %q; want 0, queued", code, out)
	}
	if n := count(); n != 1 {
		t.Errorf("queues/main holds %d entries after one allowed push; want 1", n)
	}
	// The hook user itself writes nothing into queues/main, deploy
	// requests included.
	script := fmt.Sprintf(`echo '{"version":1,"kind":"deploy-request","deployment":"app","ref":"refs/heads/x"}' > %[1]s/.tmp/r.json && mv %[1]s/.tmp/r.json %[1]s/r.json`, main.Dir())
	if err := exec.Command("runuser", "-u", "nobody", "--", "sh", "-c", script).Run(); err == nil {
		t.Errorf("nobody wrote a deploy-request into queues/main")
	}
	if inGroup(t, "nobody", "dh-deployer") {
		t.Errorf("the hook user is in dh-deployer; it should need no such membership")
	}
}
