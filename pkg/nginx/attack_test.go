package nginx

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// uid returns the user id of an existing system user.
func uid(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s: %v", name, err)
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

// Issue 14, attack 3: a build step of another deployment that shares the
// nginx deployment's user rewrites its working tree and drops an
// nginx-sites entry into queues/nginx. dh-nginx must install only the
// verified commit's files, and only from an entry its user wrote.
func TestAttackWorkingTreeAndForeignEntry(t *testing.T) {
	r := newRig(t, all)
	good := r.site("a.example.test", "a-v1")
	e := r.commit(map[string]string{"production/a.example.test.conf": good})
	// dh-deploy's hand-off: the run is still running when dh-nginx reads
	// the entry, which the deployment's user (daemon) owns.
	e.RunID = r.run(e, store.RunRunning)
	data, _ := e.Encode()
	if err := r.in.Handle(ctx, r.entry(data, uid(t, "daemon"))); err != nil {
		t.Fatalf("Handle(the deployment's own entry) = %v; want it installed", err)
	}
	r.waitHTTP("a.example.test", "a-v1")

	// The build step: the working tree changes (never committed), and
	// the checkout's HEAD stays at the verified commit.
	evil := "server {\n    listen 127.0.0.1:" + strconv.Itoa(r.port) + ";\n    server_name a.example.test;\n    return 200 \"evil\";\n}\n"
	r.write(filepath.Join(r.checkout, "production/a.example.test.conf"), evil)
	r.write(filepath.Join(r.checkout, "production/b.example.test.conf"), evil)
	r.write(filepath.Join(r.checkout, "snippets/x.conf"), "# evil\n")

	// Its entry, owned by its user (here: nobody), is refused and
	// recorded, whatever it names.
	err := r.in.Handle(ctx, r.entry(data, uid(t, "nobody")))
	if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "owned by nobody") {
		t.Errorf("Handle(a foreign entry) = %v; want a DataErr saying who owns it", err)
	}
	if row := r.lastInstall(); row.Outcome != store.NginxFailed || !strings.Contains(row.Error, "owned by nobody") {
		t.Errorf("history after the foreign entry: %+v; want a failed row saying why", row)
	}
	// An entry that dh-nginx does accept (an operator's replay) installs
	// the commit, not the working tree.
	res, err := r.in.Converge(ctx, e)
	if err != nil || res.Outcome != store.NginxUnchanged {
		t.Errorf("Converge(verified commit) after the working tree changed = %+v, %v; want unchanged", res, err)
	}
	want := map[string]string{"conf.d/a.example.test.conf": good}
	if got := r.confFiles(); len(got) != 1 || got["conf.d/a.example.test.conf"] != good {
		t.Errorf("installed %q; want only %q", got, want)
	}
	r.waitHTTP("a.example.test", "a-v1")

	// The attacker commits in the checkout and moves HEAD: that commit
	// no run verified, whoever asks for it.
	r.git("add", "-A")
	r.git("commit", "-q", "-m", "evil")
	forged := *e
	forged.Commit, forged.RunID = r.git("rev-parse", "HEAD"), 0
	for _, owner := range []int{0, uid(t, "daemon"), uid(t, "bin")} { // root, the deployment, dh-cert
		fdata, _ := forged.Encode()
		err := r.in.Handle(ctx, r.entry(fdata, owner))
		if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "not one deployment sites verified") {
			t.Errorf("Handle(unverified commit from uid %d) = %v; want a DataErr: not verified", owner, err)
		}
	}
	// A run that failed (or still runs, when the entry is not its own
	// user's) verifies nothing either.
	r.run(&forged, store.RunFailed)
	forged.RunID = r.run(&forged, store.RunRunning)
	if _, err := r.in.Converge(ctx, &forged); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Converge(commit of a failed and a running run, as root) = %v; want a DataErr", err)
	}
	r.waitHTTP("a.example.test", "a-v1")
	r.waitHTTP("b.example.test", "none")
}

// Issue 14, attack 2: what is installed can change without a new commit
// (an included file, an installed snippet, edited in place). A converge
// of the same commit must not say "unchanged": it finds the drift from
// the manifest, reports it, writes the commit's bytes again and tests
// them.
func TestAttackInstalledFileDrift(t *testing.T) {
	r := newRig(t, all)
	snippet := filepath.Join(r.dir, "snippets/body.conf")
	site := "server {\n    listen 127.0.0.1:" + strconv.Itoa(r.port) + ";\n    server_name a.example.test;\n    include " + snippet + ";\n}\n"
	e := r.commit(map[string]string{
		"production/a.example.test.conf": site,
		"snippets/body.conf":             "return 200 \"body-v1\";\n",
	})
	if _, err := r.in.Converge(ctx, e); err != nil {
		t.Fatalf("Converge() = %v", err)
	}
	r.waitHTTP("a.example.test", "body-v1")

	// The time bomb: only the included file changes, in place.
	if err := os.WriteFile(snippet, []byte("return 200 \"bomb\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.in.Converge(ctx, e)
	if err != nil || res.Outcome == store.NginxUnchanged || len(res.Drift) != 1 || !strings.Contains(res.Drift[0], "body.conf: changed") {
		t.Fatalf("Converge(same commit) after the snippet changed = %+v, %v; want the drift found and repaired", res, err)
	}
	if got, _ := os.ReadFile(snippet); string(got) != "return 200 \"body-v1\";\n" {
		t.Errorf("snippet after the converge = %q; want the commit's bytes again", got)
	}
	if row := r.lastInstall(); row.Outcome != store.NginxSucceeded || !strings.Contains(row.Error, "drift: "+snippet) {
		t.Errorf("history: %+v; want a succeeded row reporting the drift", row)
	}
	r.waitHTTP("a.example.test", "body-v1")

	// A removed file is drift too; with nothing else to do the converge
	// is unchanged only once the files match the manifest again.
	os.Remove(snippet)
	if res, err := r.in.Converge(ctx, e); err != nil || len(res.Drift) != 1 || !strings.Contains(res.Drift[0], "removed") {
		t.Errorf("Converge() after the snippet was removed = %+v, %v; want the drift found", res, err)
	}
	if res, err := r.in.Converge(ctx, e); err != nil || res.Outcome != store.NginxUnchanged || len(res.Drift) != 0 {
		t.Errorf("Converge() once repaired = %+v, %v; want unchanged, no drift", res, err)
	}
}

// Issue 14, attack 3's second half: a file swapped between nginx -t and
// the reload. The test command here changes an installed file after a
// passing test (as an inotify watcher would); dh-nginx must not reload,
// and must restore the previous files.
func TestSwapBetweenTestAndReload(t *testing.T) {
	r := newRig(t, all)
	e1 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v1")})
	if _, err := r.in.Converge(ctx, e1); err != nil {
		t.Fatalf("Converge(v1) = %v", err)
	}
	r.waitHTTP("a.example.test", "a-v1")
	before := r.confFiles()

	installed := filepath.Join(r.dir, "conf.d/a.example.test.conf")
	swap := r.site("a.example.test", "swapped")
	test := r.srv.TestCommand()
	r.cfg.Nginx.TestCommand = append([]string{"/bin/sh", "-c", `"$@" && printf '%s' '` + swap + `' > ` + installed, "sh"}, test...)
	e2 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v2")})
	res, err := r.in.Converge(ctx, e2)
	if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "changed after the configuration test") ||
		!strings.Contains(err.Error(), installed) {
		t.Fatalf("Converge() with a swap after the test = %+v, %v; want a DataErr naming the swapped file", res, err)
	}
	if got := r.confFiles(); got["conf.d/a.example.test.conf"] != before["conf.d/a.example.test.conf"] {
		t.Errorf("after the refused reload the file is %q; want the previous %q", got["conf.d/a.example.test.conf"], before["conf.d/a.example.test.conf"])
	}
	if row := r.lastInstall(); row.Outcome != store.NginxFailed || !strings.Contains(row.Error, "changed after the configuration test") {
		t.Errorf("history: %+v; want a failed row naming the change", row)
	}
	r.waitHTTP("a.example.test", "a-v1")

	// An nginx-reload entry is held to the same rule.
	r.cfg.Nginx.TestCommand = append([]string{"/bin/sh", "-c", `"$@" && echo '# touched' >> ` + installed, "sh"}, test...)
	if err := r.in.Reload(ctx, "renewed"); cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "changed after the configuration test") {
		t.Errorf("Reload() with a change after the test = %v; want a DataErr", err)
	}
}
