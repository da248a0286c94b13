package sysexec

// UnavailableError is a program that is missing, or something running one
// needs that the host lacks (its configuration directory, read access to
// a repository). pkg/cli makes it exit 69 (cli.ExitStatus asks its
// Unavailable method: cli may not import this package). Every package
// that runs programs uses it.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string   { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error   { return e.Err }
func (*UnavailableError) Unavailable() bool { return true }

// bugError is a Cmd no caller should make (exit 70: its Bug method).
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
