package crashfs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
)

// A writer puts content under name in dir, more or less durably.
type writer func(t *testing.T, dir, name string, content []byte)

func write(t *testing.T, path string, content []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", path, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, ".tmp-"+name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	if err := durable.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
}

var (
	// noSync writes and renames: nothing is durable.
	noSync writer = func(t *testing.T, dir, name string, content []byte) {
		write(t, filepath.Join(dir, ".tmp-"+name), content, false)
		rename(t, dir, name)
	}
	// noFileSync renames and fsyncs the directory but never fsyncs the
	// file: the name survives, pointing to an empty file.
	noFileSync writer = func(t *testing.T, dir, name string, content []byte) {
		write(t, filepath.Join(dir, ".tmp-"+name), content, false)
		rename(t, dir, name)
		syncDir(t, dir)
	}
	// noDirSync fsyncs the file but never its directory: the data is on
	// disk, no name points to it.
	noDirSync writer = func(t *testing.T, dir, name string, content []byte) {
		write(t, filepath.Join(dir, ".tmp-"+name), content, true)
		rename(t, dir, name)
	}
	// syncFS makes the data durable with syncfs(2) instead of an fsync of
	// the file (what pkg/queue did): on FUSE the name survives, pointing to
	// an empty file.
	syncFS writer = func(t *testing.T, dir, name string, content []byte) {
		tmp := filepath.Join(dir, ".tmp-"+name)
		write(t, tmp, content, false)
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := unix.Syncfs(int(d.Fd())); err != nil {
			t.Fatalf("syncfs: %v", err)
		}
		rename(t, dir, name)
		syncDir(t, dir)
	}
	// correct writes, fsyncs, renames, fsyncs the directory.
	correct writer = func(t *testing.T, dir, name string, content []byte) {
		write(t, filepath.Join(dir, ".tmp-"+name), content, true)
		rename(t, dir, name)
		syncDir(t, dir)
	}
	// durableWriteFile is pkg/durable's WriteFile.
	durableWriteFile writer = func(t *testing.T, dir, name string, content []byte) {
		if err := durable.WriteFile(filepath.Join(dir, name), content, 0o640); err != nil {
			t.Fatal(err)
		}
	}
)

// TestBrokenWritersCaught writes one file with each writer, cuts the power
// and checks what is left: the broken writers must be caught losing or
// emptying their file, the correct ones must not.
func TestBrokenWritersCaught(t *testing.T) {
	fs := crashfs.Mount(t)
	content := bytes.Repeat([]byte("entry "), 2000)
	for _, tc := range []struct {
		name string
		w    writer
		want string // after the cut: "lost" (no such name), "empty" or "whole"
	}{
		{"no-fsync-at-all", noSync, "lost"},
		{"no-file-fsync", noFileSync, "empty"},
		{"no-dir-fsync", noDirSync, "lost"},
		{"syncfs", syncFS, "empty"},
		{"correct", correct, "whole"},
		{"durable.WriteFile", durableWriteFile, "whole"},
	} {
		// A directory each: a directory fsync makes every name in it
		// durable, whoever made it.
		dir := filepath.Join(fs.Dir(), tc.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		syncDir(t, dir)
		syncDir(t, fs.Dir())
		tc.w(t, dir, tc.name, content)
		// Before the cut everything reads back whole.
		if got, err := os.ReadFile(filepath.Join(dir, tc.name)); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: before the cut: ReadFile = %d bytes, %v; want %d bytes", tc.name, len(got), err, len(content))
		}
		defer func() {
			got, err := os.ReadFile(filepath.Join(dir, tc.name))
			state := "whole"
			switch {
			case errors.Is(err, os.ErrNotExist):
				state = "lost"
			case err != nil:
				t.Fatalf("%s: ReadFile after the cut: %v", tc.name, err)
			case len(got) == 0:
				state = "empty"
			case !bytes.Equal(got, content):
				state = "partial"
			}
			if state != tc.want {
				t.Errorf("%s: after the cut the file is %s; want %s", tc.name, state, tc.want)
			}
			verdict := "caught"
			if tc.want == "whole" {
				verdict = "correct"
			}
			t.Logf("crashfs: writer %s: after the cut the file is %s (%s)", tc.name, state, verdict)
		}()
	}
	before := fs.Counts()
	fs.Crash(t)
	if before.Fsyncs < 3 || before.DirFsyncs < 4 {
		t.Errorf("Counts() = %+v; want the fsyncs to have reached the file system", before)
	}
	// No staging name survives: those of the writers that synced their
	// directory went with the rename, the others were never durable.
	staged, _ := filepath.Glob(filepath.Join(fs.Dir(), "*", ".tmp-*"))
	if len(staged) > 0 {
		t.Errorf("after the cut: %v; want no staging file", staged)
	}
}

// TestRenameAcrossDirectories: a move synced only in its new directory
// comes back in both; synced only in its old one, in neither; then the
// rules for unlink and mkdir.
func TestRenameAcrossDirectories(t *testing.T) {
	fs := crashfs.Mount(t)
	a, b, c := filepath.Join(fs.Dir(), "a"), filepath.Join(fs.Dir(), "b"), filepath.Join(fs.Dir(), "c")
	for _, d := range []string{a, b, c} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		syncDir(t, d)
	}
	syncDir(t, fs.Dir())
	correct(t, a, "x", []byte("x"))
	for _, n := range []string{"y", "gone", "kept"} {
		correct(t, c, n, []byte(n))
	}
	mv := func(from, to string) {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	mv(filepath.Join(a, "x"), filepath.Join(b, "x"))
	syncDir(t, b) // x: in both
	mv(filepath.Join(c, "y"), filepath.Join(b, "y"))
	if err := os.Remove(filepath.Join(c, "gone")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, c) // y: in neither; gone: gone
	if err := os.Remove(filepath.Join(c, "kept")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(fs.Dir(), "d"), 0o755); err != nil {
		t.Fatal(err) // never synced: lost
	}
	fs.Crash(t)
	for path, want := range map[string]bool{
		"a/x": true, "b/x": true, "c/y": false, "b/y": false, "c/gone": false, "c/kept": true, "d": false,
	} {
		_, err := os.Stat(filepath.Join(fs.Dir(), path))
		if got := err == nil; got != want {
			t.Errorf("after the cut, %s exists = %v (%v); want %v", path, got, err, want)
		}
	}
	// After the cut, the file system works as before.
	correct(t, b, "z", []byte("z"))
	if got, err := os.ReadFile(filepath.Join(b, "z")); err != nil || string(got) != "z" {
		t.Errorf("ReadFile after the remount = %q, %v; want z", got, err)
	}
}

// TestCutRefusesEverything: after Cut, before Remount, nothing succeeds.
func TestCutRefusesEverything(t *testing.T) {
	fs := crashfs.Mount(t)
	fs.Cut()
	err := os.WriteFile(filepath.Join(fs.Dir(), "after"), []byte("x"), 0o644)
	if !errors.Is(err, unix.EIO) {
		t.Errorf("WriteFile after Cut = %v; want EIO", err)
	}
	if err := fs.Remount(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fs.Dir(), "after")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat after the remount = %v; want not exist", err)
	}
}

// TestOtherUsers: the mount allows other users (allow_other), and the
// kernel checks modes (default_permissions).
func TestOtherUsers(t *testing.T) {
	fs := crashfs.Mount(t)
	open := filepath.Join(fs.Dir(), "open")
	closed := filepath.Join(fs.Dir(), "closed")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	as := func(args ...string) error {
		return exec.Command("runuser", append([]string{"-u", "nobody", "--"}, args...)...).Run()
	}
	if err := as("touch", filepath.Join(open, "f")); err != nil {
		t.Errorf("nobody: touch in a 0777 directory = %v; want nil", err)
	}
	if fi, err := os.Stat(filepath.Join(open, "f")); err != nil || fi.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Errorf("the file nobody made: %v; want it owned by nobody", err)
	}
	if err := as("touch", filepath.Join(closed, "f")); err == nil {
		t.Errorf("nobody: touch in root's 0700 directory succeeded; want permission denied")
	}
}
