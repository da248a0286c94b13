package cert_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cert/certtest"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The whole path of a TLS site, with the real binaries, a real nginx, real
// certbot and a local ACME server: dh-nginx holds the site back and asks
// for its certificate; dh-cert obtains it from pebble, whose http-01
// validation nginx itself answers from the webroot (the production shape),
// and hands the site back; dh-nginx installs it and nginx serves exactly
// that certificate over HTTPS. Then the certificate falls due, dh-cert
// renew renews it and queues a reload, and after dh-nginx handles that
// nginx serves the new certificate.
func TestSiteCertificateEndToEnd(t *testing.T) { siteCertificate(t, false) }

// TestSiteCertificateThroughRootCommand is TestSiteCertificateEndToEnd the
// way a systemd host runs certbot: dh-cert writes its request and runs
// cert.request_command, which stands for `systemctl start
// dh-certbot.service`: the real `dh-cert certbot` with its output in
// cert.request_output, and a one-line "failed" from the command itself.
func TestSiteCertificateThroughRootCommand(t *testing.T) { siteCertificate(t, true) }

func siteCertificate(t *testing.T, viaRequest bool) {
	t.Parallel()
	dhNginx, dhCert := testenv.Build(t, "dh-nginx"), testenv.Build(t, "dh-cert")
	ca := certtest.Start(t)
	srv := nginxtest.Start(t, nginxtest.Options{Port: ca.HTTPPort, ACMEWebroot: ca.Webroot})
	tlsPort := testenv.FreePort(t)
	dir := t.TempDir()

	// The nginx configuration repository, checked out detached at a
	// commit as dh-deploy leaves it.
	checkout := filepath.Join(dir, "checkout")
	site := fmt.Sprintf(`server {
    listen 127.0.0.1:%d ssl;
    server_name app.test;
    ssl_certificate %[2]s/app.test/fullchain.pem;
    ssl_certificate_key %[2]s/app.test/privkey.pem;
    return 200 "tls ok";
}
`, tlsPort, ca.Live)
	if err := os.MkdirAll(filepath.Join(checkout, "production"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(checkout, "production", "app.test.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	gitc := func(args ...string) string { return testenv.Git(t, checkout, args...) }
	gitc("init", "-q", "-b", "main")
	gitc("add", "-A")
	gitc("commit", "-q", "-m", "app.test over TLS")
	sha := gitc("rev-parse", "HEAD")
	gitc("checkout", "-q", "--detach", sha)

	cfgFile := filepath.Join(dir, "config.toml")
	certbot := "command = " + config.TOMLArray(ca.Command(t))
	if viaRequest {
		// The unit's environment may name the CA bundle; dh-cert certbot
		// passes it on.
		wrapper := filepath.Join(dir, "certbot")
		script := "#!/bin/sh\nexec " + strings.Join(ca.Certbot, " ") + " \"$@\"\n"
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "certbot.log")
		unit := fmt.Sprintf(`%s %s -c %s certbot >%s 2>&1 || { echo "Job for dh-certbot.service failed." >&2; exit 1; }`,
			strings.Join(ca.Env, " "), dhCert, cfgFile, out)
		certbot = fmt.Sprintf("request_command = %s\nrequest_output = %q\ncertbot = %q",
			config.TOMLArray([]string{"/bin/sh", "-c", unit}), out, wrapper)
	}
	dbURL := storetest.NewMigrated(t)
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

%s
[cert]
%s
webroot = %q
server = %q

[deployments.app]
kind = "nginx"
repository = "acme/nginx"
branches = ["main"]
path = %q
sites = [{ rule = "include", select = ["*"] }]
domains = ["*.test"]
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), dbURL,
		srv.NginxTable(ca.Live), certbot, ca.Webroot, ca.Directory, checkout)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatalf("config.Load() = %v\n%s", err, doc)
	}
	nginxQ, certQ := queue.Open(cfg.QueuePath(config.NginxQueue)), queue.Open(cfg.QueuePath(config.CertQueue))
	for _, q := range []*queue.Queue{nginxQ, certQ} {
		if err := q.Init(); err != nil {
			t.Fatal(err)
		}
	}

	// tool runs one of the binaries with the configuration and fails the
	// test unless it exits 0 within 2 minutes.
	tool := func(bin string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-c", cfgFile}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
		t.Logf("%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	}
	// entries returns the entries waiting in q.
	entries := func(q *queue.Queue) [][]byte {
		t.Helper()
		names, err := q.List()
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(q.Dir(), n))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	installed := filepath.Join(srv.ConfDir, "app.test.conf")

	// 1. dh-nginx holds the TLS site back and asks for its certificate.
	push, err := (&event.NginxSites{Deployment: "app", Commit: sha, Delivery: "d-1", RequestedAt: time.Now().UTC(),
		RunID: storetest.Deployed(t, dbURL, "app", sha)}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nginxQ.Publish(push); err != nil {
		t.Fatal(err)
	}
	tool(dhNginx, "run", "--once")
	if _, err := os.Stat(installed); !os.IsNotExist(err) {
		t.Fatalf("dh-nginx installed app.test before its certificate existed (stat: %v)", err)
	}
	if left := entries(nginxQ); len(left) != 0 {
		t.Errorf("queues/nginx after dh-nginx holds %d entries; want 0", len(left))
	}
	reqs := entries(certQ)
	if len(reqs) != 1 {
		t.Fatalf("queues/cert holds %d entries; want one cert-request", len(reqs))
	}
	cr, err := event.DecodeCertRequest(reqs[0])
	if err != nil || cr.Name != "app.test" || !slices.Equal(cr.Domains, []string{"app.test"}) ||
		cr.For.Deployment != "app" || cr.For.Commit != sha {
		t.Fatalf("cert-request = %+v, %v; want app.test [app.test] for app at %s", cr, err, sha)
	}

	// 2. dh-cert obtains it: pebble validates http-01 against the private
	// nginx, which serves the webroot; the site's entry comes back.
	tool(dhCert, "run", "--once")
	if left := entries(certQ); len(left) != 0 {
		t.Errorf("queues/cert after dh-cert holds %d entries; want 0", len(left))
	}
	back := entries(nginxQ)
	if len(back) != 1 {
		t.Fatalf("queues/nginx after dh-cert holds %d entries; want the nginx-sites entry back", len(back))
	}
	if got, err := event.DecodeNginxSites(back[0]); err != nil || got.Deployment != "app" || got.Commit != sha {
		t.Fatalf("queues/nginx entry = %+v, %v; want nginx-sites for app at %s", got, err, sha)
	}
	first := certtest.ReadLeaf(t, ca.FullChain("app.test"))
	if !slices.Equal(first.DNSNames, []string{"app.test"}) {
		t.Errorf("certificate names = %q; want [app.test]", first.DNSNames)
	}

	// 3. dh-nginx installs the site; nginx serves it with that
	// certificate, which verifies against pebble's root for app.test.
	tool(dhNginx, "run", "--once")
	if got, err := os.ReadFile(installed); err != nil || string(got) != site {
		t.Fatalf("installed %s = %q, %v; want the site from the repository", installed, got, err)
	}
	if left := entries(nginxQ); len(left) != 0 {
		t.Errorf("queues/nginx after the install holds %d entries; want 0", len(left))
	}
	roots := ca.Roots(t)
	waitServes(t, srv, tlsPort, roots, first)

	// 4. The certificate falls due; dh-cert renew renews it and queues a
	// reload, and until dh-nginx handles that, nginx keeps the old one.
	ca.MakeDue(t, "app.test")
	tool(dhCert, "renew")
	renewed := certtest.ReadLeaf(t, ca.FullChain("app.test"))
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || slices.Equal(renewed.Raw, first.Raw) {
		t.Fatalf("after renew fullchain.pem still holds the first certificate (serial %v)", first.SerialNumber)
	}
	reloads := entries(nginxQ)
	if len(reloads) != 1 {
		t.Fatalf("queues/nginx after renew holds %d entries; want one nginx-reload", len(reloads))
	}
	if r, err := event.DecodeNginxReload(reloads[0]); err != nil || !strings.Contains(r.Reason, "app.test") {
		t.Fatalf("queues/nginx entry = %+v, %v; want an nginx-reload naming app.test", r, err)
	}
	waitServes(t, srv, tlsPort, roots, first)

	// 5. dh-nginx reloads; nginx serves the renewed certificate.
	tool(dhNginx, "run", "--once")
	if left := entries(nginxQ); len(left) != 0 {
		t.Errorf("queues/nginx after the reload holds %d entries; want 0", len(left))
	}
	waitServes(t, srv, tlsPort, roots, renewed)
}

// waitServes waits up to 5 s (a reload is asynchronous) until an HTTPS
// request for app.test on 127.0.0.1:port answers "tls ok" over a chain
// that verifies against roots and whose leaf is exactly want.
func waitServes(t *testing.T, srv *nginxtest.Server, port int, roots *x509.CertPool, want *x509.Certificate) {
	t.Helper()
	var body string
	var chain []*x509.Certificate
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		body, chain, err = nginxtest.HTTPS(port, "app.test", roots)
		if err == nil && body == "tls ok" && len(chain) > 0 && slices.Equal(chain[0].Raw, want.Raw) {
			return
		}
	}
	served := "none"
	if len(chain) > 0 {
		served = fmt.Sprintf("serial %v", chain[0].SerialNumber)
	}
	t.Fatalf("GET https://app.test:%d/ = %q, %v, certificate %s; want \"tls ok\" with serial %v\nerror.log:\n%s",
		port, body, err, served, want.SerialNumber, srv.ErrorLog())
}
