package cert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cert"
	"github.com/dh-deployer/dh-deployer/pkg/cert/certtest"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestCertonlyArgs(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{StateDir: "/var/lib/dh-deployer"}
	cfg.Cert.Authenticator = "webroot"
	got, err := cert.CertonlyArgs(cfg, "a.test", []string{"a.test", "www.a.test"})
	want := []string{"certonly", "--non-interactive", "--agree-tos", "--cert-name", "a.test",
		"--webroot", "-w", "/var/lib/dh-deployer/acme", "--register-unsafely-without-email",
		"-d", "a.test", "-d", "www.a.test", "--keep-until-expiring", "--expand"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("CertonlyArgs(webroot) = %q, %v; want %q", got, err, want)
	}
	cfg.Cert = config.Cert{Authenticator: "nginx", Email: "ops@a.test", Server: "https://acme.test/dir"}
	got, err = cert.CertonlyArgs(cfg, "a.test", []string{"a.test"})
	want = []string{"certonly", "--non-interactive", "--agree-tos", "--cert-name", "a.test", "--nginx",
		"--email", "ops@a.test", "--server", "https://acme.test/dir", "-d", "a.test", "--keep-until-expiring", "--expand"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("CertonlyArgs(nginx, email, server) = %q, %v; want %q", got, err, want)
	}

	cfg.Cert = config.Cert{Authenticator: "webroot"}
	for _, bad := range []struct {
		name    string
		domains []string
		cfg     config.Cert
		code    int
	}{
		{"../etc", []string{"a.test"}, cfg.Cert, sysexits.DataErr},
		{"a;id", []string{"a.test"}, cfg.Cert, sysexits.DataErr},
		{"-d", []string{"a.test"}, cfg.Cert, sysexits.DataErr},
		{"a.test", nil, cfg.Cert, sysexits.DataErr},
		{"a.test", []string{"a.test;id"}, cfg.Cert, sysexits.DataErr},
		{"a.test", []string{"--deploy-hook=/tmp/x"}, cfg.Cert, sysexits.DataErr},
		{"a.test", []string{"a .test"}, cfg.Cert, sysexits.DataErr},
		{"a.test", []string{"$(id).test"}, cfg.Cert, sysexits.DataErr},
		{"a.test", []string{"a.test"}, config.Cert{Authenticator: "webroot", Email: "--deploy-hook=x@y"}, sysexits.Config},
		{"a.test", []string{"a.test"}, config.Cert{Authenticator: "webroot", Server: "http://acme.test/dir"}, sysexits.Config},
		{"a.test", []string{"a.test"}, config.Cert{Authenticator: "webroot", Webroot: "/srv/a b"}, sysexits.Config},
		{"a.test", []string{"a.test"}, config.Cert{Authenticator: "manual"}, sysexits.Config},
	} {
		c := *cfg
		c.Cert = bad.cfg
		if got, err := cert.CertonlyArgs(&c, bad.name, bad.domains); err == nil || sysexits.Code(err) != bad.code {
			t.Errorf("CertonlyArgs(%+v, %q, %q) = %q, %v; want an error with exit code %d", bad.cfg, bad.name, bad.domains, got, err, bad.code)
		}
	}
}

// setup is one dh-cert installation in a temporary directory.
type setup struct {
	dir     string
	cfg     *config.Config
	st      *store.Store
	ca      *certtest.Server // nil: no ACME server
	webroot string
}

// newSetup writes a configuration whose certbot is ca's (it keeps
// everything under the test's directories and talks to ca's pebble), or,
// with a nil ca, /bin/true.
func newSetup(t *testing.T, ca *certtest.Server) *setup {
	t.Helper()
	dir := t.TempDir()
	command, server := []string{"/bin/true"}, ""
	webroot, live := filepath.Join(dir, "acme"), filepath.Join(dir, "le", "live")
	if ca != nil {
		command, server, webroot, live = ca.Certbot, ca.Directory, ca.Webroot, ca.Live
	}
	if err := os.MkdirAll(webroot, 0o755); err != nil {
		t.Fatal(err)
	}
	url := storetest.NewMigrated(t)
	cmd, _ := json.Marshal(command)
	toml := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q
[nginx]
cert_dir = %q
[cert]
command = %s
webroot = %q
server = %q
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), url, live, cmd, webroot, server)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	st, err := store.OpenCurrent(context.Background(), url)
	if err != nil {
		t.Fatalf("store.OpenCurrent: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	for _, q := range []string{config.CertQueue, config.NginxQueue} {
		if err := queue.Open(cfg.QueuePath(q)).Init(); err != nil {
			t.Fatal(err)
		}
	}
	return &setup{dir: dir, cfg: cfg, st: st, ca: ca, webroot: webroot}
}

func (s *setup) worker(t *testing.T, opts cert.Options) *cert.Worker {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	w, err := cert.New(s.cfg, s.st, opts)
	if err != nil {
		t.Fatalf("cert.New: %v", err)
	}
	return w
}

// request publishes a cert-request to queues/cert and returns its entry
// name.
func (s *setup) request(t *testing.T, name string, domains ...string) (string, event.NginxSites) {
	t.Helper()
	sites := event.NginxSites{Deployment: "sites", Commit: strings.Repeat("ab", 20), Delivery: "delivery-1",
		RequestedAt: time.Now().UTC().Truncate(time.Second)}
	data, err := (&event.CertRequest{Name: name, Domains: domains, For: sites, RequestedAt: time.Now().UTC()}).Encode()
	if err != nil {
		t.Fatalf("encode cert-request: %v", err)
	}
	return s.publishRaw(t, data), sites
}

func (s *setup) publishRaw(t *testing.T, data []byte) string {
	t.Helper()
	name, err := queue.Open(s.cfg.QueuePath(config.CertQueue)).Publish(data)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return name
}

// drain runs the cert queue's consumer until the queue is empty or an
// entry fails temporarily.
func drain(t *testing.T, w *cert.Worker) error {
	t.Helper()
	c, err := w.Queue().Lock(t.Context(), true)
	if err != nil {
		t.Fatalf("lock queue: %v", err)
	}
	defer c.Close()
	return c.RunBatch(context.Background(), w.HandleBatch, queue.Options{Once: true, NoNotify: true})
}

// entries returns the contents of the entries in the named queue.
func (s *setup) entries(t *testing.T, q string) [][]byte {
	t.Helper()
	qq := queue.Open(s.cfg.QueuePath(q))
	names, err := qq.List()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(qq.Dir(), n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func (s *setup) attempts(t *testing.T, name string) []store.CertAttempt {
	t.Helper()
	as, err := s.st.ListCertAttempts(context.Background(), name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// A cert-request obtains a real certificate from a local ACME server over
// a real http-01 validation and queues the waiting site's install; a
// renewal that is due renews it and queues an nginx reload.
func TestObtainAndRenew(t *testing.T) {
	t.Parallel()
	ca := certtest.Start(t)
	s := newSetup(t, ca)
	ca.ServeWebroot(t)
	w := s.worker(t, cert.Options{Env: ca.Env})
	ctx := context.Background()

	entry, sites := s.request(t, "site.test", "site.test", "www.site.test")
	if err := drain(t, w); err != nil {
		t.Fatalf("consume queues/cert = %v; want nil\ncertbot runs: %+v", err, s.attempts(t, ""))
	}
	leaf := certtest.ReadLeaf(t, ca.FullChain("site.test"))
	if !slices.Equal(sortedCopy(leaf.DNSNames), []string{"site.test", "www.site.test"}) {
		t.Errorf("certificate names = %q; want site.test, www.site.test", leaf.DNSNames)
	}
	if left := s.entries(t, config.CertQueue); len(left) != 0 {
		t.Errorf("queues/cert after success holds %d entries; want 0", len(left))
	}
	nginx := s.entries(t, config.NginxQueue)
	if len(nginx) != 1 {
		t.Fatalf("queues/nginx holds %d entries; want the nginx-sites entry", len(nginx))
	}
	got, err := event.DecodeNginxSites(nginx[0])
	if err != nil || got.Deployment != sites.Deployment || got.Commit != sites.Commit || got.Delivery != sites.Delivery ||
		!got.RequestedAt.Equal(sites.RequestedAt) {
		t.Errorf("queues/nginx entry = %+v, %v; want the request's For %+v", got, err, sites)
	}
	rec, err := s.st.GetCert(ctx, "site.test")
	if err != nil || rec.State != store.CertIssued || rec.Entry != entry || rec.IssuedAt.IsZero() {
		t.Errorf("GetCert(site.test) = %+v, %v; want issued for entry %s", rec, err, entry)
	}
	if !rec.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("GetCert(site.test).NotAfter = %v; want the certificate's NotAfter %v", rec.NotAfter, leaf.NotAfter)
	}
	if as := s.attempts(t, "site.test"); len(as) != 1 || !as[0].OK {
		t.Errorf("certbot runs = %+v; want one successful", as)
	}

	// Not due: nothing renewed, nothing reloaded; the expiry is read
	// again all the same (a certificate certbot renewed on its own).
	if _, err := s.st.SetCertExpiry(ctx, "site.test", time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	changed, err := w.Renew(ctx)
	if err != nil || len(changed) != 0 {
		t.Errorf("Renew() with nothing due = %q, %v; want nothing, nil", changed, err)
	}
	if rec, err := s.st.GetCert(ctx, "site.test"); err != nil || !rec.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("GetCert(site.test).NotAfter after a renew = %v, %v; want the certificate's NotAfter %v", rec.NotAfter, err, leaf.NotAfter)
	}
	if n := len(s.entries(t, config.NginxQueue)); n != 1 {
		t.Errorf("queues/nginx after a renewal of nothing holds %d entries; want 1", n)
	}

	// Due: the certificate's own renewal configuration says to renew 100
	// days before expiry, and pebble's certificates last 90 days.
	ca.MakeDue(t, "site.test")
	changed, err = w.Renew(ctx)
	if err != nil || !slices.Equal(changed, []string{"site.test"}) {
		t.Fatalf("Renew() with site.test due = %q, %v; want [site.test], nil", changed, err)
	}
	renewed := certtest.ReadLeaf(t, ca.FullChain("site.test"))
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("fullchain.pem after renewal has the old serial %v", leaf.SerialNumber)
	}
	if rec, err := s.st.GetCert(ctx, "site.test"); err != nil || !rec.NotAfter.Equal(renewed.NotAfter) || renewed.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("GetCert(site.test).NotAfter after the renewal = %v, %v; want the new certificate's NotAfter %v (the old one's: %v)",
			rec.NotAfter, err, renewed.NotAfter, leaf.NotAfter)
	}
	nginx = s.entries(t, config.NginxQueue)
	if len(nginx) != 2 {
		t.Fatalf("queues/nginx after the renewal holds %d entries; want 2", len(nginx))
	}
	reload, err := event.DecodeNginxReload(nginx[1])
	if err != nil || !strings.Contains(reload.Reason, "site.test") {
		t.Errorf("queues/nginx second entry = %+v, %v; want an nginx-reload naming site.test", reload, err)
	}
	if as := s.attempts(t, ""); len(as) != 3 || as[0].Command != store.CertCommandRenew || !as[0].OK ||
		!slices.Equal(as[0].Domains, []string{"site.test"}) {
		t.Errorf("certbot runs = %+v; want the renewal of site.test last", as)
	}
}

// A renewal whose nginx reload was never queued (here certbot renewed on
// its own, as when dh-cert is killed or the power is cut between certbot
// and the publish) is reloaded by the next renew, although that renew
// renews nothing.
func TestRenewQueuesAMissedReload(t *testing.T) {
	t.Parallel()
	ca := certtest.Start(t)
	s := newSetup(t, ca)
	ca.ServeWebroot(t)
	w := s.worker(t, cert.Options{Env: ca.Env})
	ctx := context.Background()
	s.request(t, "site.test", "site.test")
	if err := drain(t, w); err != nil {
		t.Fatalf("consume queues/cert = %v; want nil", err)
	}
	if changed, err := w.Renew(ctx); err != nil || len(changed) != 0 {
		t.Fatalf("Renew() with nothing due = %q, %v; want nothing, nil", changed, err)
	}

	conf := filepath.Join(ca.ConfigDir, "renewal", "site.test.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	old := certtest.ReadLeaf(t, ca.FullChain("site.test"))
	ca.MakeDue(t, "site.test")
	argv := append(append([]string{}, ca.Certbot...), cert.RenewArgs()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), ca.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("certbot renew = %v\n%s", err, out)
	}
	if certtest.ReadLeaf(t, ca.FullChain("site.test")).SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("certbot renew did not renew site.test")
	}
	if err := os.WriteFile(conf, orig, 0o644); err != nil { // no longer due
		t.Fatal(err)
	}
	before := len(s.entries(t, config.NginxQueue))

	changed, err := w.Renew(ctx)
	if err != nil || !slices.Equal(changed, []string{"site.test"}) {
		t.Fatalf("Renew() after a renewal it did not see = %q, %v; want [site.test], nil", changed, err)
	}
	nginx := s.entries(t, config.NginxQueue)
	if len(nginx) != before+1 {
		t.Fatalf("queues/nginx holds %d entries; want %d (an nginx-reload)", len(nginx), before+1)
	}
	if e, err := event.DecodeNginxReload(nginx[len(nginx)-1]); err != nil || !strings.Contains(e.Reason, "site.test") {
		t.Errorf("queues/nginx last entry = %+v, %v; want an nginx-reload naming site.test", e, err)
	}
	// Queued once: the renew after it has nothing to reload.
	if changed, err := w.Renew(ctx); err != nil || len(changed) != 0 {
		t.Errorf("Renew() once more = %q, %v; want nothing, nil", changed, err)
	}
}

// A request whose validation fails records certbot's message and waits
// for its next try without running certbot again, while the requests
// behind it go ahead; after MaxAttempts failures it goes to failed/.
func TestFailureBacksOff(t *testing.T) {
	t.Parallel()
	ca := certtest.Start(t)
	s := newSetup(t, ca)
	ca.ServeWebroot(t)
	ctx := context.Background()
	hour := func(int) time.Duration { return time.Hour }
	w := s.worker(t, cert.Options{Env: ca.Env, Backoff: hour, MaxAttempts: 2})

	// The test's DNS server knows no address for down.test: its
	// validation fails. ok.test, queued after it, validates.
	down, _ := s.request(t, "down.test", "down.test")
	s.request(t, "ok.test", "ok.test")
	err := drain(t, w)
	if !queue.IsRetry(err) || !strings.Contains(err.Error(), "down.test") {
		t.Fatalf("consume queues/cert with down.test failing = %v; want a Retry for down.test", err)
	}
	rec, gerr := s.st.GetCert(ctx, "down.test")
	if gerr != nil || rec.State != store.CertWaiting || rec.Attempts != 1 || rec.Entry != down ||
		time.Until(rec.NextTry) < 59*time.Minute || !strings.Contains(rec.LastError, "Detail:") {
		t.Fatalf("GetCert(down.test) = %+v, %v; want waiting, 1 attempt, next try in an hour, certbot's output", rec, gerr)
	}
	t.Logf("recorded failure: %s", firstLine(rec.LastError))
	certtest.ReadLeaf(t, ca.FullChain("ok.test"))
	if n := len(s.entries(t, config.NginxQueue)); n != 1 {
		t.Errorf("queues/nginx holds %d entries; want ok.test's site install", n)
	}
	if n := len(s.entries(t, config.CertQueue)); n != 2 {
		t.Errorf("queues/cert holds %d entries; want both, until down.test leaves", n)
	}

	// Retrying before the next try runs no certbot and queues nothing
	// twice.
	for range 3 {
		if err := drain(t, w); !queue.IsRetry(err) || !strings.Contains(err.Error(), "next try") {
			t.Errorf("consume again before the next try = %v; want a Retry naming the next try", err)
		}
	}
	if as := s.attempts(t, "down.test"); len(as) != 1 || as[0].OK || as[0].ExitCode == nil || *as[0].ExitCode == 0 {
		t.Errorf("certbot runs for down.test = %+v; want one failed run", as)
	}
	if as := s.attempts(t, "ok.test"); len(as) != 1 || !as[0].OK {
		t.Errorf("certbot runs for ok.test = %+v; want one successful run", as)
	}
	if n := len(s.entries(t, config.NginxQueue)); n != 1 {
		t.Errorf("queues/nginx holds %d entries after the retries; want 1", n)
	}

	// Once the next try has come, the second failure is the last.
	rec.NextTry = time.Now().Add(-time.Second)
	if err := s.st.PutCert(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := drain(t, w); err != nil {
		t.Fatalf("consume at the last attempt = %v; want nil (down.test moved to failed/)", err)
	}
	q := queue.Open(s.cfg.QueuePath(config.CertQueue))
	if failed, _ := q.Failed(); len(failed) != 1 || failed[0] != down {
		t.Errorf("queues/cert/failed = %q; want [%s]", failed, down)
	}
	if why, err := q.ReadFailure(down); err != nil || !strings.Contains(why.Error, "attempt 2 of 2") {
		t.Errorf("failure sidecar = %+v, %v; want the certbot failure, attempt 2 of 2", why, err)
	}
	if left, _ := q.List(); len(left) != 0 {
		t.Errorf("queues/cert holds %q; want nothing (ok.test done, down.test failed)", left)
	}
	rec, err = s.st.GetCert(ctx, "down.test")
	if err != nil || rec.State != store.CertFailed || rec.Attempts != 2 {
		t.Errorf("GetCert(down.test) = %+v, %v; want failed after 2 attempts", rec, err)
	}
	if n := len(s.attempts(t, "down.test")); n != 2 {
		t.Errorf("certbot ran %d times for down.test; want 2", n)
	}
	if as := s.attempts(t, "ok.test"); len(as) != 1 {
		t.Errorf("certbot ran %d times for ok.test; want 1", len(as))
	}
	if n := len(s.entries(t, config.NginxQueue)); n != 1 {
		t.Errorf("queues/nginx holds %d entries; want only ok.test's", n)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Entries with a bad certificate name or domain go to failed/ and never
// reach certbot; a good entry after them does.
func TestBadRequestsNeverReachCertbot(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	marker := filepath.Join(s.dir, "calls")
	fake := filepath.Join(s.dir, "certbot")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + marker + "\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.cfg.Cert.Command = []string{fake}
	w := s.worker(t, cert.Options{})

	sites := `{"deployment":"sites","commit":"` + strings.Repeat("ab", 20) + `","delivery":"d1","requested_at":"2026-01-01T00:00:00Z"}`
	bad := []struct{ name, domains string }{
		{`../../etc`, `["a.test"]`},
		{`a;id`, `["a.test"]`},
		{`--deploy-hook=x`, `["a.test"]`},
		{`a.test`, `["a.test;id"]`},
		{`a.test`, `["a.test", "$(id).test"]`},
		{`a.test`, `["a .test"]`},
		{`a.test`, `["-d"]`},
		{`a.test`, `["--deploy-hook=/tmp/x"]`},
		{`a.test`, `["..",  "a.test"]`},
		{`a.test`, `[]`},
	}
	for _, b := range bad {
		name, _ := json.Marshal(b.name)
		s.publishRaw(t, []byte(`{"version":1,"kind":"cert-request","name":`+string(name)+`,"domains":`+b.domains+
			`,"for":`+sites+`,"requested_at":"2026-01-01T00:00:00Z"}`))
	}
	s.request(t, "good.test", "good.test")
	if err := drain(t, w); err != nil {
		t.Fatalf("consume = %v; want nil", err)
	}
	failed, _ := queue.Open(s.cfg.QueuePath(config.CertQueue)).Failed()
	if len(failed) != len(bad) {
		t.Errorf("queues/cert/failed holds %d entries; want %d", len(failed), len(bad))
	}
	calls, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("certbot never ran: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	want := "certonly --non-interactive --agree-tos --cert-name good.test --webroot -w " + s.webroot +
		" --register-unsafely-without-email -d good.test --keep-until-expiring --expand"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("certbot calls = %q; want only %q", lines, want)
	}
	if as := s.attempts(t, ""); len(as) != 1 || as[0].Name != "good.test" {
		t.Errorf("certbot runs recorded = %+v; want only good.test's", as)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
