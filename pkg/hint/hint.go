// Package hint attaches to an error one line telling the person who reads
// it what to check or do ("is PostgreSQL running? ..."). pkg/cli prints it
// under the error:
//
//	dh-route: error: connect to PostgreSQL at /run/postgresql: no such file or directory
//	dh-route: hint: is PostgreSQL running? check database_url
//
// A hint changes nothing else about the error: errors.Is and errors.As see
// through it, and it carries no exit status nor queue outcome.
package hint

import "errors"

// Error is an error with a hint.
type Error struct {
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With wraps err with a hint. It returns nil if err is nil.
func With(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Hint: hint}
}

// Of returns the outermost hint in err's chain, or "".
func Of(err error) string {
	for {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
}
