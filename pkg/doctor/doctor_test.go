package doctor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
