package config

import "fmt"

// Error is a problem of the configuration: the file, a key, a secret or
// environment file. pkg/cli makes it exit status 78 (bad configuration),
// which the units do not restart on.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// errorf formats a configuration error; %w wraps as in fmt.Errorf.
func errorf(format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...)}
}
