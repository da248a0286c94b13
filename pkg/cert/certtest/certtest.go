// Package certtest gives tests a real ACME server and a real certbot, as
// pkg/store/storetest gives them a PostgreSQL: pebble (the ACME test server
// of Let's Encrypt) on 127.0.0.1 with real validation, and certbot run
// directly (the tests run as root) with all its directories under the
// test's own, so nothing touches /etc/letsencrypt.
//
// pebble resolves names through a small DNS server of the test that answers
// 127.0.0.1 for every name except those whose first label is "down" (which
// have no address, so their validation fails), and fetches http-01
// challenges from 127.0.0.1:HTTPPort. Something must serve Webroot there:
// ServeWebroot (a Go file server), or an nginx whose default server serves
// it (nginxtest.Options{Port: HTTPPort, ACMEWebroot: Webroot}), as in
// production.
//
// Start needs pebble (go install github.com/letsencrypt/pebble/v2/cmd/pebble,
// `make deps`) and its module's test certificates in the module cache.
package certtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// PebbleVersion is the pebble module whose test certificates Start uses
// (its TLS certificate for localhost and the minica that signed it).
const PebbleVersion = "v2.10.1"

// Server is a running pebble and a certbot set up to use it.
type Server struct {
	Directory string   // the ACME directory URL, https://localhost:PORT/dir
	Env       []string // certbot's environment: REQUESTS_CA_BUNDLE, so certbot trusts Directory
	HTTPPort  int      // the port of 127.0.0.1 where pebble's http-01 validations connect

	Dir       string   // the test's directory (searchable by every user), holding the others
	ConfigDir string   // certbot's --config-dir (its /etc/letsencrypt)
	Live      string   // ConfigDir/live: where certbot links NAME/fullchain.pem (dh-nginx's cert_dir)
	Webroot   string   // the webroot authenticator's directory, readable by every user
	Certbot   []string // certbot --config-dir ... --work-dir ... --logs-dir ..., all under Dir

	mgmt  int // pebble's management port
	minca string
}

// Start starts pebble and returns once it listens. Everything stops and is
// removed when the test ends; if the test failed, the end of pebble's log
// is logged.
func Start(t testing.TB) *Server {
	t.Helper()
	pebble := testenv.Command(t, "pebble")
	certbot := testenv.Command(t, "certbot")
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "github.com", "letsencrypt", "pebble", "v2@"+PebbleVersion, "test", "certs")
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("pebble's test certificates: %v (run: make deps)", err)
	}

	// A short directory under /tmp rather than t.TempDir, whose parent is
	// private: nginx's workers (nobody) must reach the webroot.
	dir := testenv.ShortTempDir(t, "certtest")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Dir:       dir,
		ConfigDir: filepath.Join(dir, "le"),
		Webroot:   filepath.Join(dir, "acme"),
		minca:     filepath.Join(src, "pebble.minica.pem"),
	}
	s.Live = filepath.Join(s.ConfigDir, "live")
	s.Certbot = []string{certbot, "--config-dir", s.ConfigDir,
		"--work-dir", filepath.Join(s.ConfigDir, "work"), "--logs-dir", filepath.Join(s.ConfigDir, "logs")}
	s.Env = []string{"REQUESTS_CA_BUNDLE=" + s.minca}
	for _, d := range []string{s.ConfigDir, s.Webroot, filepath.Join(dir, "pebble")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	listen, tlsPort := testenv.FreePort(t), testenv.FreePort(t)
	s.mgmt, s.HTTPPort = testenv.FreePort(t), testenv.FreePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", s.mgmt),
		"certificate":                    filepath.Join(src, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(src, "localhost", "key.pem"),
		"httpPort":                       s.HTTPPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": 7776000, // 90 days, as Let's Encrypt
		}},
	}}
	b, _ := json.Marshal(conf)
	confPath := filepath.Join(dir, "pebble", "pebble.json")
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "pebble", "pebble.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(pebble, "-config", confPath, "-dnsserver", startDNS(t))
	cmd.Dir = filepath.Join(dir, "pebble")
	cmd.Env = []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	// Registered after ShortTempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("pebble log:\n%s", tail(b, 4000))
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	for deadline := time.Now().Add(15 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble does not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Directory = fmt.Sprintf("https://localhost:%d/dir", listen)
	return s
}

// Command is a [cert] command that needs no extra environment: /usr/bin/env
// with Env, then Certbot. It is what a dh-cert binary, which gives certbot
// only a PATH, is configured with.
func (s *Server) Command(t testing.TB) []string {
	t.Helper()
	argv := append([]string{testenv.Command(t, "env")}, s.Env...)
	return append(argv, s.Certbot...)
}

// ServeWebroot serves Webroot on 127.0.0.1:HTTPPort with a Go file server,
// as nginx serves the ACME webroot, until the test ends.
func (s *Server) ServeWebroot(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(s.Webroot)), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// FullChain is the path of certificate name's fullchain.pem in Live.
func (s *Server) FullChain(name string) string {
	return filepath.Join(s.Live, name, "fullchain.pem")
}

// MakeDue makes certificate name due for renewal the honest way: its own
// renewal configuration says to renew 100 days before expiry, and pebble's
// certificates last 90 days. The next `certbot renew` renews it.
func (s *Server) MakeDue(t testing.TB, name string) {
	t.Helper()
	conf := filepath.Join(s.ConfigDir, "renewal", name+".conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, append([]byte("renew_before_expiry = 100 days\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Roots returns pebble's root certificate, which every certificate it
// issues chains to (pebble makes a new one each time it starts), as a pool
// to verify a served certificate with.
func (s *Server) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	mini, err := os.ReadFile(s.minca)
	if err != nil {
		t.Fatal(err)
	}
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(mini)
	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("https://localhost:%d/roots/0", s.mgmt))
	if err != nil {
		t.Fatalf("get pebble's root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get pebble's root: %s, %v", resp.Status, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's root is not PEM: %q", tail(b, 200))
	}
	return roots
}

// ReadLeaf parses the first certificate of the PEM file at path (the leaf
// of a fullchain.pem).
func ReadLeaf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read certificate: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// startDNS answers as dnsAnswer says, over TCP on loopback (pebble's
// -dnsserver asks over TCP), until the test ends, and returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					// Each message is preceded by its length (RFC 1035
					// section 4.2.2).
					c.SetDeadline(time.Now().Add(10 * time.Second))
					var n uint16
					if binary.Read(c, binary.BigEndian, &n) != nil {
						return
					}
					q := make([]byte, n)
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					resp := dnsAnswer(q)
					if resp == nil {
						return
					}
					c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp))))
					c.Write(resp)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dnsAnswer builds the reply to one DNS query (RFC 1035 section 4.1): A
// 127.0.0.1 for every name but those whose first label is "down".
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		if q[i]&0xc0 != 0 {
			return nil
		}
		i += int(q[i]) + 1
	}
	i++ // the root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	resp := bytes.Clone(q[:i+4])
	resp[2] = 0x84 | q[2]&0x01 // response, authoritative, recursion desired as asked
	resp[3] = 0                // no error
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	down := q[12] == 4 && string(q[13:17]) == "down"
	if qtype == 1 && !down { // A
		binary.BigEndian.PutUint16(resp[6:], 1)
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
