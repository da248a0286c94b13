package systemd_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/hosttest"
)

// buildDeb builds the package with deb/build into dir (version: deb/version,
// or the one given) and returns its path.
func buildDeb(t *testing.T, dir, version string) string {
	t.Helper()
	cmd := exec.Command("../deb/build", dir)
	cmd.Env = os.Environ()
	if version != "" {
		cmd.Env = append(cmd.Env, "DEB_VERSION="+version)
	}
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("deb/build %s: %v\n%s%s", dir, err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// TestMakeDeb: the package holds what make install installs (with the
// Debian prefixes), its /etc files are conffiles, lintian reports no
// error and no missing manual page, and it installs and purges on a host
// without systemd.
func TestMakeDeb(t *testing.T) {
	deb := buildDeb(t, t.TempDir(), "")
	if !strings.HasPrefix(filepath.Base(deb), "dh-deployer_0.") || !strings.HasSuffix(deb, ".deb") {
		t.Errorf("deb/build made %s; want dh-deployer_VERSION_ARCH.deb", deb)
	}
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/dh-route", "./usr/bin/dh-receive", "./lib/systemd/system/dh-deploy@.service",
		"./usr/lib/sysusers.d/dh-deployer.conf", "./usr/lib/tmpfiles.d/dh-deployer.conf", "./etc/sudoers.d/dh-nginx",
		"./etc/polkit-1/rules.d/50-dh-deployer.rules", "./usr/lib/dh-deployer/dh-deployer-acl",
		"./usr/share/dh-deployer/roles.sql", "./usr/share/dh-deployer/config.toml", "./usr/share/doc/dh-deployer/operations.md",
		"./usr/share/doc/dh-deployer/copyright", "./usr/share/man/man1/dh-route.1.gz", "./usr/share/man/man1/dh-cert.1.gz",
		"./usr/share/man/man8/dh-deployer-acl.8.gz"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("the package lacks %s", want)
		}
	}
	if strings.Contains(string(out), "./etc/dh-deployer/") {
		t.Errorf("the package owns /etc/dh-deployer/...: the configuration is the host's (postinst installs it only when missing)")
	}
	conffiles, _ := exec.Command("dpkg-deb", "-I", deb, "conffiles").Output()
	if string(conffiles) != "/etc/polkit-1/rules.d/50-dh-deployer.rules\n/etc/sudoers.d/dh-cert\n/etc/sudoers.d/dh-nginx\n" {
		t.Errorf("conffiles = %q; want every file under /etc", conffiles)
	}
	lintian, err := exec.LookPath("lintian")
	if err != nil {
		t.Fatal("lintian not found: apt-get install -y lintian (or: make deps)")
	}
	res, err := exec.Command(lintian, "--fail-on", "error", deb).CombinedOutput()
	if err != nil {
		t.Errorf("lintian %s: %v\n%s", deb, err, res)
	}
	if strings.Contains(string(res), "no-manual-page") {
		t.Errorf("lintian %s: a tool has no manual page (make build writes them: TOOL --man)\n%s", deb, res)
	}
	withoutSystemd(t, deb)
}

// withoutSystemd installs the package in a chroot of the test container's
// root (no /run/systemd/system there): postinst makes the users and
// directories with the ACL script and the starting configuration, and
// starts nothing; purge removes them.
func withoutSystemd(t *testing.T, deb string) {
	h := hosttest.New(t)
	if out, err := exec.Command("cp", deb, h.Path("/root/")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	chroot := func(script string) string {
		t.Helper()
		// /proc in a mount namespace of its own, gone with the command.
		out, err := exec.Command("unshare", "--mount", "--fork", "/bin/sh", "-ec", `mount -t proc proc "$1/proc"
exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -ec "$2"`, "-", h.Dir(), script).CombinedOutput()
		if err != nil {
			t.Fatalf("in a chroot without systemd: %s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	out := chroot("dpkg -i /root/" + filepath.Base(deb))
	if !strings.Contains(out, "not configured yet: run  dh-route setup") {
		t.Errorf("dpkg -i without systemd did not say what is next:\n%s", out)
	}
	got := chroot(`stat -c '%U:%G %a' /etc/dh-deployer/config.toml /var/spool/dh-deployer/main /var/lib/dh-deployer/home
getent passwd dh-deploy | cut -d: -f6
getfacl -cp /var/spool/dh-deployer/main | grep -x user:dh-receive:rwx`)
	want := "root:dh-deployer 640\ndh-route:dh-deployer 3770\ndh-deploy:dh-deployer 700\n/var/lib/dh-deployer/home\nuser:dh-receive:rwx\n"
	if got != want {
		t.Errorf("after dpkg -i without systemd:\n%s\nwant:\n%s", got, want)
	}
	chroot(`dpkg --purge dh-deployer >/dev/null
! test -e /etc/dh-deployer && ! test -e /var/spool/dh-deployer && ! id dh-route 2>/dev/null && ! getent group dh-deployer && ! getent group dh-hook`)
}

// The deployment the package test adds with dh-deploy add.
const debSteps = `[["sh", "-c", "echo built $DH_COMMIT > built.txt"]]`

// TestDebianPackage installs the package on a fresh Debian 12 booted with
// systemd (pkg/hosttest): apt install, dh-route setup and dh-deploy add
// (docs/operations.md, "The Debian package"), a signed push deployed,
// doctor passing, five things broken and named by doctor with their fix,
// an upgrade keeping configuration and history, then remove and purge.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container; not with -short")
	}
	doc := docBlocks(t, "../docs/operations.md")
	// The "previous" package: this one with a lower version (the
	// merge-base commit cannot build one: it has no deb/build).
	dir := t.TempDir()
	current := buildDeb(t, filepath.Join(dir, "new"), "")
	version := strings.Split(filepath.Base(current), "_")[1]
	previous := filepath.Join(dir, "prev", strings.Replace(filepath.Base(current), version, version+"~prev", 1))
	if out, err := exec.Command("sh", "-ec", `mkdir -p "$(dirname "$3")"; dpkg-deb -R "$1" "$4/x"
sed -i "s/^Version: .*/Version: $2~prev/" "$4/x/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -b "$4/x" "$3" >/dev/null`, "-", current, version, previous, dir).CombinedOutput(); err != nil {
		t.Fatalf("repack %s as the previous version: %v\n%s", current, err, out)
	}

	h := hosttest.New(t)
	for _, deb := range []string{previous, current} {
		to := h.Path("/root/" + filepath.Base(filepath.Dir(deb)))
		if out, err := exec.Command("sh", "-c", `mkdir -p "$2" && cp "$1" "$2/"`, "-", deb, to).CombinedOutput(); err != nil {
			t.Fatalf("copy %s into the container: %v\n%s", deb, err, out)
		}
	}
	h.Boot(t)

	// The document's two commands (the previous package first, to upgrade
	// from it later).
	start := time.Now()
	out := h.Run(t, "cd /root/prev\n"+block(t, doc, "package"))
	for _, want := range []string{"created database dh_deployer", "Secret:", "https://deploy.example.org/github-webhook", "✔ database: migrations"} {
		if !strings.Contains(out, want) {
			t.Errorf("apt install and dh-route setup printed no %q:\n%s", want, out)
		}
	}
	if again := h.Run(t, "dh-route setup --host deploy.example.org"); !strings.Contains(again, "exists: kept") || strings.Contains(again, "Secret:") {
		t.Errorf("dh-route setup again changed something:\n%s", again)
	}

	// dh-deploy add, with a bare repository on the host standing in for
	// GitHub; then a signed push through nginx deploys.
	h.Run(t, "git init -q --bare -b main /srv/git/web.git")
	commit(t, h, "web", map[string]string{"README": "initial\n"}, "initial")
	out = h.Run(t, `dh-deploy add web --repository example/web --branch main --path /srv/www/web --clone-url /srv/git/web.git \
  --host deploy.example.org --steps '`+debSteps+`'`)
	for _, want := range []string{"created user dh-deploy-web", "https://deploy.example.org/github-webhook", "sudo -u dh-deploy-web dh-deploy deploy web"} {
		if !strings.Contains(out, want) {
			t.Errorf("dh-deploy add printed no %q:\n%s", want, out)
		}
	}
	if again, err := h.Try("dh-deploy add web --repository example/web --path /srv/www/web"); err == nil || !strings.Contains(again, "already in") {
		t.Errorf("dh-deploy add of an existing deployment: %v\n%s\nwant a refusal", err, again)
	}
	// A checkout directory of someone else's is refused, before anything
	// changes (no user, no table).
	if out, err := h.Try("dh-deploy add other --repository example/other --path /root --clone-url /srv/git/web.git"); err == nil ||
		!strings.Contains(out, "path /root exists and belongs to root, not dh-deploy-other: refusing") {
		t.Errorf("dh-deploy add onto /root: %v\n%s\nwant a refusal", err, out)
	}
	h.Run(t, "! id dh-deploy-other 2>/dev/null && ! grep -q other /etc/dh-deployer/config.toml")
	sha := commit(t, h, "web", map[string]string{"README": "first\n"}, "first")
	push(t, h, "web", sha)
	waitDeployed(t, h, "web", sha)
	t.Logf("from apt install to the first deployed push: %v", time.Since(start).Round(100*time.Millisecond))

	// doctor passes; its checks, for the report.
	out = h.Run(t, "dh-route doctor")
	t.Logf("dh-route doctor on the working host:\n%s", out)
	var report struct {
		OK     bool
		Checks []struct{ Group, Name string }
	}
	if err := json.Unmarshal([]byte(h.Run(t, "dh-route doctor --json")), &report); err != nil || !report.OK || len(report.Checks) < 30 {
		t.Errorf("dh-route doctor --json: ok=%v, %d checks (%v)", report.OK, len(report.Checks), err)
	}

	// Five things broken on purpose: doctor names each with its fix.
	h.Run(t, `chown nobody /var/spool/dh-deployer/main
sudo -u postgres psql -q -d dh_deployer -c 'REVOKE INSERT ON events FROM "dh-route"'
chmod 0644 /etc/dh-deployer/webhook-secret
systemctl stop dh-cert-renew.timer; mv /lib/systemd/system/dh-cert-renew.timer /root/; systemctl daemon-reload`)
	broken, err := h.Try("dh-route doctor")
	if err == nil {
		t.Errorf("dh-route doctor exited 0 on a broken host")
	}
	for _, want := range []string{
		"✘ dirs: /var/spool/dh-deployer/main: owner nobody, want dh-route — fix: systemd-tmpfiles --create dh-deployer.conf",
		"✘ database: role dh-route: lacks INSERT on events — fix: dh-route setup",
		"✘ secret: webhook: webhook secret /etc/dh-deployer/webhook-secret has mode -rw-r--r--: others may read it — fix: chmod 0600 /etc/dh-deployer/webhook-secret",
		"✘ units: dh-cert-renew.timer: not installed (not-found) — fix: apt-get install --reinstall dh-deployer",
	} {
		if !strings.Contains(broken, want+"\n") {
			t.Errorf("dh-route doctor on the broken host lacks the line\n%s\nin:\n%s", want, broken)
		}
	}
	// setup refuses the loose secret before it changes anything (the
	// revoked grant stays revoked), and a database that is not ours.
	if out, err := h.Try("dh-route setup"); err == nil || !strings.Contains(out, "hint: chmod 0600 /etc/dh-deployer/webhook-secret") {
		t.Errorf("dh-route setup with a secret others may read: %v\n%s\nwant a refusal naming the fix", err, out)
	}
	if out, _ := h.Try("dh-route doctor"); !strings.Contains(out, "✘ database: role dh-route: lacks INSERT on events") {
		t.Errorf("the refused setup changed the grants:\n%s", out)
	}
	h.Run(t, `sudo -u postgres createdb other && sudo -u postgres psql -q -d other -c 'CREATE TABLE mine (x int)'`)
	if out, err := h.Try("chmod 0600 /etc/dh-deployer/webhook-secret; DH_DATABASE_URL='postgres:///other?host=/run/postgresql' dh-route setup --no-start; s=$?; chmod 0644 /etc/dh-deployer/webhook-secret; exit $s"); err == nil ||
		!strings.Contains(out, "database other exists and holds 1 tables that are not dh-deployer's") {
		t.Errorf("dh-route setup on a database holding other tables: %v\n%s\nwant a refusal", err, out)
	}
	h.Run(t, "systemctl stop postgresql@15-main")
	broken, _ = h.Try("dh-route doctor")
	if want := "✘ database: reachable: PostgreSQL at /run/postgresql port 5432 does not answer"; !strings.Contains(broken, want) ||
		!strings.Contains(broken, "— fix: systemctl restart postgresql\n") {
		t.Errorf("dh-route doctor without PostgreSQL lacks %q and its fix in:\n%s", want, broken)
	}
	// Each fix as doctor printed it (the unit file comes back by hand: the
	// container has no network to reinstall from).
	// (dh-route may have stopped meanwhile, 77, on the queue it could no
	// longer use: doctor then says "systemctl restart dh-route.service".)
	h.Run(t, `systemctl restart postgresql
systemd-tmpfiles --create dh-deployer.conf
chmod 0600 /etc/dh-deployer/webhook-secret
mv /root/dh-cert-renew.timer /lib/systemd/system/ && systemctl daemon-reload
dh-route setup
systemctl restart dh-route.service`)
	if out, err := h.Try("dh-route doctor"); err != nil {
		t.Errorf("dh-route doctor after the fixes: %v\n%s", err, out)
	}

	// Upgrade: configuration and history kept, migrations run, stages
	// restarted with the new binaries, a push deploys.
	h.Run(t, "systemctl disable --now dh-cert-renew.timer")
	before := h.Run(t, "sha256sum /etc/dh-deployer/config.toml /etc/dh-deployer/webhook-secret")
	pid := mainPIDs(t, h, "dh-route")
	out = h.Run(t, "cd /root/new && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./dh-deployer_*.deb 2>&1")
	if !strings.Contains(out, "database schema is up to date") {
		t.Errorf("the upgrade did not run the migrations:\n%s", out)
	}
	if after := h.Run(t, "sha256sum /etc/dh-deployer/config.toml /etc/dh-deployer/webhook-secret"); after != before {
		t.Errorf("the upgrade changed the configuration or the secret:\n%s\n%s", before, after)
	}
	if got := h.Run(t, "dpkg-query -W -f '${Version}' dh-deployer"); got != version {
		t.Errorf("after the upgrade dh-deployer is %q; want %q", got, version)
	}
	if now := mainPIDs(t, h, "dh-route"); now == pid {
		t.Errorf("dh-route was not restarted by the upgrade (main PID %s)", pid)
	}
	if out, _ := h.Try("systemctl is-enabled dh-cert-renew.timer dh-route.service"); out != "disabled\nenabled\n" {
		t.Errorf("after the upgrade, dh-cert-renew.timer (disabled before) and dh-route are %q; want disabled and enabled", out)
	}
	sha2 := commit(t, h, "web", nil, "after the upgrade")
	push(t, h, "web", sha2)
	waitDeployed(t, h, "web", sha2)
	if out := h.Run(t, "sudo -u dh-deploy-web dh-deploy history web --json"); !strings.Contains(out, sha) {
		t.Errorf("the history lost the run of %s across the upgrade:\n%s", sha, out)
	}

	// remove keeps configuration, users, queues, state and database;
	// purge removes all but the database, after saying so.
	h.Run(t, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q dh-deployer")
	h.Run(t, `! systemctl is-active -q dh-route dh-nginx dh-cert dh-receive.socket dh-deploy@web
! test -e /usr/bin/dh-route
test -f /etc/dh-deployer/config.toml && test -d /var/spool/dh-deployer/web && id dh-route && id dh-deploy-web`)
	out = h.Run(t, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q dh-deployer 2>&1")
	if !strings.Contains(out, "dh-deployer: purge: removing") || !strings.Contains(out, "dh-deploy-web") {
		t.Errorf("purge did not say what it removes:\n%s", out)
	}
	h.Run(t, `! test -e /etc/dh-deployer && ! test -e /var/spool/dh-deployer && ! test -e /var/lib/dh-deployer
! id dh-route 2>/dev/null && ! id dh-deploy-web 2>/dev/null && ! getent group dh-deployer && ! getent group dh-hook
! test -e /etc/systemd/system/dh-deploy@web.service.d && ! ls /etc/systemd/system/*.wants/dh-* 2>/dev/null
test "$(sudo -u postgres psql -Atc "SELECT count(*) FROM pg_database WHERE datname = 'dh_deployer'")" = 1`)
}

// TestDebVersion: deb/version maps git describe to Debian versions that
// sort in commit order, with or without a tag.
func TestDebVersion(t *testing.T) {
	script, err := filepath.Abs("../deb/version")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.org"}, args...)...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	version := func() string {
		t.Helper()
		cmd := exec.Command(script)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("deb/version: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(repo, "f"), []byte("1"), 0o644)
	git("add", "f")
	git("commit", "-q", "-m", "one")
	var got []string
	want := []string{"0.0~git1." + git("rev-parse", "--short=7", "HEAD")}
	got = append(got, version())
	os.WriteFile(filepath.Join(repo, "f"), []byte("2"), 0o644)
	want = append(want, want[0]+"+dirty")
	got = append(got, version())
	git("commit", "-q", "-am", "two")
	git("tag", "v1.2.0")
	want = append(want, "1.2.0")
	got = append(got, version())
	git("commit", "-q", "--allow-empty", "-m", "three")
	want = append(want, "1.2.0+git1."+git("rev-parse", "--short=7", "HEAD"))
	got = append(got, version())
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) { // git may abbreviate longer
			t.Errorf("deb/version #%d = %q; want %q", i, got[i], want[i])
		}
	}
	for i := 1; i < len(got); i++ {
		if err := exec.Command("dpkg", "--compare-versions", got[i-1], "lt", got[i]).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: false; want each later tree to sort higher", got[i-1], got[i])
		}
	}
}
