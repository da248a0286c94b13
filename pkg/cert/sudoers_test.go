package cert_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cert"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

const sudoUser = "dhtest-cert"

// installSudoers creates the test user and installs sudoers/dh-cert,
// rewritten for it, as a drop-in; both are removed when the test ends.
func installSudoers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a user and installs a sudoers drop-in and must run as root (make test runs as root on our machines)")
	}
	visudo := testenv.Command(t, "visudo")
	testenv.Command(t, "sudo")
	src, err := os.ReadFile(filepath.Join("..", "..", "sudoers", "dh-cert"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(visudo, "-cf", filepath.Join("..", "..", "sudoers", "dh-cert")).CombinedOutput(); err != nil {
		t.Fatalf("visudo -cf sudoers/dh-cert: %v\n%s", err, out)
	}
	rule := strings.ReplaceAll(string(src), "\ndh-cert ALL", "\n"+sudoUser+" ALL")
	// Aliases are global: rename them, so that a host with dh-deployer
	// installed (the real drop-in defines the same ones) can run the test.
	rule = strings.ReplaceAll(rule, "DH_CERTBOT_", "DHTEST_CERTBOT_")
	if rule == string(src) {
		t.Fatal("sudoers/dh-cert has no rule for user dh-cert")
	}
	exec.Command("userdel", sudoUser).Run() // a leftover of a killed run
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", sudoUser).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", sudoUser, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", sudoUser).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", sudoUser, err, out)
		}
	})
	// sudo skips drop-ins whose names contain a dot.
	dropIn := "/etc/sudoers.d/zz-dhtest-cert"
	if err := os.WriteFile(dropIn, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dropIn); err != nil {
			t.Errorf("remove %s: %v", dropIn, err)
		}
	})
	if out, err := exec.Command(visudo, "-c").CombinedOutput(); err != nil {
		t.Fatalf("visudo -c with the drop-in installed: %v\n%s", err, out)
	}
}

// sudoList reports whether the test user may run argv through sudo,
// asking sudo itself (sudo -n -l CMD exits 0 only if a rule allows it).
func sudoList(t *testing.T, argv []string) bool {
	t.Helper()
	runuser := testenv.Command(t, "runuser")
	args := append([]string{"-u", sudoUser, "--", "sudo", "-n", "-l"}, argv...)
	out, err := exec.Command(runuser, args...).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("runuser sudo -l: %v", err)
		}
		if s := string(out); s != "" && !strings.Contains(s, "not allowed") && !strings.Contains(s, "password is required") {
			t.Logf("sudo -l %q: %s", argv, out)
		}
		return false
	}
	return true
}

func TestSudoers(t *testing.T) {
	installSudoers(t)
	const certbot = "/usr/bin/certbot"
	cfg := &config.Config{StateDir: config.DefaultStateDir}
	cfg.Cert.Authenticator = "webroot"
	build := func(name string, domains ...string) []string {
		t.Helper()
		args, err := cert.CertonlyArgs(cfg, name, domains)
		if err != nil {
			t.Fatalf("CertonlyArgs(%q, %q) = %v", name, domains, err)
		}
		return append([]string{certbot}, args...)
	}

	// What dh-cert builds is allowed.
	allowed := map[string][]string{
		"one domain":  build("a.test", "a.test"),
		"two domains": build("a.test", "a.test", "www.a.test"),
		"wildcard":    build("wild.a.test", "*.a.test", "a.test"),
		"renew":       append([]string{certbot}, cert.RenewArgs()...),
	}
	cfg.Cert.Email = "ops+certs@durhack.example"
	allowed["email"] = build("a.test", "a.test")
	cfg.Cert.Server = "https://acme-staging-v02.api.letsencrypt.org/directory"
	allowed["email and server"] = build("a.test", "a.test", "b.test")
	cfg.Cert.Email = ""
	allowed["server"] = build("a.test", "a.test")
	cfg.Cert.Server = ""
	for what, argv := range allowed {
		if !sudoList(t, argv) {
			t.Errorf("sudo -l %q (%s) refused; want allowed", argv, what)
		}
	}

	base := build("a.test", "a.test")
	last := len(base) - 2 // before --keep-until-expiring --expand
	insert := func(at int, extra ...string) []string {
		return slices.Insert(slices.Clone(base), at, extra...)
	}
	replace := func(old, new string) []string {
		out := slices.Clone(base)
		out[slices.Index(out, old)] = new
		return out
	}
	refused := map[string][]string{
		"deploy hook":          insert(last, "--deploy-hook", "sh -c id"),
		"deploy hook =":        insert(last, "--deploy-hook=/tmp/x"),
		"pre hook":             insert(last, "--pre-hook", "/tmp/x"),
		"post hook":            insert(last, "--post-hook", "/tmp/x"),
		"manual auth hook":     insert(last, "--manual-auth-hook", "/tmp/x"),
		"manual cleanup hook":  insert(last, "--manual-cleanup-hook", "/tmp/x"),
		"renew hook":           insert(last, "--renew-hook", "/tmp/x"),
		"config":               insert(1, "--config", "/tmp/x"),
		"config at end":        append(slices.Clone(base), "--config", "/tmp/x"),
		"-c":                   insert(1, "-c", "/tmp/x"),
		"config dir":           insert(last, "--config-dir", "/tmp/x"),
		"work dir":             insert(last, "--work-dir", "/tmp/x"),
		"logs dir":             insert(last, "--logs-dir", "/tmp/x"),
		"extra argument":       append(slices.Clone(base), "--force-renewal"),
		"extra word":           append(slices.Clone(base), "x"),
		"domain with ;":        replace("a.test", "a.test;id"),
		"domain with space":    replace("a.test", "a .test"),
		"domain with $()":      replace("a.test", "$(id).a.test"),
		"domain is an option":  replace("a.test", "--deploy-hook=/tmp/x"),
		"other webroot":        replace("/var/lib/dh-deployer/acme", "/etc"),
		"manual authenticator": replace("--webroot", "--manual"),
		"http server":          insert(last-2, "--server", "http://evil.example/dir"),
		"no domain":            slices.Delete(slices.Clone(base), last-2, last),
		"delete":               {certbot, "delete", "--cert-name", "a.test"},
		"revoke":               {certbot, "revoke", "--cert-name", "a.test"},
		"register":             {certbot, "register", "--agree-tos", "-m", "x@y.z"},
		"plugins":              {certbot, "plugins"},
		"no arguments":         {certbot},
		"renew deploy hook":    {certbot, "renew", "--non-interactive", "--no-random-sleep-on-renew", "--deploy-hook", "x"},
		"renew post hook =":    {certbot, "renew", "--non-interactive", "--no-random-sleep-on-renew", "--post-hook=x"},
		"renew config dir":     {certbot, "--config-dir", "/tmp/x", "renew", "--non-interactive", "--no-random-sleep-on-renew"},
		"renew forced":         {certbot, "renew", "--non-interactive", "--no-random-sleep-on-renew", "--force-renewal"},
		"renew short":          {certbot, "renew"},
		"another program":      {"/bin/sh", "-c", "id"},
		"certbot elsewhere":    append([]string{"/tmp/certbot"}, base[1:]...),
	}
	for what, argv := range refused {
		if sudoList(t, argv) {
			t.Errorf("sudo -l %q (%s) allowed; want refused", argv, what)
		}
	}
}
