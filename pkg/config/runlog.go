package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRunLog is wrapped by OpenRunLog's error for a path that is not a
// regular file directly in the deployment's log directory.
var ErrNotRunLog = errors.New("not a run log")

// OpenRunLog opens the run log path (a run's log_path, which the
// deployment's own user recorded) of deployment, for reading: only a
// regular file directly in RunLogDir(stateDir, deployment), opened
// through an os.Root, so that neither "..", nor a symbolic link out of the
// directory, nor a FIFO makes its reader (dh-route) read anything else.
func OpenRunLog(stateDir, deployment, path string) (*os.File, error) {
	dir := RunLogDir(stateDir, deployment)
	if !filepath.IsAbs(path) || filepath.Dir(path) != dir || !filepath.IsLocal(filepath.Base(path)) {
		return nil, fmt.Errorf("the run's log is not in %s: %w", dir, ErrNotRunLog)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Base(path), os.O_RDONLY|syscall.O_NONBLOCK, 0) // no "..", no symlink out of dir; a FIFO does not block
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("the run's log is not a regular file: %w", ErrNotRunLog)
		}
		return nil, err
	}
	return f, nil
}
