package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// WakeFile is the named pipe (FIFO) in a queue's directory that wakes a
// consumer waiting with Options.Poll: a publisher writes a byte into it
// after publishing (Wake). It is only a hint, like a file notification:
// the consumer also checks the directory's modification time every Poll
// and rescans everything periodically.
//
// A waiting consumer costs nothing this way (a read blocked on a pipe, no
// inotify instance, of which a user has 128 by default), and is woken at
// once. The pipe is writable by anyone who can reach the queue directory
// (the directory's own permissions decide who can): a byte in it only makes
// the consumer look at its queue again.
const WakeFile = ".wake"

// wakeMode is the FIFO's mode: the consumer reads; the publishers, which
// the queue directory's ACL lets in but which are not its owner (dh-route
// for a deployment queue), write.
const wakeMode = 0o622

// Wake nudges the consumer waiting on q, if any: it writes one byte into
// q's wake pipe without blocking. No pipe, no reader or a full pipe (the
// consumer is awake already) are not errors: Wake is a hint and never
// fails.
func (q *Queue) Wake() {
	path := filepath.Join(q.dir, WakeFile)
	// O_NONBLOCK: opening a FIFO without a reader fails at once (ENXIO)
	// instead of waiting for one; O_NOFOLLOW: never through a symlink.
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return // not our pipe: write nothing into a file
	}
	syscall.Write(fd, []byte{1})
}

// waker waits on q's wake pipe, made if missing (C receives when a
// publisher writes into it), and tells whether q's directory changed since
// the last scan (changed, which the consumer calls every Options.Poll).
type waker struct {
	C     chan struct{}
	pipe  *os.File
	dir   string
	stamp time.Time // the directory's mtime at the last scan
	again bool      // the last scan was close to stamp: check once more
}

// newWaker starts a waker of q. Without a pipe (the file system has none,
// or WakeFile is something else) changed still works; the error says why.
func (q *Queue) newWaker() (*waker, error) {
	w := &waker{C: make(chan struct{}, 1), dir: q.dir}
	path := filepath.Join(q.dir, WakeFile)
	err := syscall.Mkfifo(path, wakeMode)
	if err == nil {
		// The mode asked for, not the umask's: publishers write.
		err = os.Chmod(path, wakeMode)
	} else if errors.Is(err, os.ErrExist) {
		err = nil
	}
	var pipe *os.File
	if err == nil {
		// O_RDWR: the consumer holds a writer too, so the pipe never
		// reads end-of-file when no publisher has it open, and opening
		// never waits. Go polls a FIFO with the runtime's netpoller, so a
		// blocked Read holds no thread, and Close ends it.
		pipe, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	}
	if err == nil {
		// Only the consumer's own pipe: one a writer put there first (the
		// sticky queue directory keeps it from replacing the consumer's)
		// is not used, and the directory check alone wakes the consumer.
		// (Stat, not Fd: Fd would make reads blocking, and Close could no
		// longer end the reader.)
		var st *syscall.Stat_t
		if fi, serr := pipe.Stat(); serr == nil && fi.Mode().Type() == os.ModeNamedPipe {
			st, _ = fi.Sys().(*syscall.Stat_t)
		}
		switch {
		case st == nil:
			err = fmt.Errorf("%s is not a named pipe", path)
		case int(st.Uid) != os.Geteuid():
			err = fmt.Errorf("%s belongs to another user; remove it", path)
		}
		if err != nil {
			pipe.Close()
			pipe = nil
		}
	}
	if err != nil {
		err = fmt.Errorf("wake pipe: %w", err)
	}
	w.pipe = pipe
	if pipe != nil {
		go func() {
			buf := make([]byte, 512)
			for {
				if _, err := pipe.Read(buf); err != nil {
					return // closed
				}
				w.signal()
			}
		}()
	}
	return w, err
}

func (w *waker) signal() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// scanned records the directory's modification time just before a scan
// (List), so that changed reports only what the scan may have missed.
// Times are as fine as the kernel's clock tick: a change within the same
// tick as the stamp leaves it unchanged, so a stamp younger than a second
// makes the next check report a change once anyway.
func (w *waker) scanned() {
	if fi, err := os.Stat(w.dir); err == nil {
		w.stamp = fi.ModTime()
		w.again = time.Since(w.stamp) < time.Second
	}
}

func (w *waker) changed() bool {
	fi, err := os.Stat(w.dir)
	if err != nil {
		return true // let the scan report it
	}
	if !fi.ModTime().Equal(w.stamp) || w.again {
		w.again = false
		return true
	}
	return false
}

// close ends the waker's pipe reader.
func (w *waker) close() {
	if w.pipe != nil {
		w.pipe.Close()
	}
}
