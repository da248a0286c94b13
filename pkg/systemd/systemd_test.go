package systemd

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBooted(t *testing.T) {
	defer func(d string) { BootedDir = d }(BootedDir)
	dir := t.TempDir()
	BootedDir = filepath.Join(dir, "system")
	if Booted() {
		t.Errorf("Booted() = true without %s; want false", BootedDir)
	}
	os.WriteFile(BootedDir, nil, 0o644)
	if Booted() {
		t.Errorf("Booted() = true with a file %s; want false", BootedDir)
	}
	os.Remove(BootedDir)
	os.Symlink(dir, BootedDir)
	if Booted() {
		t.Errorf("Booted() = true with a symlink %s; want false (sd_booted uses lstat)", BootedDir)
	}
	os.Remove(BootedDir)
	os.Mkdir(BootedDir, 0o755)
	if !Booted() {
		t.Errorf("Booted() = false with a directory %s; want true", BootedDir)
	}
}
