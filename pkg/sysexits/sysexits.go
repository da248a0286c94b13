// Package sysexits classifies errors by the exit status a tool should end
// with, following BSD sysexits(3), and carries an optional hint for the
// person reading the message.
//
// Lower packages wrap their errors with a code where they know the class
// (a config error is 78, a database that is down is 75); pkg/cli maps the
// error a tool returns to its exit status with Code. An error nobody
// classified exits 1.
package sysexits

import (
	"errors"
	"fmt"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
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

// WithHint wraps err with a hint (pkg/hint), keeping its exit status.
func WithHint(err error, h string) error { return hint.With(err, h) }

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

// Hint returns the outermost hint in err's chain, or "" (hint.Of).
func Hint(err error) string { return hint.Of(err) }
