package cert_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cert"
	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// requestConfig is a configuration whose cert.certbot is a fake certbot
// that records its argv and environment in DIR/argv and DIR/env.
func requestConfig(t *testing.T) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	fake := filepath.Join(dir, "certbot")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + dir + "/argv\nenv > " + dir + "/env\necho 'Detail: fake problem'\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{QueueDir: filepath.Join(dir, "queues"), StateDir: "/var/lib/dh-deployer"}
	cfg.Cert = config.Cert{Certbot: fake, Authenticator: "webroot", Email: "ops@a.test"}
	if err := os.MkdirAll(cfg.QueuePath(config.CertQueue), 0o700); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

// TestCertbotRequest: `dh-cert certbot` (cert.Certbot) runs certbot with
// the argv of the sudo path, built from the request's name and domains
// and the configuration's account, authenticator and webroot, and passes
// on only REQUESTS_CA_BUNDLE of its environment.
func TestCertbotRequest(t *testing.T) {
	cfg, dir := requestConfig(t)
	env := map[string]string{"REQUESTS_CA_BUNDLE": "/ca.pem", "LD_PRELOAD": "/evil.so"}
	for _, req := range []cert.Request{
		{Command: "certonly", Name: "a.test", Domains: []string{"a.test", "www.a.test"}},
		{Command: "renew"},
	} {
		if err := cert.WriteRequest(cfg.CertbotRequestFile(), req); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := cert.Certbot(context.Background(), cfg, func(k string) string { return env[k] }, &out); err != nil {
			t.Fatalf("Certbot(%+v) = %v\n%s", req, err, out.String())
		}
		want := cert.RenewArgs()
		if req.Command == "certonly" {
			want, _ = cert.CertonlyArgs(cfg, req.Name, req.Domains)
		}
		argv, _ := os.ReadFile(filepath.Join(dir, "argv"))
		if got := strings.Fields(string(argv)); !slices.Equal(got, want) {
			t.Errorf("Certbot(%+v) ran certbot %q; want %q", req, got, want)
		}
		if !strings.Contains(out.String(), "Detail: fake problem") {
			t.Errorf("Certbot output %q; want certbot's", out.String())
		}
		envOut, _ := os.ReadFile(filepath.Join(dir, "env"))
		if !strings.Contains(string(envOut), "REQUESTS_CA_BUNDLE=/ca.pem") || strings.Contains(string(envOut), "LD_PRELOAD") {
			t.Errorf("certbot's environment:\n%s\nwant REQUESTS_CA_BUNDLE and not LD_PRELOAD", envOut)
		}
	}
	// certbot's failure is the command's failure (exit status 1).
	os.WriteFile(filepath.Join(dir, "certbot"), []byte("#!/bin/sh\necho 'Detail: no such domain'\nexit 1\n"), 0o755)
	err := cert.Certbot(context.Background(), cfg, func(string) string { return "" }, &strings.Builder{})
	if cli.ExitStatus(err) != sysexits.Failure || !strings.Contains(err.Error(), "no such domain") {
		t.Errorf("Certbot(certbot fails) = %v; want a Failure with certbot's detail", err)
	}
}

// TestCertbotRequestRefused: the request file lives in a directory the
// unprivileged dh-cert owns; `dh-cert certbot` (root) refuses anything
// but a small regular file holding a valid request, and then never runs
// certbot.
func TestCertbotRequestRefused(t *testing.T) {
	cfg, dir := requestConfig(t)
	path := cfg.CertbotRequestFile()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(`{"version":1,"command":"renew"}`), 0o600)
	huge := `{"version":1,"command":"certonly","name":"a.test","domains":["a.test"` + strings.Repeat(`,"a.test"`, cert.MaxRequestSize/9) + `]}`
	tests := []struct {
		name  string
		setup func()
		why   string
	}{
		{"missing", func() {}, "no such file"},
		{"symlink", func() { os.Symlink(secret, path) }, "too many levels of symbolic links"},
		{"fifo", func() { syscall.Mkfifo(path, 0o600) }, "not a regular file"},
		{"directory", func() { os.Mkdir(path, 0o700) }, "not a regular file"},
		{"oversized", func() { os.WriteFile(path, []byte(huge), 0o600) }, "bytes; at most"},
		{"not json", func() { os.WriteFile(path, []byte("certonly --deploy-hook x"), 0o600) }, "is not a request"},
		{"unknown field", func() {
			os.WriteFile(path, []byte(`{"version":1,"command":"renew","args":["--deploy-hook","x"]}`), 0o600)
		}, "is not a request"},
		{"trailing data", func() { os.WriteFile(path, []byte(`{"version":1,"command":"renew"} {}`), 0o600) }, "data after"},
		{"version", func() { os.WriteFile(path, []byte(`{"version":2,"command":"renew"}`), 0o600) }, "version 2"},
		{"command", func() { os.WriteFile(path, []byte(`{"version":1,"command":"revoke","name":"a.test"}`), 0o600) }, "unknown command"},
		{"renew with names", func() {
			os.WriteFile(path, []byte(`{"version":1,"command":"renew","name":"a.test","domains":["a.test"]}`), 0o600)
		}, "renew takes no"},
		{"bad name", func() {
			os.WriteFile(path, []byte(`{"version":1,"command":"certonly","name":"../x","domains":["a.test"]}`), 0o600)
		}, "invalid certificate name"},
		{"hook as domain", func() {
			os.WriteFile(path, []byte(`{"version":1,"command":"certonly","name":"a.test","domains":["--deploy-hook=/tmp/x"]}`), 0o600)
		}, "invalid domain"},
		{"no domains", func() { os.WriteFile(path, []byte(`{"version":1,"command":"certonly","name":"a.test"}`), 0o600) }, "no domains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(path)
			os.Remove(filepath.Join(dir, "argv"))
			tt.setup()
			err := cert.Certbot(context.Background(), cfg, func(string) string { return "" }, &strings.Builder{})
			if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("Certbot(%s) = %v; want a DataErr saying %q", tt.name, err, tt.why)
			}
			if _, err := os.Stat(filepath.Join(dir, "argv")); err == nil {
				t.Errorf("Certbot(%s) ran certbot", tt.name)
			}
		})
	}
}

// TestRenewThroughRequestCommand: with cert.request_command, dh-cert
// writes the request and runs the command; what certbot said comes from
// cert.request_output (systemctl's own output says only that the unit
// failed), and reaches the error and the journal.
func TestRenewThroughRequestCommand(t *testing.T) {
	cfg, dir := requestConfig(t)
	out := filepath.Join(dir, "certbot.log")
	unit := `cat ` + cfg.CertbotRequestFile() + ` > ` + dir + `/seen; echo 'Detail: renewal refused by the CA' > ` + out +
		`; echo "Job for dh-certbot.service failed." >&2; exit 1`
	cfg.Cert.RequestCommand = []string{"/bin/sh", "-c", unit}
	cfg.Cert.RequestOutput = out
	cfg.Nginx.CertDir = filepath.Join(dir, "live")
	var journal strings.Builder
	w, err := cert.New(cfg, nil, cert.Options{Stderr: &journal})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Renew(context.Background())
	if err == nil || !strings.Contains(err.Error(), "renewal refused by the CA") {
		t.Errorf("Renew() = %v; want certbot's detail from %s", err, out)
	}
	if !strings.Contains(journal.String(), "renewal refused by the CA") {
		t.Errorf("journal %q; want the unit's output", journal.String())
	}
	seen, _ := os.ReadFile(filepath.Join(dir, "seen"))
	if strings.TrimSpace(string(seen)) != `{"version":1,"command":"renew"}` {
		t.Errorf("request file = %s; want a renew request", seen)
	}
}
