// Package durable makes file system changes that survive a crash or a power
// loss, on Linux file systems that honour fsync (ext4, xfs, btrfs, tmpfs).
//
// A new file is only durable once its data AND the directory entry naming it
// have reached the disk: fsync(file) persists the data, fsync(dir) persists
// the name. A rename or unlink likewise needs an fsync of every directory
// it touched. Every function here does those syncs before it returns nil.
//
// Any error, and especially a failed fsync, is final: after a failed fsync
// the kernel may have dropped the dirty pages, so retrying the sync can
// report success for data that is gone. Callers stop (exit 74) rather than
// carry on. Errors are classified sysexits.IOErr.
package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// SyncDir fsyncs a directory so that entries created, renamed or removed in
// it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return ioErr("sync dir", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return ioErr("sync dir", dir, err)
}

// Stage writes data to the new file path (which must not exist: it is
// created with O_EXCL and mode perm), fsyncs and closes it. The file is not
// yet visible under its final name; Link or Rename it there. On error
// nothing is left at path.
func Stage(path string, data []byte, perm os.FileMode) error {
	return create(path, data, perm, true)
}

// Create is Stage without the fsync: for a batch of files made durable
// together by one SyncFS before any of them is linked into place.
func Create(path string, data []byte, perm os.FileMode) error {
	return create(path, data, perm, false)
}

func create(path string, data []byte, perm os.FileMode, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return ioErr("create", path, err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return ioErr("write", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	// The data must be on disk before a name points at it, or a crash
	// could leave a named but empty or partial file.
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return ioErr("close", path, err)
	}
	return nil
}

// SyncFS flushes the whole file system holding f to disk (syncfs(2)): the
// data and metadata of every file written on it, in one journal commit.
// For many new files that is far cheaper than an fsync each. It reports
// write-back errors that happened on the file system since f was opened
// (Linux 5.8 and later), so f must be opened before the files it is meant
// to cover are written. On a busy file system it also waits for other
// programs' dirty data.
func SyncFS(f *os.File) error {
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return ioErr("syncfs", f.Name(), err)
	}
	return nil
}

// Link gives the staged file tmp its final name dst without ever replacing
// an existing dst: renameat2(RENAME_NOREPLACE), or on file systems without
// it, link(2) then unlink of tmp (both fail with EEXIST if dst exists). The
// new name is not durable until dst's directory is synced (SyncDir):
// callers do that once for a batch of links before they report success.
func Link(tmp, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return ioErr("rename", dst, &os.LinkError{Op: "rename", Old: tmp, New: dst, Err: err})
	}
	if err := os.Link(tmp, dst); err != nil {
		return ioErr("link", dst, err)
	}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ioErr("remove", tmp, err)
	}
	return nil
}

// WriteFile atomically replaces path with data: readers see the old
// content or the new, never a mix, and after a nil return the new content
// survives a crash. One writer per path at a time.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// One writer per path: a leftover of a crashed earlier write is removed.
	tmp := filepath.Join(dir, "."+base+".tmp")
	os.Remove(tmp)
	if err := Stage(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return ioErr("rename", path, err)
	}
	return SyncDir(dir)
}

// Rename moves oldpath to newpath and syncs both directories (the new one
// first, so that a crash can leave the file in both places but never in
// neither).
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return ioErr("rename", oldpath, err)
	}
	newDir, oldDir := filepath.Dir(newpath), filepath.Dir(oldpath)
	if err := SyncDir(newDir); err != nil {
		return err
	}
	if oldDir != newDir {
		return SyncDir(oldDir)
	}
	return nil
}

// Remove deletes path and syncs its directory. A path that is already gone
// is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ioErr("remove", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

func ioErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	code := sysexits.IOErr
	if errors.Is(err, os.ErrPermission) {
		code = sysexits.NoPerm
	}
	var pe *os.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		// Already names the path.
		return sysexits.New(code, fmt.Errorf("%s: %w", op, err))
	}
	return sysexits.New(code, fmt.Errorf("%s %s: %w", op, path, err))
}
