package nginx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// rig is a private nginx master on 127.0.0.1 (nginxtest), a checkout that
// is a real git repository, a configuration and a database.
type rig struct {
	t        *testing.T
	srv      *nginxtest.Server
	dir      string // the nginx prefix: nginx.conf, conf.d, snippets, certs
	checkout string
	port     int // plain HTTP
	tlsPort  int
	cfg      *config.Config
	st       *store.Store
	url      string
	in       *Installer
}

// newRig starts nginx and writes a configuration whose deployment "sites"
// has the given site rules (a TOML array) and domains = ["*.test"].
func newRig(t *testing.T, rules string) *rig { return newPolicyRig(t, rules, "") }

// newPolicyRig is newRig with more keys of the deployment "sites" (TOML
// lines: serve, upstreams, ...).
func newPolicyRig(t *testing.T, rules, policy string) *rig {
	t.Helper()
	t.Parallel()
	testenv.Command(t, "git")
	srv := nginxtest.Start(t, nginxtest.Options{})
	r := &rig{t: t, srv: srv, dir: srv.Dir, port: srv.Port, tlsPort: testenv.FreePort(t)}
	for _, d := range []string{"certs", "checkout"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.checkout = filepath.Join(r.dir, "checkout")

	r.url = storetest.NewMigrated(t)
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

%s
[deployments.sites]
kind = "nginx"
repository = "acme/nginx"
branches = ["main"]
path = %q
user = "daemon"
sites = %s
domains = ["*.test"]
%s`, filepath.Join(r.dir, "queues"), filepath.Join(r.dir, "state"), r.url,
		srv.NginxTable(filepath.Join(r.dir, "certs")), r.checkout, rules, policy)
	file := filepath.Join(r.dir, "config.toml")
	r.write(file, doc)
	var err error
	if r.cfg, err = config.Load(file); err != nil {
		t.Fatalf("config.Load() = %v\n%s", err, doc)
	}
	if r.st, err = store.Open(context.Background(), r.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.in = New(r.cfg, r.st, Options{WaitLock: true, CertUser: "bin"})
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *rig) write(path, content string) {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) git(args ...string) string {
	r.t.Helper()
	return testenv.Git(r.t, r.checkout, args...)
}

// commit changes the checkout's files (path → content; "" deletes),
// commits them and returns the nginx-sites entry of the commit.
func (r *rig) commit(files map[string]string) *event.NginxSites {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.checkout, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		r.write(p, content)
	}
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", "change")
	e := &event.NginxSites{Deployment: "sites", Commit: r.git("rev-parse", "HEAD"), Delivery: "d-" + r.git("rev-parse", "--short", "HEAD"),
		RequestedAt: time.Now()}
	e.RunID = r.run(e, store.RunSucceeded)
	return e
}

// run records a run of deployment sites at e's commit in state, as
// dh-deploy does (its history is what dh-nginx trusts), and returns its id.
func (r *rig) run(e *event.NginxSites, state string) int64 {
	r.t.Helper()
	id, err := r.st.InsertRun(context.Background(), store.Run{Delivery: fmt.Sprintf("%s-%s-%d", e.Delivery, state, time.Now().UnixNano()), Deployment: "sites",
		Ref: "refs/heads/main", Commit: e.Commit, State: store.RunRunning, StartedAt: time.Now()})
	if err == nil && state != store.RunRunning {
		err = r.st.FinishRun(context.Background(), id, store.RunResult{State: state})
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

// entry writes an entry as a file owned by uid, as the queue hands it to
// Handle.
func (r *rig) entry(data []byte, uid int) *queue.Entry {
	r.t.Helper()
	dir := filepath.Join(r.dir, "entries")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "*.json")
	if err != nil {
		r.t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	if err := os.Chown(f.Name(), uid, uid); err != nil {
		r.t.Fatal(err)
	}
	return &queue.Entry{Name: filepath.Base(f.Name()), Path: f.Name(), Data: data, Owner: uid}
}

// site is a plain HTTP site answering body.
func (r *rig) site(names, body string) string {
	return fmt.Sprintf("# a site\nserver {\n    listen 127.0.0.1:%d;\n    server_name %s;\n    return 200 \"%s\";\n}\n", r.port, names, body)
}

// tlsSite is an HTTPS site whose certificate is certs/NAME.
func (r *rig) tlsSite(name, names, body string) string {
	return fmt.Sprintf(`server {
    listen 127.0.0.1:%d ssl;
    server_name %s;
    ssl_certificate %s/certs/%s/fullchain.pem;
    ssl_certificate_key %s/certs/%s/privkey.pem;
    return 200 "%s";
}
`, r.tlsPort, names, r.dir, name, r.dir, name, body)
}

// waitHTTP waits until nginx serves want for host (a reload is
// asynchronous), and fails the test if it does not within 5 s.
func (r *rig) waitHTTP(host, want string) {
	r.t.Helper()
	r.srv.WaitHTTP(r.t, host, want)
}

// confFiles returns the files of conf.d and snippets with their content.
func (r *rig) confFiles() map[string]string {
	r.t.Helper()
	m := map[string]string{}
	for _, d := range []string{"conf.d", "snippets"} {
		entries, err := os.ReadDir(filepath.Join(r.dir, d))
		if err != nil {
			r.t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(r.dir, d, e.Name()))
			if err != nil {
				r.t.Fatal(err)
			}
			m[d+"/"+e.Name()] = string(b)
		}
	}
	return m
}

// makeCert writes a self-signed certificate for the names as
// certs/NAME/fullchain.pem and privkey.pem and returns its DER bytes.
func (r *rig) makeCert(name string, names ...string) []byte {
	r.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		r.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		r.t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		r.t.Fatal(err)
	}
	dir := filepath.Join(r.dir, "certs", name)
	r.write(filepath.Join(dir, "fullchain.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	r.write(filepath.Join(dir, "privkey.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})))
	return der
}

// lastInstall returns the newest nginx_installs row.
func (r *rig) lastInstall() store.NginxInstall {
	r.t.Helper()
	rows, err := r.st.NginxInstalls(context.Background(), "", 1)
	if err != nil || len(rows) != 1 {
		r.t.Fatalf("NginxInstalls() = %v, %v; want one row", rows, err)
	}
	return rows[0]
}
