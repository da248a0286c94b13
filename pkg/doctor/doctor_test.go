package doctor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
)

func TestLongACL(t *testing.T) {
	for in, want := range map[string]string{
		"u:dh-receive:rwx": "user:dh-receive:rwx",
		"d:u:dh-route:rx":  "default:user:dh-route:r-x",
		"d:g::-":           "default:group::---",
		"m::x":             "mask::--x",
		"d:u:dh-nginx:rwX": "default:user:dh-nginx:rwx",
	} {
		if got := longACL(in); got != want {
			t.Errorf("longACL(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestGrants: every GRANT of roles.sql is read, one per role, privilege
// and object.
func TestGrants(t *testing.T) {
	gs, err := grants()
	if err != nil {
		t.Fatal(err)
	}
	has := func(role, priv, obj string, seq bool) bool {
		for _, g := range gs {
			if g == (grant{role, priv, obj, seq}) {
				return true
			}
		}
		return false
	}
	for _, want := range []grant{{"dh-route", "INSERT", "events", false}, {"dh-cert", "SELECT", "schema_migrations", false},
		{"dh-deploy", "USAGE", "runs_id_seq", true}, {"dh-nginx", "UPDATE", "nginx_installs", false}} {
		if !has(want.role, want.privilege, want.object, want.sequence) {
			t.Errorf("grants() lacks %+v; got %+v", want, gs)
		}
	}
}

func TestPrint(t *testing.T) {
	rs := []Result{{Group: "dirs", Name: "/q/main", OK: true, Detail: "dh-route:dh-deployer 2700"},
		{Group: "secret", Name: "webhook", Detail: "mode 0644", Fix: "chmod 0600 /etc/dh-deployer/webhook-secret"}}
	var b bytes.Buffer
	Print(&b, rs)
	want := "✔ dirs: /q/main: dh-route:dh-deployer 2700\n✘ secret: webhook: mode 0644 — fix: chmod 0600 /etc/dh-deployer/webhook-secret\n"
	if b.String() != want {
		t.Errorf("Print =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	PrintJSON(&b, rs)
	var got struct {
		OK     bool
		Checks []Result
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got.OK || len(got.Checks) != 2 || !strings.Contains(b.String(), `"fix":"chmod 0600`) {
		t.Errorf("PrintJSON = %s (%v)", b.String(), err)
	}
}

// The notify targets' secrets must be dh-route's (or root's) alone: a
// deployment's user (whose steps run a repository's code) may not read
// them.
func TestNotifySecretChecks(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"chat-url": 0o600, "mail-password": 0o644} {
		os.WriteFile(filepath.Join(dir, name), []byte("https://chat.acme.internal/hooks/0123456789abcdef\n"), mode)
	}
	cfg := &config.Config{File: filepath.Join(dir, "config.toml"), Notify: config.Notify{Targets: map[string]*config.NotifyTarget{
		"chat": {Kind: "slack", URLFile: "chat-url"},
		"mail": {Kind: "email", SMTP: "mail:587", SMTPUser: "u", PasswordFile: "mail-password"},
	}}}
	rs := notifySecretChecks(cfg)
	if len(rs) != 2 || !rs[0].OK || rs[1].OK || !strings.Contains(rs[1].Detail, "others may read it") {
		t.Errorf("notifySecretChecks = %+v; want chat ok (root's, 0600), mail failing on its mode", rs)
	}
	os.Chmod(filepath.Join(dir, "mail-password"), 0o600)
	os.Chown(filepath.Join(dir, "mail-password"), 65534, 65534) // nobody: as if a deployment's user
	if rs := notifySecretChecks(cfg); len(rs) != 2 || rs[1].OK || !strings.Contains(rs[1].Detail, "a deployment's user may read it") {
		t.Errorf("notifySecretChecks = %+v; want mail failing on its owner", rs)
	}
}
