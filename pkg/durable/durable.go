// Package durable makes file system changes that survive a crash or a power
// loss, on Linux file systems that honour fsync (ext4, xfs, btrfs, and FUSE
// file systems, which receive fsync and fdatasync but not syncfs).
//
// The rule, followed by every function here and by every caller that makes
// names itself (pkg/queue): durability is per entry, never per file system.
//
//  1. A new file's data is synced (fdatasync) by whoever wrote it, before
//     any name points at it.
//  2. Then the name is made (create, rename, link, unlink, mkdir).
//  3. Then every directory whose entries changed is fsynced.
//
// syncfs(2) is never used: it flushes every dirty page of the whole file
// system (so a publish waits for a build writing gigabytes beside it), and
// on FUSE it reaches nothing at all, so it makes nothing durable there.
// tmpfs and ramfs accept every sync and keep nothing across a reboot:
// CheckFS tells them apart.
//
// Any error, and especially a failed fsync, is final: after a failed fsync
// the kernel may have dropped the dirty pages, so retrying the sync can
// report success for data that is gone. Callers never retry a failed sync
// on the same file: they stop (exit 74), or, where what they were writing
// is still intact elsewhere (dh-route forwarding a queues/main entry), fail
// that one item, take back its name and carry on with the others. Every
// error is an *Error naming the operation and the path; it carries no exit
// status (pkg/cli makes it 74, or 77 for a refused permission, and a
// queue consumer stops on it: pkg/queue).
package durable

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory so that entries created, renamed or removed in
// it are on disk.
func SyncDir(dir string) error {
	// open(2), fsync(2), close(2) and nothing else: see fdFile.
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(dir, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return ioErr("sync dir", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	if _, err = ignoringEINTR(func() (int, error) { return 0, unix.Fsync(fd) }); err != nil {
		err = &os.PathError{Op: "sync", Path: dir, Err: err}
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &os.PathError{Op: "close", Path: dir, Err: cerr}
	}
	return ioErr("sync dir", dir, err)
}

// fdFile is a file written through its descriptor alone, with write(2).
// os.OpenFile and os.Open cost five system calls more per file than
// open(2): Go offers every file to its network poller (fcntl to set
// O_NONBLOCK, epoll_ctl, which refuses a regular file or a directory,
// then fcntl twice to undo it), and every publish opens a staged entry
// and a directory to sync.
type fdFile struct {
	fd   int
	path string
}

func (f fdFile) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil && m == 0 {
			err = io.ErrShortWrite // never for a regular file; no endless loop either
		}
		if err != nil {
			return n, &os.PathError{Op: "write", Path: f.path, Err: err}
		}
		n += m
	}
	return n, nil
}

// ignoringEINTR calls fn until it fails with something other than EINTR,
// as package os does for its system calls.
func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// Stage writes data to the new file path (which must not exist: it is
// created with O_EXCL and mode perm), syncs its data (fdatasync) and closes
// it. The file is not yet visible under its final name; Link or Rename it
// there, then SyncDir that directory. On error nothing is left at path.
// Concurrent Stages each sync their own file only, so they wait neither for
// each other's data nor for other programs' (the file system still batches
// their journal commits).
func Stage(path string, data []byte, perm os.FileMode) error {
	_, err := StageFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return ioErr("write", path, err)
	})
	return err
}

// StageFunc is Stage for content that write produces, such as a stream
// that is never held in memory whole: write writes the content into the
// new file. If write fails, its error is returned as it is and nothing is
// left at path. It returns the file's size: the bytes write wrote.
func StageFunc(path string, perm os.FileMode, write func(w io.Writer) error) (int64, error) {
	// The mode is given to open(2), which creates the file with it (less
	// the umask), so no chmod follows; see fdFile for why not os.OpenFile.
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(perm.Perm()))
	})
	if err != nil {
		return 0, ioErr("create", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	w := &Counter{W: fdFile{fd, path}}
	if err := write(w); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return 0, err
	}
	// The data must be on disk before a name points at it, or a crash
	// could leave a named but empty or partial file. fdatasync suffices:
	// it skips only the metadata that reading the data back does not need
	// (timestamps), and it does flush what it needs: the new size and the
	// block allocation of this freshly created file. The inode's existence
	// and mode are made durable with its name, by the fsync of the
	// directory that follows the link (SyncDir).
	if _, err := ignoringEINTR(func() (int, error) { return 0, unix.Fdatasync(fd) }); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return 0, ioErr("write", path, &os.PathError{Op: "fdatasync", Path: path, Err: err})
	}
	if err := unix.Close(fd); err != nil {
		os.Remove(path)
		return 0, ioErr("close", path, &os.PathError{Op: "close", Path: path, Err: err})
	}
	return w.N, nil
}

// Counter counts the bytes written through it to W.
type Counter struct {
	W io.Writer
	N int64
}

func (c *Counter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
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

// Error is a failed durable change: Op ("rename", "sync dir", ...) on
// Path. It wraps the system's error.
type Error struct {
	Op, Path string
	Err      error
}

func (e *Error) Error() string {
	var pe *os.PathError
	var le *os.LinkError
	if errors.As(e.Err, &pe) || errors.As(e.Err, &le) {
		return e.Op + ": " + e.Err.Error() // already names the path
	}
	return e.Op + " " + e.Path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func ioErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Path: path, Err: err}
}

// MkdirAll creates dir and any missing parents with mode perm, which may
// carry os.ModeSetgid (os.MkdirAll alone never sets it: Go drops 0o2000,
// and mkdir(2) ignores S_ISGID, so each new directory is chmodded to perm
// explicitly, which also sets the permission bits exactly, whatever the
// umask). Directories that exist are left as they are. Each new directory's
// name is made durable by an fsync of its parent.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return ioErr("mkdir", dir, &os.PathError{Op: "mkdir", Path: dir, Err: unix.ENOTDIR})
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	err := os.Mkdir(dir, perm.Perm())
	if errors.Is(err, os.ErrExist) {
		return nil // made meanwhile by someone else
	}
	if err != nil {
		return ioErr("mkdir", dir, err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		return ioErr("chmod", dir, err)
	}
	// The new name is in the parent: sync it there.
	return SyncDir(parent)
}

// Statfs magic numbers of the file systems that keep nothing across a
// reboot (linux/magic.h).
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// ErrVolatile is wrapped in CheckFS's error for a file system that keeps
// nothing across a reboot or power cut.
var ErrVolatile = errors.New("file system keeps nothing across a reboot")

// CheckFS reports whether path (or, if it does not exist yet, its nearest
// existing parent) is on a file system that can keep a promise: tmpfs and
// ramfs accept every fsync and lose everything at a reboot, so an entry
// acknowledged there is not durable. Their error wraps ErrVolatile.
func CheckFS(path string) error {
	p := filepath.Clean(path)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			switch uint32(st.Type) {
			case tmpfsMagic:
				return fmt.Errorf("%s is on tmpfs: %w", path, ErrVolatile)
			case ramfsMagic:
				return fmt.Errorf("%s is on ramfs: %w", path, ErrVolatile)
			}
			return nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, unix.ENOENT) || parent == p {
			return ioErr("statfs", p, err)
		}
		p = parent
	}
}
