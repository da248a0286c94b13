// Package sysexits names the exit statuses of BSD sysexits(3) and
// classifies errors with one (a usage error is 64, a configuration error
// 78). pkg/cli's ExitStatus maps the error a tool returns to its exit
// status, reading these classes among others; what happens to a queue
// entry is never an exit status (pkg/queue's outcomes), and a hint is
// pkg/hint's. pkg/queue, pkg/durable and pkg/hint never link this package
// (pkg/arch); issue 18 asks the other packages to move to typed errors.
package sysexits

import (
	"errors"
	"fmt"
)

// Exit statuses used by every dh-* tool.
const (
	OK          = 0
	Failure     = 1  // unclassified failure
	Usage       = 64 // bad command line
	DataErr     = 65 // bad input data: the entry goes to failed/
	Unavailable = 69 // a needed program or service is missing
	Software    = 70 // internal error, a bug
	IOErr       = 74 // I/O error: stop, never carry on after a failed fsync
	TempFail    = 75 // temporary: Postgres down, lock busy; try again later
	NoPerm      = 77 // permission denied
	Config      = 78 // bad configuration
)

// Error is an error with an exit status.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New wraps err with an exit status. It returns nil if err is nil.
func New(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Errorf formats an error with an exit status; %w wraps as in fmt.Errorf.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Code returns the exit status for err: 0 for nil, the code of the
// outermost *Error in its chain, else Failure.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}

// Is reports whether err is classified with the given code.
func Is(err error, code int) bool { return err != nil && Code(err) == code }
