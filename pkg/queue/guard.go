package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
)

// What a writer of a queue can do to its consumer, and what stops it.
//
// Writers may create files in the queue directory and in .tmp/ (an ACL
// gives them rwx there), so without care a writer could swap .tmp/ or
// .lock for a symbolic link (the consumer's sweep then deletes files
// where the link points; its lock code truncates the link's target), or
// drop a link, a FIFO or a forged entry where an entry belongs. So:
//
//   - Queue directories carry the sticky bit (DirMode): a writer can
//     remove or rename only its own files, never .tmp/, failed/ or .lock,
//     which belong to the consumer. Lock adds the bit to an existing
//     directory that lacks it.
//   - The consumer opens the queue directory, .tmp/, failed/ and .lock
//     without following symbolic links and checks (fstat) that each is a
//     real directory or regular file owned by the consumer's own user;
//     anything else stops it with an error naming the file and the fix.
//   - Entries are opened without following links and read from the file
//     that was checked: a regular file whose owner is root, the consumer's
//     own user or one of the queue's writers (Options.Writers). Any other
//     entry is moved to failed/ with the reason in its .why, unread.
//   - Sweeping .tmp/, removing entries and moving them to failed/ act
//     relative to the open directories (unlinkat, renameat), so no path is
//     looked up again between the check and the change.

// ErrTampered marks a queue whose own files are not what they should be
// (pkg/cli: permission denied, 77).
var ErrTampered = errors.New("not what the queue's consumer made")

// tamperHint is how an operator repairs a queue a writer tampered with.
const tamperHint = "move the file away (mv) and look at who made it; then recreate the queue's directories " +
	"as installed (systemd-tmpfiles --create dh-deployer.conf, or dh-deployer-acl queues / deployment NAME)"

// openOwnDir opens the directory name, relative to parent (or the current
// directory if parent is nil), without following a symbolic link, checks
// that it is a directory owned by the caller's effective user, and adds the
// sticky bit (DirMode) if it lacks it.
func openOwnDir(parent *os.File, name string) (*os.File, error) {
	dirfd, shown := unix.AT_FDCWD, name
	if parent != nil {
		dirfd, shown = int(parent.Fd()), parent.Name()+"/"+name
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, tampered(shown, "is not a directory (a symbolic link or a file)")
	}
	if err != nil {
		return nil, fmt.Errorf("open queue directory %s: %w", shown, err)
	}
	d := os.NewFile(uintptr(fd), shown)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", shown, err)
	}
	if int(st.Uid) != os.Geteuid() {
		d.Close()
		return nil, tampered(shown, "is a directory owned by "+userName(int(st.Uid))+", not by the consumer "+userName(os.Geteuid()))
	}
	if st.Mode&unix.S_ISVTX == 0 {
		// An install from before the sticky bit: the owner may add it. A
		// unit with RestrictSUIDSGID= refuses a chmod that keeps setgid;
		// then systemd-tmpfiles (docs/operations.md, Upgrading) adds it,
		// and the checks here hold meanwhile.
		unix.Fchmod(fd, st.Mode&0o7777|unix.S_ISVTX)
	}
	return d, nil
}

// openLockAt opens (creating it) the consumer's lock file name in dir
// without following a symbolic link and checks that it is a regular file
// owned by the caller's effective user.
func openLockAt(dir *os.File, name string) (*os.File, error) {
	shown := dir.Name() + "/" + name
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o640)
	if errors.Is(err, unix.ELOOP) {
		return nil, tampered(shown, "is a symbolic link")
	}
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	f := os.NewFile(uintptr(fd), shown)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", shown, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		f.Close()
		return nil, tampered(shown, "is not a regular file")
	case int(st.Uid) != os.Geteuid():
		f.Close()
		return nil, tampered(shown, "is owned by "+userName(int(st.Uid))+", not by the consumer "+userName(os.Geteuid()))
	}
	return f, nil
}

func tampered(path, what string) error {
	return hint.With(fmt.Errorf("%s %s: %w", path, what, ErrTampered), tamperHint)
}

// ErrRefused is wrapped in the reason of an entry the consumer refused
// unread: not a regular file, or not from one of the queue's writers.
var ErrRefused = errors.New("entry refused")

// readEntry opens the entry name in the queue directory dir without
// following a symbolic link (and without blocking on a FIFO), checks that
// it is a regular file whose owner may write the queue, and reads it from
// that same open file. A refusal wraps ErrRefused (the
// entry goes to failed/); an entry gone since the scan is errGone.
func readEntry(dir *os.File, name string, writer func(uid int) bool) (*Entry, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, errGone // moved away by an operator since the scan
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%w: %s is a symbolic link, not a regular file", ErrRefused, name)
	case err != nil:
		return nil, fmt.Errorf("read entry: %w", &os.PathError{Op: "open", Path: name, Err: err})
	}
	f := os.NewFile(uintptr(fd), dir.Name()+"/"+name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("read entry: stat %s: %w", name, err)
	}
	uid := int(st.Uid)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: %s is not a regular file (mode %#o, owner %s)", ErrRefused, name, st.Mode&unix.S_IFMT, userName(uid))
	}
	if !writer(uid) {
		return nil, hint.With(fmt.Errorf(
			"%w: %s is owned by %s, who is not a writer of queue %s", ErrRefused, name, userName(uid), dir.Name()),
			"only the queue's writers (the [queues] writers of the configuration), root and its consumer may add entries")
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read entry %s: %w", name, err)
	}
	return &Entry{Name: name, Path: f.Name(), Data: data, Owner: uid}, nil
}

// ReadEntry reads the entry file path as a consumer does (readEntry),
// from whoever owns it: for a replay, and for a publisher that looks into
// a queue whose consumer, a less trusted user, could have put a link or a
// FIFO there (dh-route's Holds). A missing file wraps os.ErrNotExist.
func ReadEntry(path string) (*Entry, error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	e, err := readEntry(dir, filepath.Base(path), func(int) bool { return true })
	if err == errGone {
		return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
	}
	if err != nil {
		return nil, err
	}
	e.Path = path
	return e, nil
}

// writers is the test Options.Writers turns into: root, the consumer's
// own user and the listed users may add entries.
func writers(uids []int) func(int) bool {
	self := os.Geteuid()
	return func(uid int) bool { return uid == 0 || uid == self || slices.Contains(uids, uid) }
}

// userName is a user's name for messages, or its number.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "uid " + id
}
