package durable

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// The functions here act relative to an open directory (openat(2) and
// friends) and never follow a symbolic link in the name they are given:
// for directories that other users may write, where a name could be
// swapped for a link between a check and its use (pkg/queue's consumer).

// WriteFileAt atomically replaces the file name in dir with data, like
// WriteFile: it writes "."+name+".tmp" (created with O_EXCL|O_NOFOLLOW,
// any leftover removed first), syncs its data, renames it over name and
// fsyncs dir. A symbolic link at either name is replaced, never followed.
func WriteFileAt(dir *os.File, name string, data []byte, perm os.FileMode) error {
	tmp := "." + name + ".tmp"
	unix.Unlinkat(int(dir.Fd()), tmp, 0)
	fd, err := unix.Openat(int(dir.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return ioErr("create", at(dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), at(dir, tmp))
	fail := func(op string, err error) error {
		f.Close()
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return ioErr(op, at(dir, tmp), err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	// The data before the name, as in Stage.
	if err := unix.Fdatasync(fd); err != nil {
		return fail("fdatasync", err)
	}
	if err := f.Close(); err != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return ioErr("close", at(dir, tmp), err)
	}
	if err := unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), name); err != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return ioErr("rename", at(dir, name), err)
	}
	return ioErr("sync dir", dir.Name(), dir.Sync())
}

// RenameAt moves oldname in olddir to newname in newdir (renameat(2),
// which moves a symbolic link itself, never its target) and fsyncs newdir,
// then olddir if it is another directory: a crash can leave the file in
// both places, never in neither.
func RenameAt(olddir *os.File, oldname string, newdir *os.File, newname string) error {
	if err := unix.Renameat(int(olddir.Fd()), oldname, int(newdir.Fd()), newname); err != nil {
		return ioErr("rename", at(olddir, oldname), err)
	}
	if err := newdir.Sync(); err != nil {
		return ioErr("sync dir", newdir.Name(), err)
	}
	if olddir != newdir {
		return ioErr("sync dir", olddir.Name(), olddir.Sync())
	}
	return nil
}

// RemoveAt unlinks name (a file or a symbolic link, never followed) from
// dir without syncing dir: callers sync once for a batch of removals.
// A name that is already gone is not an error.
func RemoveAt(dir *os.File, name string) error {
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return ioErr("remove", at(dir, name), err)
}

func at(dir *os.File, name string) string { return dir.Name() + "/" + name }
