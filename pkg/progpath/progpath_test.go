package progpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	// Without $PATH, initdb is found in Debian's /usr/lib/postgresql/*/bin.
	t.Setenv("PATH", "")
	if path, err := Find("initdb"); err != nil || !strings.HasPrefix(path, "/usr/lib/postgresql/") {
		t.Errorf("Find(%q) without $PATH = %q, %v; want /usr/lib/postgresql/*/bin/initdb", "initdb", path, err)
	}

	const missing = "dh-no-such-program"
	if path, err := Find(missing); err == nil || !strings.Contains(err.Error(), missing+" not found") {
		t.Errorf("Find(%q) = %q, %v; want a not found error", missing, path, err)
	}
}

func TestInstallHint(t *testing.T) {
	got := installHint("initdb")
	want := "initdb not found; install it with: apt-get install -y postgresql (or run: make deps)"
	if got != want {
		t.Errorf("installHint(%q) = %q; want %q", "initdb", got, want)
	}
}

func TestFindGoTool(t *testing.T) {
	// pebble is where go install puts it, off $PATH (make deps installs it).
	t.Setenv("PATH", "")
	if path, err := Find("pebble"); err != nil || !strings.HasSuffix(path, "/bin/pebble") {
		t.Errorf("Find(%q) without $PATH = %q, %v; want .../bin/pebble", "pebble", path, err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GOPATH", t.TempDir())
	t.Setenv("GOBIN", "")
	if _, err := Find("pebble"); err == nil || !strings.Contains(err.Error(), "go install github.com/letsencrypt/pebble/v2/cmd/pebble@") {
		t.Errorf("Find(%q) with no pebble installed = %v; want a go install hint", "pebble", err)
	}
}

// InPath finds a regular executable file in an absolute PATH directory,
// never in a relative one, never a file that is not executable.
func TestInPath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	if got, err := InPath("tool", "/nonexistent:"+dir); got != filepath.Join(dir, "tool") || err != nil {
		t.Errorf("InPath(tool) = %q, %v; want %s", got, err, filepath.Join(dir, "tool"))
	}
	t.Chdir(dir)
	for _, name := range []string{"plain", "adir", "missing"} {
		if got, err := InPath(name, dir); !errors.Is(err, ErrNotFound) {
			t.Errorf("InPath(%q) = %q, %v; want ErrNotFound", name, got, err)
		}
	}
	if got, err := InPath("tool", ".:"); !errors.Is(err, ErrNotFound) {
		t.Errorf("InPath(tool, relative PATH) = %q, %v; want ErrNotFound", got, err)
	}
}

func TestProgram(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755)
	env := []string{"HOME=/root", "PATH=/nonexistent", "PATH=" + dir}
	if got := EnvPATH(env); got != dir {
		t.Errorf("EnvPATH(%q) = %q; want %q (the last PATH)", env, got, dir)
	}
	if got := EnvPATH([]string{"HOME=/root"}); got != "" {
		t.Errorf("EnvPATH without PATH = %q; want \"\"", got)
	}
	for _, tt := range []struct {
		name, want string
		err        bool
	}{
		{"tool", filepath.Join(dir, "tool"), false},
		{"/usr/bin/anything", "/usr/bin/anything", false},
		{"bin/tool", "", true},
		{"./tool", "", true},
		{"missing", "", true},
	} {
		got, err := Program(tt.name, EnvPATH(env))
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("Program(%q) = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}
