package systemd_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// installed is the tree `make install DESTDIR=D` makes with the default
// PREFIX, as docs/operations.md lists it.
var installed = []string{
	"etc/dh-deployer/config.toml",
	"etc/polkit-1/rules.d/50-dh-deployer.rules",
	"etc/sudoers.d/dh-cert",
	"etc/sudoers.d/dh-nginx",
	"etc/systemd/system/dh-cert-renew.service",
	"etc/systemd/system/dh-cert-renew.timer",
	"etc/systemd/system/dh-cert.service",
	"etc/systemd/system/dh-certbot.service",
	"etc/systemd/system/dh-deploy@.service",
	"etc/systemd/system/dh-nginx-test.service",
	"etc/systemd/system/dh-nginx.service",
	"etc/systemd/system/dh-receive-hook.socket",
	"etc/systemd/system/dh-receive.service",
	"etc/systemd/system/dh-receive.socket",
	"etc/systemd/system/dh-route.service",
	"usr/lib/sysusers.d/dh-deployer.conf",
	"usr/lib/tmpfiles.d/dh-deployer.conf",
	"usr/local/bin/dh-cert",
	"usr/local/bin/dh-deploy",
	"usr/local/bin/dh-nginx",
	"usr/local/bin/dh-receive",
	"usr/local/bin/dh-route",
	"usr/local/lib/dh-deployer/dh-deployer-acl",
	"usr/local/share/dh-deployer/roles.sql",
	"usr/local/share/doc/dh-deployer/README.md",
	"usr/local/share/doc/dh-deployer/cert.md",
	"usr/local/share/doc/dh-deployer/config.example.toml",
	"usr/local/share/doc/dh-deployer/deploy.md",
	"usr/local/share/doc/dh-deployer/development.md",
	"usr/local/share/doc/dh-deployer/nginx.md",
	"usr/local/share/doc/dh-deployer/operations.md",
	"usr/local/share/doc/dh-deployer/receive.md",
	"usr/local/share/doc/dh-deployer/route.md",
	"usr/local/share/man/man1/dh-cert.1.gz",
	"usr/local/share/man/man1/dh-deploy.1.gz",
	"usr/local/share/man/man1/dh-nginx.1.gz",
	"usr/local/share/man/man1/dh-receive.1.gz",
	"usr/local/share/man/man1/dh-route.1.gz",
	"usr/local/share/man/man8/dh-deployer-acl.8.gz",
}

func tree(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			rel, _ := filepath.Rel(root, p)
			files[rel] = fi.Mode()
		}
		return nil
	})
	return files
}

func TestMakeInstall(t *testing.T) {
	visudo := testenv.Command(t, "visudo")
	dest := t.TempDir()
	make := func(target string) {
		t.Helper()
		out, err := exec.Command("make", "-C", "..", "--no-print-directory", target, "DESTDIR="+dest).CombinedOutput()
		if err != nil {
			t.Fatalf("make %s DESTDIR=%s: %v\n%s", target, dest, err, out)
		}
	}
	make("install")
	files := tree(t, dest)
	var got []string
	for f := range files {
		got = append(got, f)
	}
	slices.Sort(got)
	if !slices.Equal(got, installed) {
		t.Errorf("make install made:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(installed, "\n"))
	}
	for f, mode := range files {
		want := fs.FileMode(0o644)
		switch {
		case strings.HasPrefix(f, "etc/sudoers.d/"):
			want = 0o440
			if out, err := exec.Command(visudo, "-cf", filepath.Join(dest, f)).CombinedOutput(); err != nil {
				t.Errorf("visudo -cf %s: %v\n%s", f, err, out)
			}
		case strings.Contains(f, "/bin/"), strings.HasSuffix(f, "dh-deployer-acl"):
			want = 0o755
		case f == "etc/dh-deployer/config.toml":
			want = 0o640
		}
		if mode.Perm() != want {
			t.Errorf("%s has mode %v; want %v", f, mode.Perm(), want)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/dh-route.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/dh-route -c /etc/dh-deployer/config.toml run") {
		t.Errorf("installed dh-route.service has no ExecStart of the installed binary:\n%s", unit)
	}
	// A configuration already there is never replaced.
	os.WriteFile(filepath.Join(dest, "etc/dh-deployer/config.toml"), []byte("# mine\n"), 0o640)
	make("install")
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/dh-deployer/config.toml")); string(b) != "# mine\n" {
		t.Errorf("make install replaced an existing config.toml")
	}
	make("uninstall")
	if left := tree(t, dest); len(left) != 1 || left["etc/dh-deployer/config.toml"] == 0 {
		t.Errorf("make uninstall left %v; want only the configuration", left)
	}
}
