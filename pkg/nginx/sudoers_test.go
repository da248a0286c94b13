package nginx

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestSudoers installs the shipped sudoers/dh-nginx for a test user with
// the real sudo and checks that exactly the test and reload commands are
// allowed, with exactly their arguments.
func TestSudoers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("installing a sudoers drop-in and a user needs root: run the tests as root (CI does)")
	}
	visudo, sudo := testenv.Command(t, "visudo"), testenv.Command(t, "sudo")
	useradd, userdel, runuser := testenv.Command(t, "useradd"), testenv.Command(t, "userdel"), testenv.Command(t, "runuser")
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		return string(out), err
	}

	shipped, err := os.ReadFile("../../sudoers/dh-nginx")
	if err != nil {
		t.Fatal(err)
	}
	// The rule, for the test user: exactly one line grants anything.
	const user = "dhtest-nginx"
	var rules int
	lines := strings.Split(string(shipped), "\n")
	for i, l := range lines {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		rules++
		if !strings.HasPrefix(l, "dh-nginx ") {
			t.Fatalf("sudoers/dh-nginx line %d %q is not a rule for dh-nginx", i+1, l)
		}
		lines[i] = user + strings.TrimPrefix(l, "dh-nginx")
	}
	if rules != 1 {
		t.Fatalf("sudoers/dh-nginx has %d rules; want 1", rules)
	}
	content := strings.Join(lines, "\n")
	staged := filepath.Join(t.TempDir(), "dh-nginx")
	if err := os.WriteFile(staged, []byte(content), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := run(visudo, "-cf", staged); err != nil {
		t.Fatalf("visudo -cf: %v\n%s", err, out)
	}

	run(userdel, user) // a leftover of a killed run
	if out, err := run(useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run(userdel, user); err != nil {
			t.Errorf("userdel: %v\n%s", err, out)
		}
	})
	// sudo ignores names with a dot: stage there, then rename into place.
	dropIn := fmt.Sprintf("/etc/sudoers.d/dhtest-nginx-%d", os.Getpid())
	tmp := dropIn + ".tmp"
	t.Cleanup(func() {
		os.Remove(tmp)
		if err := os.Remove(dropIn); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove %s: %v", dropIn, err)
		}
	})
	if err := os.WriteFile(tmp, []byte(content), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dropIn); err != nil {
		t.Fatal(err)
	}
	if out, err := run(visudo, "-c"); err != nil {
		t.Fatalf("visudo -c with the drop-in installed: %v\n%s", err, out)
	}

	out, err := run(sudo, "-n", "-l", "-U", user)
	if err != nil {
		t.Fatalf("sudo -l -U %s: %v\n%s", user, err, out)
	}
	_, granted, _ := strings.Cut(out, "may run the following commands")
	var cmds []string
	for _, l := range strings.Split(granted, "\n")[1:] {
		if l = strings.TrimSpace(l); l != "" {
			cmds = append(cmds, l)
		}
	}
	want := []string{"(root) NOPASSWD: /usr/sbin/nginx -t, /usr/bin/systemctl reload nginx"}
	if !slices.Equal(cmds, want) {
		t.Errorf("sudo -l -U %s lists %q; want %q", user, cmds, want)
	}

	allowed := func(argv ...string) bool {
		args := append([]string{"-u", user, "--", sudo, "-n", "-l"}, argv...)
		_, err := run(runuser, args...)
		return err == nil
	}
	for _, argv := range [][]string{
		{"/usr/sbin/nginx", "-t"},
		{"/usr/bin/systemctl", "reload", "nginx"},
	} {
		if !allowed(argv...) {
			t.Errorf("sudo refuses %q; want it allowed", argv)
		}
	}
	for _, argv := range [][]string{
		{"/usr/sbin/nginx"},
		{"/usr/sbin/nginx", "-s", "stop"},
		{"/usr/sbin/nginx", "-s", "reload"},
		{"/usr/sbin/nginx", "-t", "-c", "/tmp/x"},
		{"/usr/sbin/nginx", "-t", "-p", "/tmp/"},
		{"/usr/sbin/nginx", "-g", "daemon off;"},
		{"/usr/sbin/nginx", "-T"},
		{"/usr/bin/systemctl", "reboot"},
		{"/usr/bin/systemctl", "reload", "nginx", "extra"},
		{"/usr/bin/systemctl", "reload", "sshd"},
		{"/usr/bin/systemctl", "restart", "nginx"},
		{"/usr/bin/systemctl", "stop", "nginx"},
		{"/usr/bin/systemctl"},
		{"/bin/sh", "-c", "/usr/sbin/nginx -t"},
		{"/usr/bin/sudoedit", "/etc/nginx/nginx.conf"},
	} {
		if allowed(argv...) {
			t.Errorf("sudo allows %q; want it refused", argv)
		}
	}
}
