package systemd_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/hosttest"
)

// docBlocks returns the shell blocks of a document that are marked
// <!-- host-test: NAME --> on the line before their fence, by name, with
// the document's list indentation removed.
func docBlocks(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^( *)<!-- host-test: ([a-z-]+) -->\n *```sh\n((?:.*\n)*?) *```\n")
	blocks := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		indent, name, body := m[1], m[2], m[3]
		if _, dup := blocks[name]; dup {
			t.Fatalf("%s: two blocks named %q", path, name)
		}
		var lines []string
		for _, l := range strings.SplitAfter(body, "\n") {
			lines = append(lines, strings.TrimPrefix(l, indent))
		}
		blocks[name] = strings.Join(lines, "")
	}
	return blocks
}

// block returns the named block or fails the test.
func block(t *testing.T, blocks map[string]string, name string) string {
	t.Helper()
	b, ok := blocks[name]
	if !ok {
		t.Fatalf("docs/operations.md has no block marked <!-- host-test: %s -->", name)
	}
	return b
}

const hostConfig = `queue_dir    = "/var/spool/dh-deployer"
state_dir    = "/var/lib/dh-deployer"
database_url = "postgres:///dh_deployer?host=/run/postgresql&sslmode=disable"

[receive]
listen       = "systemd"
secret_files = ["webhook-secret"]
`

const appDeployment = `
[deployments.app]
repository = "example/app"
branches   = ["main"]
path       = "/srv/www/app"
clone_url  = "/srv/git/app.git"
steps      = [["sh", "-c", "echo built $DH_COMMIT > built.txt"]]
`

// TestRealHost installs the suite on Debian 12 booted with systemd (a
// container: pkg/hosttest), following docs/operations.md block by block,
// and exercises every unit for real.
func TestRealHost(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container; not with -short")
	}
	doc := docBlocks(t, "../docs/operations.md")
	h := hosttest.New(t)
	start := time.Now()

	// Step 1: the packages the document names are the container's, and
	// `make install` (here into the container's root).
	apt := block(t, doc, "packages")
	for _, pkg := range strings.Fields(apt[strings.Index(apt, "--no-install-recommends")+len("--no-install-recommends"):]) {
		if pkg == "make" {
			continue // make install runs on the build machine
		}
		if out, err := exec.Command("chroot", h.Dir(), "dpkg-query", "-W", "-f=${Status}", pkg).Output(); err != nil ||
			string(out) != "install ok installed" {
			t.Errorf("docs/operations.md installs %s, which the container lacks: add it to pkg/hosttest/mkroot", pkg)
		}
	}
	if out, err := exec.Command("make", "-C", "..", "--no-print-directory", "install", "DESTDIR="+h.Dir()).CombinedOutput(); err != nil {
		t.Fatalf("make install DESTDIR=%s: %v\n%s", h.Dir(), err, out)
	}
	h.Boot(t)
	t.Logf("installed and booted in %v", time.Since(start).Round(time.Second))

	for _, step := range []string{"users", "nginx-acl", "database", "secret"} {
		h.Run(t, block(t, doc, step))
	}
	writeConfig(t, h, hostConfig)
	for _, step := range []string{"nginx-front", "start"} {
		h.Run(t, block(t, doc, step))
	}

	// Socket activation: nothing runs until the first request.
	if out, _ := h.Try("systemctl is-active dh-receive.service"); strings.TrimSpace(out) != "inactive" {
		t.Errorf("dh-receive.service before any request is %q; want inactive (socket activation)", out)
	}
	if out := h.Run(t, block(t, doc, "try")); strings.TrimSpace(out) != "202" {
		t.Fatalf("the signed ping through nginx answered %q; want 202", out)
	}
	h.Run(t, "systemctl is-active dh-receive.service dh-route dh-nginx dh-cert")
	h.WaitFor(t, 30*time.Second, "the ping routed", "sudo -u dh-route dh-route status | grep -q ping")

	// A deployment of kind steps, added as the document says, deployed by
	// a signed push.
	addDeployment(t, h, doc, appDeployment)
	sha := commit(t, h, "app", "README", "first")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)
	t.Logf("first push deployed after %v", time.Since(start).Round(time.Second))

	// kill -9 of each daemon: Restart= brings it back.
	for _, unit := range []string{"dh-receive.service", "dh-route.service", "dh-nginx.service", "dh-cert.service", "dh-deploy@app.service"} {
		pid := strings.TrimSpace(h.Run(t, "systemctl show -P MainPID "+unit))
		h.Run(t, "kill -9 "+pid)
		h.WaitFor(t, 30*time.Second, unit+" restarted after kill -9",
			fmt.Sprintf(`p=$(systemctl show -P MainPID %s); [ "$p" != 0 ] && [ "$p" != %s ] && systemctl is-active -q %s`, unit, pid, unit))
	}
	sha = commit(t, h, "app", "README", "after the kills")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)

	// A reboot: everything comes back, and a push deploys again.
	h.Reboot(t)
	sha = commit(t, h, "app", "README", "after the reboot")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)

	securityInside(t, h)
	t.Logf("the real host took %v", time.Since(start).Round(time.Second))
}

// writeConfig writes the configuration as an operator does in step 6.
func writeConfig(t *testing.T, h *hosttest.Host, content string) {
	t.Helper()
	h.Run(t, "cat > /etc/dh-deployer/config.toml <<'EOF'\n"+content+"EOF\nchgrp dh-deployer /etc/dh-deployer/config.toml; chmod 0640 /etc/dh-deployer/config.toml")
}

// addDeployment adds the deployment named by the document's example (app)
// to the configuration and follows "Adding a deployment", with a bare
// repository on the host standing in for GitHub.
func addDeployment(t *testing.T, h *hosttest.Host, doc map[string]string, toml string) {
	t.Helper()
	h.Run(t, "cat >> /etc/dh-deployer/config.toml <<'EOF'\n"+toml+"EOF")
	h.Run(t, `git init -q --bare -b main /srv/git/app.git`)
	commit(t, h, "app", "README", "initial")
	for _, step := range []string{"deployment", "deployment-git", "deployment-start"} {
		h.Run(t, block(t, doc, step))
	}
}

// commit commits file with content to the bare repository
// /srv/git/NAME.git's main branch and returns the commit.
func commit(t *testing.T, h *hosttest.Host, name, file, content string) string {
	t.Helper()
	out := h.Run(t, fmt.Sprintf(`d=$(mktemp -d); cd $d
git init -q -b main; git config user.name test; git config user.email test@example.org
git pull -q /srv/git/%[1]s.git main 2>/dev/null || true
printf '%%s\n' %[3]q > %[2]s; git add -A; git commit -q -m %[3]q
git push -q /srv/git/%[1]s.git main; git rev-parse HEAD; rm -rf $d`, name, file, content))
	return strings.TrimSpace(out)
}

// push posts a signed push event of sha to NAME's main branch through nginx.
func push(t *testing.T, h *hosttest.Host, name, sha string) {
	t.Helper()
	out := h.Run(t, fmt.Sprintf(`cat > /tmp/push.json <<'EOF'
{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"%[2]s","repository":{"full_name":"example/%[1]s"},"head_commit":{"id":"%[2]s"}}
EOF
curl -sS -o /dev/null -w '%%{http_code}\n' -H 'Host: deploy.example.org' \
  -H "X-Hub-Signature-256: $(dh-receive sign /tmp/push.json)" -H 'X-GitHub-Event: push' \
  -H "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" -H 'Content-Type: application/json' \
  --data-binary @/tmp/push.json http://127.0.0.1/github-webhook`, name, sha))
	if strings.TrimSpace(out) != "202" {
		t.Fatalf("push of %s to %s answered %q; want 202", sha, name, out)
	}
}

// waitDeployed waits until NAME's newest run deployed sha successfully.
func waitDeployed(t *testing.T, h *hosttest.Host, name, sha string) {
	t.Helper()
	h.WaitFor(t, 60*time.Second, name+" deployed "+sha[:12],
		fmt.Sprintf(`sudo -u www-%[1]s dh-deploy history %[1]s --json -n 1 | grep -q '"commit":"%[2]s".*"state":"succeeded"'`, name, sha))
}

// securityInside runs systemd-analyze security on every service as the
// container's systemd loaded it, and holds each to its budget.
func securityInside(t *testing.T, h *hosttest.Host) {
	t.Helper()
	units := []string{"dh-receive.service", "dh-route.service", "dh-nginx.service", "dh-cert.service",
		"dh-cert-renew.service", "dh-deploy@app.service"}
	var table strings.Builder
	for _, u := range units {
		out, _ := h.Try("systemd-analyze security --no-pager " + u)
		m := exposureRE.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s printed no exposure:\n%s", u, out)
			continue
		}
		fmt.Fprintf(&table, "%-24s %s\n", u, m[1])
		key := u
		if strings.HasPrefix(u, "dh-deploy@") {
			key = "dh-deploy@.service"
		}
		if max, ok := budget[key]; ok {
			var got float64
			fmt.Sscan(m[1], &got)
			if got > max {
				t.Errorf("%s inside the container: exposure %.1f; want at most %.1f", u, got, max)
			}
		}
	}
	t.Logf("systemd-analyze security inside the container:\n%s", table.String())
}
