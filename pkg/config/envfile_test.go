package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretEnvironment: an environment_file is read only when it is the
// worker's own regular file that nobody else may read, and well formed.
func TestSecretEnvironment(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "A=1\n# comment\n\nB=two words\r\n", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	other := write("other", "A=1\n", 0o600)
	if os.Geteuid() == 0 {
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path string
		want string // part of the error; "" for none
	}{
		{good, ""},
		{write("readonly", "A=1\n", 0o400), ""},
		{write("group", "A=1\n", 0o640), "mode 0640 lets other users read it: chmod 0600"},
		{write("world", "A=1\n", 0o604), "mode 0604 lets other users read it"},
		{link, "too many levels of symbolic links"},
		{dir, "not a regular file"},
		{write("noequals", "A=1\njust words\n", 0o600), "line 2 is not NAME=VALUE"},
		{write("badname", "A-B=1\n", 0o600), `line 1: "A-B" is not an environment variable name`},
		{write("reserved", "DH_COMMIT=x\n", 0o600), "line 1: DH_* variables are set by dh-deploy"},
		{write("nul", "A=1\x00\n", 0o600), "contains a NUL byte"},
		{filepath.Join(dir, "missing"), "no such file"},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct{ path, want string }{other, "owned by uid 65534, not by this worker's user (uid 0): chown dh-deploy " + other})
	}
	for _, tt := range tests {
		d := &Deployment{Name: "app", EnvironmentFile: tt.path}
		env, err := d.SecretEnvironment()
		if tt.want == "" {
			if err != nil {
				t.Errorf("SecretEnvironment(%s) = %v; want no error", tt.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "deployments.app.environment_file") {
			t.Errorf("SecretEnvironment(%s) = %v, %v; want an error naming the key and %q", tt.path, env, err, tt.want)
		} else if code := exitCode(err); code != exitConfig {
			t.Errorf("SecretEnvironment(%s): exit code %d; want %d", tt.path, code, exitConfig)
		}
	}
	env, _ := (&Deployment{Name: "app", EnvironmentFile: good}).SecretEnvironment()
	if len(env) != 2 || env["A"] != "1" || env["B"] != "two words" {
		t.Errorf("SecretEnvironment(good) = %q; want A=1, B=two words", env)
	}
}
