package systemd_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cert/certtest"
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
path       = "/srv/www/app/current"
clone_url  = "/srv/git/app.git"
user       = "www-app"
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
	addDeployment(t, h, doc, "app", "www-app", appDeployment)
	sha := commit(t, h, "app", map[string]string{"README": "first\n"}, "first")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)
	t.Logf("first push deployed after %v", time.Since(start).Round(time.Second))

	gitHook(t, h, doc, start)
	appUnitAndReload(t, h, doc)
	nginxAndCert(t, h, doc)
	selfUpdate(t, h, doc)
	t.Logf("nginx, certificates and self update done after %v", time.Since(start).Round(time.Second))

	// kill -9 of each daemon: Restart= brings it back.
	for _, unit := range []string{"dh-receive.service", "dh-route.service", "dh-nginx.service", "dh-cert.service", "dh-deploy@app.service"} {
		pid := mainPIDs(t, h, unit)
		h.Run(t, "kill -9 "+pid)
		h.WaitFor(t, 45*time.Second, unit+" restarted after kill -9", // RestartSec= is at most 30 s
			fmt.Sprintf(`p=$(systemctl show -P MainPID %s); [ "$p" != 0 ] && [ "$p" != %s ] && systemctl is-active -q %s`, unit, pid, unit))
	}
	sha = commit(t, h, "app", nil, "after the kills")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)

	postgresOutage(t, h)
	errorsInJournal(t, h)

	// A reboot: everything comes back, and a push deploys again.
	h.Reboot(t)
	sha = commit(t, h, "app", nil, "after the reboot")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)

	securityInside(t, h)
	t.Logf("the real host took %v", time.Since(start).Round(time.Second))
}

// gitHook follows "A repository on this host instead of GitHub" for the
// app's bare repository with the user githost, then runs its hook as git
// would (as githost, who cannot read the configuration): the push is
// deployed through dh-receive-hook.socket; the same hook as another user,
// or for another repository, is refused with exit 77, and githost cannot
// write queues/main itself (issue 17, finding 5).
func gitHook(t *testing.T, h *hosttest.Host, doc map[string]string, start time.Time) {
	t.Helper()
	h.Run(t, "useradd --system --no-create-home githost")
	b := block(t, doc, "hook")
	if !strings.HasPrefix(b, "HOOK_USER=") {
		t.Fatalf("docs/operations.md: block hook does not start with the example's HOOK_USER=...")
	}
	h.Run(t, "HOOK_USER=githost REPOSITORY=example/app\n"+b[strings.Index(b, "\n")+1:])
	sha := commit(t, h, "app", nil, "through the hook")
	hook := "echo 0000000000000000000000000000000000000000 " + sha +
		" refs/heads/main | runuser -u %s -- dh-receive -c /etc/dh-deployer/config.toml hook --repository %s"
	for _, refused := range []string{fmt.Sprintf(hook, "nobody", "example/app"), fmt.Sprintf(hook, "githost", "example/other")} {
		var exit *exec.ExitError
		if out, err := h.Try(refused); !errors.As(err, &exit) || exit.ExitCode() != 77 {
			t.Errorf("%s: %v %q; want exit 77", refused, err, out)
		}
	}
	if out, err := h.Try("runuser -u githost -- sh -c 'echo x > /var/spool/dh-deployer/main/.tmp/x.json'"); err == nil {
		t.Errorf("githost wrote into queues/main/.tmp: %q", out)
	}
	if out := h.Run(t, fmt.Sprintf(hook, "githost", "example/app")); !strings.Contains(out, "queued as delivery hook-") {
		t.Fatalf("the hook as githost printed %q; want a queued delivery", out)
	}
	waitDeployed(t, h, "app", sha)
	t.Logf("a push through the git hook deployed after %v", time.Since(start).Round(time.Second))
}

// writeConfig writes the configuration as an operator does in step 6.
func writeConfig(t *testing.T, h *hosttest.Host, content string) {
	t.Helper()
	h.Run(t, "cat > /etc/dh-deployer/config.toml <<'EOF'\n"+content+"EOF\nchgrp dh-deployer /etc/dh-deployer/config.toml; chmod 0640 /etc/dh-deployer/config.toml")
}

// addDeployment appends toml to the configuration and follows "Adding a
// deployment" for deployment name run as user (the document's blocks with
// their first line, the example's names, replaced), with a bare
// repository on the host standing in for GitHub; extra names more blocks
// to run before the worker starts.
func addDeployment(t *testing.T, h *hosttest.Host, doc map[string]string, name, user, toml string, extra ...string) {
	t.Helper()
	h.Run(t, "cat >> /etc/dh-deployer/config.toml <<'EOF'\n"+toml+"EOF")
	h.Run(t, "git init -q --bare -b main /srv/git/"+name+".git")
	commit(t, h, name, map[string]string{"README": "initial\n"}, "initial")
	names := fmt.Sprintf("NAME=%s APP_USER=%s\n", name, user)
	for _, step := range append(append([]string{"deployment", "deployment-git"}, extra...), "deployment-start") {
		b := block(t, doc, step)
		if !strings.HasPrefix(b, "NAME=") {
			t.Fatalf("docs/operations.md: block %s does not start with the example's NAME=...", step)
		}
		h.Run(t, names+b[strings.Index(b, "\n")+1:])
	}
}

// commit commits files (path: content) to the bare repository
// /srv/git/NAME.git's main branch, as someone pushing to it, and returns
// the commit.
func commit(t *testing.T, h *hosttest.Host, name string, files map[string]string, msg string) string {
	t.Helper()
	work := "/root/commit-" + name // not /tmp: the container mounts its own
	h.Run(t, fmt.Sprintf(`rm -rf %[1]s; git clone -q /srv/git/%[2]s.git %[1]s 2>/dev/null || git init -q -b main %[1]s`, work, name))
	for f, content := range files {
		p := h.Path(work + "/" + f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := h.Run(t, fmt.Sprintf(`cd %s; git add -A
git -c user.name=test -c user.email=test@example.org commit -q --allow-empty -m %q
git push -q /srv/git/%s.git HEAD:main; git rev-parse HEAD`, work, msg, name))
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
		fmt.Sprintf(`sudo -u %[3]s dh-deploy history %[1]s --json -n 1 | grep -q '"commit":"%[2]s".*"state":"succeeded"'`,
			name, sha, users[name]))
}

// users are the deployments' users, as the test adds them.
var users = map[string]string{"app": "www-app", "sites": "dh-deploy-sites", "deployer": "dh-self", "web": "dh-deploy-web"}

// securityInside runs systemd-analyze security on every service as the
// container's systemd loaded it, and holds each to its budget.
func securityInside(t *testing.T, h *hosttest.Host) {
	t.Helper()
	units := []string{"dh-receive.service", "dh-route.service", "dh-nginx.service", "dh-cert.service",
		"dh-cert-renew.service", "dh-deploy@app.service", "dh-nginx-test.service", "dh-certbot.service"}
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

// pebble installs pebble (the ACME test server) in the container and
// starts it as a transient unit on 127.0.0.1:14000, validating http-01
// challenges on port 80 (the container's nginx) and resolving names with
// the container's /etc/hosts. It returns the path of the CA bundle that
// certbot must trust to talk to it.
func pebble(t *testing.T, h *hosttest.Host) string {
	t.Helper()
	gopath, err := exec.Command("go", "env", "GOPATH", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	dirs := strings.Fields(string(gopath))
	certs := dirs[1] + "/github.com/letsencrypt/pebble/v2@" + certtest.PebbleVersion + "/test/certs"
	h.Run(t, "mkdir -p /opt/pebble")
	for src, dst := range map[string]string{dirs[0] + "/bin/pebble": "pebble", certs + "/pebble.minica.pem": "minica.pem",
		certs + "/localhost/cert.pem": "cert.pem", certs + "/localhost/key.pem": "key.pem"} {
		if out, err := exec.Command("cp", src, h.Path("/opt/pebble/"+dst)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s into the container: %v\n%s (run: make deps)", src, err, out)
		}
	}
	conf := `{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
 "certificate": "/opt/pebble/cert.pem", "privateKey": "/opt/pebble/key.pem", "httpPort": 80, "tlsPort": 5001,
 "ocspResponderURL": "", "externalAccountBindingRequired": false, "retryAfter": {"authz": 1, "order": 1},
 "keyAlgorithm": "ecdsa", "profiles": {"default": {"description": "test", "validityPeriod": 7776000}}}}`
	if err := os.WriteFile(h.Path("/opt/pebble/pebble.json"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Run(t, `systemd-run -q --unit=pebble -p WorkingDirectory=/opt/pebble -E PEBBLE_VA_NOSLEEP=1 -E PEBBLE_WFE_NONCEREJECT=0 \
  -E PEBBLE_AUTHZREUSE=0 /opt/pebble/pebble -config /opt/pebble/pebble.json
echo '127.0.0.1 www.site.test' >> /etc/hosts`)
	h.WaitFor(t, 20*time.Second, "pebble listening", "curl -sf --cacert /opt/pebble/minica.pem https://localhost:14000/dir >/dev/null")
	return "/opt/pebble/minica.pem"
}

// servedSerial prints the serial number of the certificate the container's
// nginx serves for www.site.test, and fails if it serves none.
const servedSerial = `echo | openssl s_client -connect 127.0.0.1:443 -servername www.site.test 2>/dev/null | openssl x509 -noout -serial`

const sitesDeployment = `
[deployments.sites]
kind       = "nginx"
repository = "example/sites"
branches   = ["main"]
path       = "/srv/nginx/sites"
clone_url  = "/srv/git/sites.git"
sites      = [{ rule = "include", select = ["*"] }]
domains    = ["www.site.test"]
`

const siteFile = `server {
    listen 443 ssl;
    server_name www.site.test;
    ssl_certificate /etc/letsencrypt/live/www.site.test/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/www.site.test/privkey.pem;
    return 200 "site ok";
}`

// nginxAndCert adds the nginx-kind deployment of docs/operations.md
// (reloading the running daemons, not restarting them), pushes a site that
// needs a certificate, and checks the whole way: dh-nginx holds the site
// back, dh-cert obtains the certificate from pebble through the root
// certbot unit, dh-nginx installs the site, tests and reloads the real
// nginx, which serves it; then dh-cert-renew.service renews it and nginx
// serves the new leaf.
func nginxAndCert(t *testing.T, h *hosttest.Host, doc map[string]string) {
	t.Helper()
	ca := pebble(t, h)
	certbotEnv(t, h, ca)
	h.Run(t, block(t, doc, "acme-default"))
	pids := mainPIDs(t, h, "dh-route", "dh-nginx", "dh-cert")
	h.Run(t, "cat >> /etc/dh-deployer/config.toml <<'EOF'\n[cert]\nserver = \"https://localhost:14000/dir\"\n"+sitesDeployment+"EOF")
	h.Run(t, `git init -q --bare -b main /srv/git/sites.git`)
	commit(t, h, "sites", map[string]string{"README": "sites\n"}, "initial")
	h.Run(t, block(t, doc, "nginx-deployment"))
	sha := commit(t, h, "sites", map[string]string{"production/www.site.test.conf": siteFile}, "a site with a certificate")
	push(t, h, "sites", sha)
	h.WaitFor(t, 90*time.Second, "nginx serving www.site.test with pebble's certificate",
		"curl -sf --resolve www.site.test:443:127.0.0.1 -k https://www.site.test/ | grep -q 'site ok'")
	if now := mainPIDs(t, h, "dh-route", "dh-nginx", "dh-cert"); now != pids {
		t.Errorf("main PIDs of dh-route, dh-nginx, dh-cert went from %s to %s; want them reloaded, not restarted", pids, now)
	}
	first := strings.TrimSpace(h.Run(t, servedSerial))

	// Renewal: make the certificate due (its renewal configuration says to
	// renew 100 days before expiry; pebble's last 90), run the renewal unit
	// as its timer would.
	h.Run(t, `f=/etc/letsencrypt/renewal/www.site.test.conf; { echo 'renew_before_expiry = 100 days'; cat $f; } > $f.new && mv $f.new $f`)
	h.Run(t, "systemctl start dh-cert-renew.service")
	h.WaitFor(t, 60*time.Second, "nginx serving the renewed leaf",
		fmt.Sprintf(`s=$(%s); [ -n "$s" ] && [ "$s" != %q ]`, servedSerial, first))
}

// mainPIDs is the main PIDs of units, space-separated.
func mainPIDs(t *testing.T, h *hosttest.Host, units ...string) string {
	t.Helper()
	var pids []string
	for _, u := range units {
		pids = append(pids, strings.TrimSpace(h.Run(t, "systemctl show -P MainPID "+u)))
	}
	return strings.Join(pids, " ")
}

// appUnitAndReload gives the app a unit of its own and lets its user
// restart it ("deployment-units"), then changes the app's steps (a
// different build, and a step restarting app.service) and reloads the
// worker: the next push runs the new steps, without a restart of the
// worker.
func appUnitAndReload(t *testing.T, h *hosttest.Host, doc map[string]string) {
	t.Helper()
	h.Run(t, `printf '[Service]\nExecStart=/bin/sleep infinity\n' > /etc/systemd/system/app.service
systemctl daemon-reload && systemctl start app.service`)
	h.Run(t, block(t, doc, "deployment-units"))
	pid, invocation := mainPIDs(t, h, "dh-deploy@app"), h.Run(t, "systemctl show -P InvocationID app.service")
	h.Run(t, `sed -i 's|^steps .*echo built.*|steps = [["sh", "-c", "echo rebuilt $DH_COMMIT > built.txt"], ["systemctl", "--no-ask-password", "restart", "app.service"]]|' /etc/dh-deployer/config.toml
systemctl reload dh-deploy@app`)
	sha := commit(t, h, "app", nil, "after a reload")
	push(t, h, "app", sha)
	waitDeployed(t, h, "app", sha)
	if out := h.Run(t, "cat /srv/www/app/current/built.txt"); out != "rebuilt "+sha+"\n" {
		t.Errorf("after systemctl reload dh-deploy@app, built.txt = %q; want the changed step's output", out)
	}
	if now := mainPIDs(t, h, "dh-deploy@app"); now != pid {
		t.Errorf("dh-deploy@app's main PID went from %s to %s; want a reload, not a restart", pid, now)
	}
	if now := h.Run(t, "systemctl show -P InvocationID app.service"); now == invocation {
		t.Errorf("app.service was not restarted by the deployment's step (InvocationID %s)", now)
	}
}

// selfUpdate adds a deployment of kind self as docs/operations.md says,
// whose step "builds" tools of another version (built here, copied in),
// and checks a push installs them and restarts the stages.
func selfUpdate(t *testing.T, h *hosttest.Host, doc map[string]string) {
	t.Helper()
	var pkgs []string
	for _, tool := range []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"} {
		pkgs = append(pkgs, "./cmd/"+tool)
	}
	build := exec.Command("go", append([]string{"build", "-trimpath", "-o", h.Path("/opt/dh-new") + "/",
		"-ldflags=-s -w -X github.com/dh-deployer/dh-deployer/pkg/cli.Version=v0.0.0-selftest"}, pkgs...)...)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the new version: %v\n%s", err, out)
	}
	addDeployment(t, h, doc, "deployer", "dh-self", `
[deployments.deployer]
kind       = "self"
repository = "example/deployer"
branches   = ["main"]
path       = "/srv/www/deployer"
clone_url  = "/srv/git/deployer.git"
user       = "dh-self"
steps      = [["sh", "-c", "mkdir -p bin && cp /opt/dh-new/dh-* bin/"]]
self       = { migrate = false }
`, "self-deployment")
	pids := mainPIDs(t, h, "dh-route", "dh-nginx")
	sha := commit(t, h, "deployer", nil, "a new version")
	push(t, h, "deployer", sha)
	waitDeployed(t, h, "deployer", sha)
	if out := h.Run(t, "dh-route --version"); !strings.Contains(out, "v0.0.0-selftest") {
		t.Errorf("after the self deployment, dh-route --version = %q; want the new version", out)
	}
	h.WaitFor(t, 30*time.Second, "the stages restarted by the self deployment",
		fmt.Sprintf(`[ "$(systemctl show -P MainPID dh-route) $(systemctl show -P MainPID dh-nginx)" != %q ]`, pids))
}

// postgresOutage stops PostgreSQL for 30 s: the daemons restarted while it
// is down start and wait, saying so, and those running keep running; a
// push accepted meanwhile is deployed once it is back.
func postgresOutage(t *testing.T, h *hosttest.Host) {
	t.Helper()
	daemons := []string{"dh-route", "dh-deploy@app", "dh-nginx", "dh-cert"}
	// postgresql.service is Debian's umbrella: stop the cluster itself, and
	// mask it for now, or dh-route's Wants=postgresql.service would start
	// it again with dh-route.
	h.Run(t, "systemctl mask --runtime --now postgresql@15-main && ! pg_isready -q -h /run/postgresql")
	h.Run(t, "systemctl restart dh-route dh-deploy@app dh-nginx && ! pg_isready -q -h /run/postgresql")
	restarts := h.Run(t, "for u in "+strings.Join(daemons, " ")+"; do systemctl show -P NRestarts $u; done")
	sha := commit(t, h, "app", nil, "during the outage")
	push(t, h, "app", sha)
	time.Sleep(30 * time.Second)
	if now := h.Run(t, "for u in "+strings.Join(daemons, " ")+"; do systemctl show -P NRestarts $u; done"); now != restarts {
		t.Errorf("restarts of %v during 30 s without the database: %q, then %q; want none", daemons, restarts, now)
	}
	if _, err := h.Try("systemctl is-active -q " + strings.Join(daemons, " ")); err != nil {
		t.Errorf("after 30 s without the database, not every one of %v is active", daemons)
	}
	if out := h.Run(t, "systemctl show -P StatusText dh-route"); !strings.Contains(out, "database") {
		t.Errorf("dh-route's status while the database is down = %q; want it to say it waits for the database", out)
	}
	h.Run(t, "systemctl unmask --runtime postgresql@15-main && systemctl start postgresql@15-main")
	waitDeployed(t, h, "app", sha)
}

// errorsInJournal breaks the configuration and reloads (or, for
// dh-receive, restarts) each daemon: each must log an error that
// `journalctl -p err` shows; the daemons keep their old configuration.
func errorsInJournal(t *testing.T, h *hosttest.Host) {
	t.Helper()
	h.Run(t, `cp /etc/dh-deployer/config.toml /root/config.good; echo 'brokenkey = 1' >> /etc/dh-deployer/config.toml
systemctl reload dh-route dh-nginx dh-cert dh-deploy@app; systemctl restart dh-receive.service || true`)
	// A reload happens between two entries, after systemctl returned: wait
	// for each daemon's error line before the configuration is put back.
	for _, id := range []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"} {
		script := "journalctl -b -q -p err -t " + id + " --no-pager | grep -q brokenkey"
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			if _, err = h.Try(script); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			out, _ := h.Try("journalctl -b -q -p err -t " + id + " --no-pager")
			t.Errorf("journalctl -p err -t %s shows no error about the broken configuration within 30 s:\n%s", id, out)
		}
	}
	h.Run(t, `cp /root/config.good /etc/dh-deployer/config.toml
systemctl restart dh-receive.service && systemctl is-active dh-route dh-nginx dh-cert dh-deploy@app`)
}

// certbotEnv makes the root certbot unit trust pebble, as an operator
// using a private ACME server would, with a drop-in.
func certbotEnv(t *testing.T, h *hosttest.Host, ca string) {
	t.Helper()
	h.Run(t, `mkdir -p /etc/systemd/system/dh-certbot.service.d
printf '[Service]\nEnvironment=REQUESTS_CA_BUNDLE=`+ca+`\n' > /etc/systemd/system/dh-certbot.service.d/ca.conf
systemctl daemon-reload`)
}
