package sysexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// OutputSlack is how much older than the start of a run an output file may
// look and still be the run's: file times come from a coarse kernel clock.
const OutputSlack = time.Second

// ReadOutput returns what a root unit left in its output file path (its
// StandardOutput=truncate:path) during a run that started at started: the
// last max bytes at most. The file is opened without following a symbolic
// link and without blocking, and must be a regular file. It is an error
// when the file is missing, is not a regular file, or was last written
// before the run began (the unit never ran, because polkit refused it or
// systemctl failed): a previous run's output is never taken for this
// one's.
func ReadOutput(path string, started time.Time, max int64) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if fi.ModTime().Before(started.Add(-OutputSlack)) {
		return "", fmt.Errorf("%s: %w", path, ErrStaleOutput)
	}
	if size := fi.Size(); size > max {
		if _, err := f.Seek(size-max, io.SeekStart); err != nil {
			return "", err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, max))
	return string(data), err
}

// ErrStaleOutput says that an output file is older than the run.
var ErrStaleOutput = errors.New("not written by this run")
