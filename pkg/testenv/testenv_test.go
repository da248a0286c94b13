package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookPath(t *testing.T) {
	for _, name := range []string{"sh", "initdb"} {
		path := Command(t, name)
		if !filepath.IsAbs(path) || filepath.Base(path) != name {
			t.Errorf("Command(%q) = %q; want an absolute path ending in %s", name, path, name)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Command(%q) = %q; stat: %v", name, path, err)
		}
	}

	// Without $PATH, initdb is found in Debian's /usr/lib/postgresql/*/bin.
	t.Setenv("PATH", "")
	if path, err := LookPath("initdb"); err != nil || !strings.HasPrefix(path, "/usr/lib/postgresql/") {
		t.Errorf("LookPath(%q) without $PATH = %q, %v; want /usr/lib/postgresql/*/bin/initdb", "initdb", path, err)
	}

	const missing = "dh-no-such-program"
	if path, err := LookPath(missing); err == nil || !strings.Contains(err.Error(), missing+" not found") {
		t.Errorf("LookPath(%q) = %q, %v; want a not found error", missing, path, err)
	}
}

func TestShortTempDir(t *testing.T) {
	var dir string
	t.Run("create", func(t *testing.T) {
		dir = ShortTempDir(t, "pg")
		if !strings.HasPrefix(dir, "/tmp/pg.") || len(dir) > 40 {
			t.Errorf("ShortTempDir(t, %q) = %q; want a short /tmp/pg.* path", "pg", dir)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("ShortTempDir(t, %q) = %q; stat: %v", "pg", dir, err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("ShortTempDir(t, %q) = %q still exists after the test: %v", "pg", dir, err)
	}
}
