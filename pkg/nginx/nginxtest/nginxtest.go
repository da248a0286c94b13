// Package nginxtest starts a private nginx master for tests, as
// pkg/store/storetest starts a PostgreSQL: the real nginx program, its own
// prefix directory and configuration, listening only on 127.0.0.1, killed
// with its workers when the test ends (and by the kernel if the test binary
// dies: Pdeathsig).
//
// Its nginx.conf has one default server on Port, answering 404 "none" to
// every host no site claims (and, with Options.ACMEWebroot, serving the
// ACME webroot as docs/cert.md tells operators to), and includes
// ConfDir/*.conf: a test installs sites there, checks them with
// TestCommand and applies them with ReloadCommand, exactly the commands
// dh-nginx's configuration takes.
//
// When the test runs as root, nginx's workers run as nobody: whatever they
// serve from disk (the webroot) must be readable by nobody, every directory
// above it included.
package nginxtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// Options change the configuration Start writes.
type Options struct {
	// Port is the default server's plain HTTP port on 127.0.0.1; 0 picks a
	// free one. A test whose ACME server validates http-01 challenges on a
	// given port passes that port.
	Port int

	// ACMEWebroot, if not empty, is served by the default server under
	// /.well-known/acme-challenge/ (location ^~ ... { root ACMEWebroot; }),
	// so certbot's webroot authenticator works through this nginx.
	ACMEWebroot string

	// Dir, if not empty, is the prefix directory (made if missing)
	// instead of a new t.TempDir, e.g. DH_ROOT/etc/nginx for a test that
	// grants dh-nginx its rights with acl/dh-deployer-acl nginx. The
	// caller removes it.
	Dir string
}

// Server is a running nginx master.
type Server struct {
	Dir         string // the prefix: nginx.conf, error.log, nginx.pid, conf.d, snippets, tmp
	Conf        string // Dir/nginx.conf
	ConfDir     string // Dir/conf.d; nginx includes ConfDir/*.conf
	SnippetsDir string // Dir/snippets, for sites that include snippets
	Port        int    // the default server's plain HTTP port on 127.0.0.1
	Nginx       string // the absolute path of the nginx program
}

// Start writes a configuration into a new temporary directory, starts nginx
// in the foreground and returns once it answers on Port. It fails the test
// if nginx is missing or does not answer within 5 s.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{Dir: opts.Dir, Port: opts.Port, Nginx: testenv.Command(t, "nginx")}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	if s.Port == 0 {
		s.Port = testenv.FreePort(t)
	}
	s.Conf = filepath.Join(s.Dir, "nginx.conf")
	s.ConfDir = filepath.Join(s.Dir, "conf.d")
	s.SnippetsDir = filepath.Join(s.Dir, "snippets")
	for _, d := range []string{s.ConfDir, s.SnippetsDir, filepath.Join(s.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// nginx's workers run as nobody when the master is root: they must
	// reach the prefix.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	acme := ""
	if opts.ACMEWebroot != "" {
		acme = fmt.Sprintf("        location ^~ /.well-known/acme-challenge/ { root %s; default_type text/plain; }\n", opts.ACMEWebroot)
	}
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/error.log;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server {
        listen 127.0.0.1:%[2]d default_server;
%[3]s        location / { return 404 "none"; }
    }
    include %[1]s/conf.d/*.conf;
}
`, s.Dir, s.Port, acme)
	if err := os.WriteFile(s.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.Nginx, "-p", s.Dir+"/", "-c", s.Conf, "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx error.log:\n%s%s", tail(s.ErrorLog(), 4000), out)
		}
	})
	s.WaitHTTP(t, "none.test", "none")
	return s
}

// Command is the nginx argv that acts on this master (nginx -p DIR/ -c
// DIR/nginx.conf ARGS...).
func (s *Server) Command(args ...string) []string {
	return append([]string{s.Nginx, "-p", s.Dir + "/", "-c", s.Conf}, args...)
}

// TestCommand is `nginx -t` for this master: dh-nginx's test_command.
func (s *Server) TestCommand() []string { return s.Command("-t") }

// ReloadCommand is `nginx -s reload` for this master: dh-nginx's
// reload_command.
func (s *Server) ReloadCommand() []string { return s.Command("-s", "reload") }

// NginxTable is the [nginx] table of a configuration that installs into
// this master, with certificates in certDir.
func (s *Server) NginxTable(certDir string) string {
	return fmt.Sprintf("[nginx]\nconf_dir = %q\nsnippets_dir = %q\ncert_dir = %q\ntest_command = %s\nreload_command = %s\n",
		s.ConfDir, s.SnippetsDir, certDir, config.TOMLArray(s.TestCommand()), config.TOMLArray(s.ReloadCommand()))
}

// ErrorLog returns the content of nginx's error.log.
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	return string(b)
}

// Get returns the body nginx serves over plain HTTP on Port for host (the
// Host header), or "error: ..." when the request fails.
func (s *Server) Get(host string) string {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", s.Port), nil)
	if err != nil {
		return "error: " + err.Error()
	}
	req.Host = host
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// WaitHTTP waits until nginx serves want for host on Port (a reload is
// asynchronous), and fails the test if it does not within 5 s.
func (s *Server) WaitHTTP(t testing.TB, host, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = s.Get(host); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET http://%s/ = %q; want %q\nerror.log:\n%s", host, got, want, tail(s.ErrorLog(), 4000))
}

// HTTPS makes a GET request for https://host:port/ to 127.0.0.1:port, with
// SNI and Host host, on a new connection, and returns the body and the
// certificate chain nginx presented. With roots, the chain must verify
// against them for host; with nil roots it is not verified.
func HTTPS(port int, host string, roots *x509.CertPool) (string, []*x509.Certificate, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: roots == nil},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("https://%s/", net.JoinHostPort(host, strconv.Itoa(port))))
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.TLS == nil {
		return "", nil, fmt.Errorf("no TLS connection state")
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), resp.TLS.PeerCertificates, fmt.Errorf("status %s", resp.Status)
	}
	return string(b), resp.TLS.PeerCertificates, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
