// Package testenv is the one place tests find the real external programs
// they drive (PostgreSQL, nginx, certbot, sudo, git, ...), through
// pkg/progpath, and the fixtures they read.
//
// A missing program is a test failure, never a skip: the failure message
// names the Debian package to install, so a machine that lacks it is fixed
// rather than silently tested less.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/progpath"
)

// Command returns the absolute path of the program name, as found by
// LookPath, or fails the test with the command that installs it.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := LookPath(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

// LookPath is progpath.Find: the absolute path of the program name, from
// $PATH, /usr/lib/postgresql/*/bin, /usr/sbin or /sbin, or an error saying
// how to install it. It is for code that cannot call t.Fatalf, such as a
// sync.Once shared by several tests.
func LookPath(name string) (string, error) { return progpath.Find(name) }

// ShortTempDir creates a directory /tmp/PREFIX.NNNN and removes it, with
// everything in it, when the test ends. Unlike t.TempDir its path is short
// enough to hold a unix socket (at most 107 bytes for the whole path).
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", strings.TrimSuffix(prefix, ".")+".")
	if err != nil {
		t.Fatalf("create temporary directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove temporary directory: %v", err)
		}
	})
	return dir
}

// Build builds the tool cmd/NAME of this module (e.g. "dh-route") into a
// test directory, stripped as `make build` does, and returns the binary's
// path.
func Build(t testing.TB, name string) string {
	t.Helper()
	return BuildInto(t, t.TempDir(), name)
}

// BuildInto is Build into dir, for tests that share the binaries (dir
// outlives the test; the caller removes it).
func BuildInto(t testing.TB, dir, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/dh-deployer/dh-deployer/cmd/"+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// Git runs git with args in dir as a test's own repositories need it: a
// fixed author and committer, no system or global configuration (so the
// machine's ~/.gitconfig changes nothing), and fails the test with git's
// output on error. It returns the trimmed output.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Command(t, "git"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}
