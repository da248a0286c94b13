package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped in the error of TryLock (a Retry) when another
// process holds the lock.
var ErrLocked = errors.New("lock is held")

// Lock takes an exclusive flock(2) on the lock file path, creating it,
// and returns the function that releases it: unlock, err := Lock(ctx,
// path, nil); defer unlock(). The lock lasts until unlock is called or
// the process dies. A symbolic link at path is refused, never followed,
// and so is anything but a regular file.
//
// If another process holds the lock, Lock calls waiting (if not nil) once
// and blocks in flock(2) until the lock is free, without polling, or
// until ctx ends. flock(2) cannot be interrupted, so a Lock whose ctx
// ends returns ctx's error at once and leaves behind a goroutine (and
// the OS thread it blocks) that still waits for the lock, and releases it
// the moment it gets it: a cancelled Lock costs a thread until the holder
// lets go, and never holds the lock for anyone.
func Lock(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := openLock(path)
	if err != nil {
		return nil, err
	}
	return lockFile(ctx, f, true, waiting)
}

// TryLock is Lock that does not wait: if another process holds the lock
// it fails at once with an error wrapping ErrLocked (a Retry).
func TryLock(path string) (unlock func(), err error) {
	f, err := openLock(path)
	if err != nil {
		return nil, err
	}
	return lockFile(context.Background(), f, false, nil)
}

// openLock opens (creating it) the lock file path, refusing a symbolic
// link or anything but a regular file.
func openLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o660)
	if errors.Is(err, syscall.ELOOP) {
		return nil, tampered(path, "is a symbolic link")
	}
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, tampered(path, "is not a regular file")
	}
	return f, nil
}

// lockFile takes an exclusive flock(2) on f, which it owns from then on:
// it returns the function that releases the lock and closes f, or an
// error, f being closed (at once, or, after a cancelled wait, when the
// blocked flock(2) returns). Without wait a held lock is an error
// wrapping ErrLocked; with wait, lockFile calls waiting and blocks.
func lockFile(ctx context.Context, f *os.File, wait bool, waiting func()) (unlock func(), err error) {
	unlock = func() { f.Close() } // closing the last descriptor releases a flock
	// Try first without blocking: the common case costs no goroutine,
	// and waiting is called only when there is something to wait for.
	err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case err == nil:
		return unlock, nil
	case !errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	case !wait:
		f.Close()
		return nil, Retry(fmt.Errorf("%s: %w", f.Name(), ErrLocked))
	}
	if waiting != nil {
		waiting()
	}
	if err := ctx.Err(); err != nil {
		f.Close()
		return nil, err
	}
	// A blocking flock(2) sleeps in the kernel until the holder lets go,
	// and no signal Go can aim at it would end it early. So it runs in
	// its own goroutine, which owns f: if ctx ends first we return, and
	// the goroutine, once flock(2) returns, closes f, which releases the
	// lock it may just have got.
	got := make(chan error) // unbuffered: a send completes only if we take it
	abandoned := make(chan struct{})
	go func() {
		err := flock(f, unix.LOCK_EX)
		select {
		case got <- err:
		case <-abandoned:
			f.Close()
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		return unlock, nil
	case <-ctx.Done():
		close(abandoned) // no send can complete now: the goroutine closes f
		return nil, ctx.Err()
	}
}

// flock calls flock(2) on f, again after EINTR.
func flock(f *os.File, how int) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = conn.Control(func(fd uintptr) {
		for {
			ferr = unix.Flock(int(fd), how)
			if ferr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
