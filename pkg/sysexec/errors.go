package sysexec

// The kinds of this package's errors, which pkg/cli tells apart by their
// methods (cli.ExitStatus); the text is the wrapped error's.

// unavailableError is a program that is missing (exit 69).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }

// bugError is a Cmd no caller should make (exit 70).
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
