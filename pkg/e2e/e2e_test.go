package e2e

import (
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/cert/certtest"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The whole suite as installed: five binaries, five users, the shipped
// ACLs, roles and sudoers rules (adapted to the private nginx and pebble,
// see installSudoers). A signed push of an app goes to its deployed
// commit and history; a signed push of an nginx-kind deployment goes to
// its site installed, its certificate obtained by dh-cert through certbot
// from pebble, and nginx serving exactly that certificate over HTTPS.
func TestWholeSuite(t *testing.T) {
	r := newRig(t, rigOptions{})
	ca := certtest.Start(t)
	// nginx's prefix is DH_ROOT/etc/nginx, so that dh-deployer-acl nginx
	// grants dh-nginx conf.d and snippets as it does on a host; certbot's
	// configuration directory is DH_ROOT/etc/letsencrypt (a link), whose
	// live/ and archive/ the same command lets dh-nginx search.
	srv := nginxtest.Start(t, nginxtest.Options{Port: ca.HTTPPort, ACMEWebroot: ca.Webroot, Dir: filepath.Join(r.root, "etc/nginx")})
	for _, d := range []string{filepath.Join(r.root, "etc"), srv.Dir} {
		mkdir(t, d, 0o755)
	}
	for _, d := range []string{ca.Live, filepath.Join(ca.ConfigDir, "archive")} {
		mkdir(t, d, 0o700) // as certbot makes them
	}
	// The tmpfiles file made an empty etc/letsencrypt, as on a fresh host:
	// certtest's certbot directories take its place.
	if err := os.RemoveAll(filepath.Join(r.root, "etc/letsencrypt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ca.ConfigDir, filepath.Join(r.root, "etc/letsencrypt")); err != nil {
		t.Fatal(err)
	}
	r.acl("nginx")
	nginxSudo := r.installSudoers("dh-nginx", nginxRule(t, srv))
	certSudo := r.installSudoers("dh-cert", certRules(t, ca))
	t.Logf("sudoers drop-ins %s and %s", nginxSudo, certSudo)

	tlsPort := testenv.FreePort(t)
	app := r.newRepo("e2e/app")
	app.push(t, app.commit(t, map[string]string{"index.html": "<h1>app</h1>\n"}, 1))
	sites := r.newRepo("e2e/nginx")
	site := fmt.Sprintf(`server {
    listen 127.0.0.1:%d ssl;
    server_name app.test;
    ssl_certificate %[2]s/app.test/fullchain.pem;
    ssl_certificate_key %[2]s/app.test/privkey.pem;
    return 200 "tls ok";
}
`, tlsPort, ca.Live)
	sites.push(t, sites.commit(t, map[string]string{"production/app.test.conf": site}, 1))

	// The app's secret (issue 17, finding 7a): its user's own file, 0600.
	appSecrets := filepath.Join(r.root, "etc/dh-deployer/app.env")
	mkdir(t, filepath.Dir(appSecrets), 0o755)
	if err := os.WriteFile(appSecrets, []byte("APP_SECRET=s3cret-of-app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownName(t, appSecrets, "dh-deploy:dh-deployer")

	sudo := "/usr/bin/sudo"
	argv := func(prefix []string, rest ...string) string {
		return config.TOMLArray(append(append([]string{sudo, "-n"}, prefix...), rest...))
	}
	r.writeConfig(fmt.Sprintf(`
[nginx]
conf_dir       = %q
snippets_dir   = %q
cert_dir       = %q
test_command   = %s
reload_command = %s

[cert]
command = %s
webroot = %q
server  = %q
%s
[deployments.sites]
kind       = "nginx"
repository = %q
branches   = ["main"]
path       = %q
clone_url  = %q
sites      = [{ rule = "include", select = ["*"] }]
domains    = ["app.test"]
`, srv.ConfDir, srv.SnippetsDir, ca.Live, argv(srv.TestCommand()), argv(srv.ReloadCommand()),
		argv(ca.Command(t)), ca.Webroot, ca.Directory, r.appDeployment("app", app)+fmt.Sprintf("environment_file = %q\n", appSecrets),
		sites.fullName, r.checkout("sites"), sites.bare))
	r.migrate()
	r.acl("deployment", "app")
	// An nginx deployment runs as a user of its own (issue 14): only its
	// entries reach dh-nginx.
	r.ownUser("sites", sites, "--nginx")
	r.startStages([]string{"app", "sites"}, "dh-nginx", "dh-cert")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	post := func(g *repo) string {
		t.Helper()
		payload, err := demo.PushPayload(g.fullName, "refs/heads/main", github.ZeroSHA, g.commits[0])
		if err != nil {
			t.Fatal(err)
		}
		guid := demo.NewGUID()
		if status, err := r.post(ctx, "push", guid, payload); err != nil || status != 202 {
			t.Fatalf("push of %s = %d, %v; want 202", g.fullName, status, err)
		}
		return guid
	}
	began := time.Now()
	appGUID, sitesGUID := post(app), post(sites)
	defer func() { t.Logf("both pushes went all the way in %v", time.Since(began).Round(time.Millisecond)) }()

	// The app: routed, deployed at the commit, recorded.
	r.waitRun(ctx, appGUID, "app")
	r.checkEvent(ctx, appGUID, "app")
	if head, err := headOf(r.checkout("app")); err != nil || head != app.commits[0] {
		t.Errorf("app's checkout at %q, %v; want %s", head, err, app.commits[0])
	}
	if b, err := os.ReadFile(filepath.Join(r.checkout("app"), "built-commit")); err != nil || strings.TrimSpace(string(b)) != app.commits[0] {
		t.Errorf("app's step wrote %q, %v; want the commit %s", b, err, app.commits[0])
	}
	if b, err := os.ReadFile(filepath.Join(r.checkout("app"), "secret-seen")); err != nil || strings.TrimSpace(string(b)) != "s3cret-of-app" {
		t.Errorf("app's step saw APP_SECRET %q, %v; want the environment_file's", b, err)
	}
	for _, u := range []string{"dh-deploy-sites", "dh-route", "dh-nginx"} {
		if exec.Command("runuser", "-u", u, "-g", "dh-deployer", "--", "cat", appSecrets).Run() == nil {
			t.Errorf("%s can read app's environment_file; only dh-deploy (app's user) should", u)
		}
	}
	if st := r.stat(t, r.checkout("app")); st != "dh-deploy" {
		t.Errorf("app's checkout belongs to %s; want dh-deploy", st)
	}

	// The sites: deployed, the site held back for its certificate, which
	// dh-cert obtains, then installed; nginx serves it over HTTPS.
	r.waitRun(ctx, sitesGUID, "sites")
	r.checkEvent(ctx, sitesGUID, "sites")
	installed := filepath.Join(srv.ConfDir, "app.test.conf")
	r.waitFor(ctx, "the site installed", func() bool {
		b, err := os.ReadFile(installed)
		return err == nil && string(b) == site
	})
	if st := r.stat(t, installed); st != "dh-nginx" {
		t.Errorf("%s belongs to %s; want dh-nginx (it made the file)", installed, st)
	}
	leaf := certtest.ReadLeaf(t, ca.FullChain("app.test"))
	roots := ca.Roots(t)
	var body string
	var chain []*x509.Certificate
	var err error
	r.waitFor(ctx, "nginx serving app.test with its certificate", func() bool {
		body, chain, err = nginxtest.HTTPS(tlsPort, "app.test", roots)
		return err == nil && body == "tls ok" && len(chain) > 0 && slices.Equal(chain[0].Raw, leaf.Raw)
	})

	// The records of dh-nginx and dh-cert. nginx serves the site as soon as
	// it is reloaded; dh-nginx records the install and removes its entry
	// just after.
	var outcome string
	var files pq.StringArray
	recorded := func() error {
		return r.db.QueryRowContext(ctx, `SELECT outcome, installed FROM nginx_installs
		WHERE deployment = 'sites' AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1`).Scan(&outcome, &files)
	}
	r.waitFor(ctx, "dh-nginx to record the install and empty its queue", func() bool {
		names, _ := r.queues()[1].List() // nginx
		return recorded() == nil && len(names) == 0
	})
	if err := recorded(); err != nil {
		t.Errorf("no succeeded install of sites in nginx_installs: %v", err)
	} else if !slices.Contains(files, installed) {
		t.Errorf("nginx_installs.installed = %q; want %s in it", files, installed)
	}
	var certState string
	if err := r.db.QueryRowContext(ctx, `SELECT state FROM certs WHERE name = 'app.test'`).Scan(&certState); err != nil || certState != "issued" {
		t.Errorf("certs row of app.test: %q, %v; want issued", certState, err)
	}
	// Issue 17, forged history: with the roles the real dh-route recorded
	// from the configuration, the sites deployment's role can neither
	// rewrite app's runs nor forge one, and its own are still its.
	sitesDB, err := sql.Open("postgres", r.dbURL("dh-deploy-sites"))
	if err != nil {
		t.Fatal(err)
	}
	defer sitesDB.Close()
	if res, err := sitesDB.ExecContext(ctx, `UPDATE runs SET state = 'failed' WHERE deployment = 'app'`); err != nil {
		t.Errorf("as dh-deploy-sites, UPDATE app's runs: %v; want no error and no row changed", err)
	} else if n, _ := res.RowsAffected(); n != 0 {
		t.Errorf("as dh-deploy-sites, UPDATE app's runs changed %d rows; want 0", n)
	}
	if _, err := sitesDB.ExecContext(ctx, `INSERT INTO runs (delivery, deployment, state, commit_sha)
		VALUES ('forged', 'app', 'succeeded', $1)`, strings.Repeat("6", 40)); err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("as dh-deploy-sites, a succeeded run for app: %v; want refused by row-level security", err)
	}
	var own int
	if err := sitesDB.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE deployment = 'sites'`).Scan(&own); err != nil || own == 0 {
		t.Errorf("as dh-deploy-sites, its own runs: %d, %v; want them visible", own, err)
	}
	r.waitRun(ctx, appGUID, "app") // still succeeded
	for _, q := range r.queues("app", "sites") {
		if names, _ := q.List(); len(names) > 0 {
			t.Errorf("%s still holds %v", q.Dir(), names)
		}
	}
	if err := r.exited(); err != nil {
		t.Error(err)
	}
}

// waitRun waits for a finished run of (guid, deployment) and fails the
// test unless it succeeded.
func (r *rig) waitRun(ctx context.Context, guid, deployment string) {
	r.t.Helper()
	var state, errText string
	r.waitFor(ctx, fmt.Sprintf("a finished run of %s for %s", deployment, guid), func() bool {
		err := r.db.QueryRowContext(ctx, `SELECT state, coalesce(error, '') FROM runs WHERE delivery = $1 AND deployment = $2
			AND state NOT IN ('queued', 'running') ORDER BY id DESC LIMIT 1`, guid, deployment).Scan(&state, &errText)
		return err == nil
	})
	if state != "succeeded" {
		r.t.Fatalf("run of %s for %s: %s (%s); want succeeded", deployment, guid, state, errText)
	}
}

// checkEvent checks that the delivery's event row says routed to the
// deployment.
func (r *rig) checkEvent(ctx context.Context, guid, deployment string) {
	r.t.Helper()
	var status string
	var deps pq.StringArray
	err := r.db.QueryRowContext(ctx, `SELECT status, deployments FROM events WHERE delivery = $1`, guid).Scan(&status, &deps)
	if err == sql.ErrNoRows || err != nil || status != "routed" || !slices.Equal(deps, []string{deployment}) {
		r.t.Errorf("event %s: %q %q, %v; want routed to [%s]", guid, status, deps, err, deployment)
	}
}

// waitFor polls cond every 100 ms until it holds; it fails the test when
// ctx ends or a stage exits first.
func (r *rig) waitFor(ctx context.Context, what string, cond func() bool) {
	r.t.Helper()
	for !cond() {
		if err := r.exited(); err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stat returns the name of the owner of path.
func (r *rig) stat(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("stat", "-c", "%U", path).Output()
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// installSudoers checks rules with visudo and installs them as
// /etc/sudoers.d/dh-e2e-NAME-PID (no dot: sudo skips such names), removed
// when the test ends, pass or fail. It returns the path.
func (r *rig) installSudoers(name, rules string) string {
	t := r.t
	t.Helper()
	path := fmt.Sprintf("/etc/sudoers.d/dh-e2e-%s-%d", name, os.Getpid())
	tmp := filepath.Join(r.root, "sudoers-"+name)
	if err := os.WriteFile(tmp, []byte(rules), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "-cf", tmp).CombinedOutput(); err != nil {
		t.Fatalf("visudo -cf (drop-in for %s): %v\n%s\n%s", name, err, out, rules)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove %s: %v", path, err)
		}
	})
	if err := os.WriteFile(path, []byte(rules), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o440); err != nil {
		t.Fatal(err)
	}
	return path
}

// nginxRule derives dh-nginx's drop-in from the shipped sudoers/dh-nginx:
// the same rule, with exactly the private master's argv. It differs from
// the shipped one because the private nginx is not the system's: every
// command acting on it needs -p PREFIX/ -c CONF, and this host has no
// systemd, so the reload is nginx -s reload (as docs/operations.md
// tells hosts without systemd to allow in a drop-in of their own).
func nginxRule(t *testing.T, srv *nginxtest.Server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sudoersD, "dh-nginx"))
	if err != nil {
		t.Fatal(err)
	}
	const test, reload = "/usr/sbin/nginx -t", "/usr/bin/systemctl reload nginx"
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "dh-nginx ") {
			if !strings.Contains(line, test) || !strings.Contains(line, reload) {
				t.Fatalf("sudoers/dh-nginx: the rule %q no longer allows %q and %q: update this test", line, test, reload)
			}
			line = strings.Replace(line, test, strings.Join(srv.TestCommand(), " "), 1)
			line = strings.Replace(line, reload, strings.Join(srv.ReloadCommand(), " "), 1)
			return "# pkg/e2e: sudoers/dh-nginx for the private nginx of one test (removed afterwards)\n" + line
		}
	}
	t.Fatal("sudoers/dh-nginx has no rule for dh-nginx")
	return ""
}

// certRules derives dh-cert's drop-in from the shipped sudoers/dh-cert:
// the same regular expressions, with certtest's prefix instead of
// /usr/bin/certbot (env REQUESTS_CA_BUNDLE=PEBBLE-CA certbot --config-dir
// ... --work-dir ... --logs-dir ..., certbot's directories being the
// test's, not /etc/letsencrypt) and certtest's webroot; the aliases are
// renamed so as not to clash with an installed dh-cert drop-in.
func certRules(t *testing.T, ca *certtest.Server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sudoersD, "dh-cert"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := ca.Command(t)
	quoted := make([]string, len(prefix)-1)
	for i, a := range prefix[1:] {
		quoted[i] = ere(t, a)
	}
	// sudoers needs "=" escaped in a command's arguments.
	args := strings.ReplaceAll(strings.Join(quoted, " "), "=", `\=`)
	var out strings.Builder
	out.WriteString("# pkg/e2e: sudoers/dh-cert for certtest's certbot and pebble (removed afterwards)\n")
	n := 0
	for line := range strings.Lines(string(b)) {
		switch {
		case strings.HasPrefix(line, "Cmnd_Alias DH_CERTBOT_"):
			if !strings.Contains(line, "= /usr/bin/certbot ^") {
				t.Fatalf("sudoers/dh-cert: %q does not allow /usr/bin/certbot ^...: update this test", line)
			}
			line = strings.Replace(line, "/usr/bin/certbot ^", prefix[0]+" ^"+args+" ", 1)
			line = strings.Replace(line, "-w /var/lib/dh-deployer/acme", "-w "+ere(t, ca.Webroot), 1)
		case strings.HasPrefix(line, "dh-cert "):
		default:
			continue
		}
		out.WriteString(strings.ReplaceAll(line, "DH_CERTBOT_", "DH_E2E_CERTBOT_"))
		n++
	}
	if n != 3 {
		t.Fatalf("sudoers/dh-cert: found %d of the 3 lines (2 aliases, 1 rule) this test adapts", n)
	}
	return out.String()
}

// ere quotes s for a POSIX extended regular expression in sudoers, with
// bracket expressions rather than backslashes (which sudoers would want
// doubled); s must not hold spaces or characters a bracket cannot take.
func ere(t *testing.T, s string) string {
	t.Helper()
	if strings.ContainsAny(s, " \t\\^]") {
		t.Fatalf("cannot quote %q for a sudoers rule", s)
	}
	return regexp.MustCompile(`[.+*?()|{}$\[]`).ReplaceAllString(s, "[$0]")
}
