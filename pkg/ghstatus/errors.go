package ghstatus

// The kinds of this package's errors that no other package owns, which
// pkg/cli tells apart by their methods (cli.ExitStatus); the text is the
// wrapped error's.

// bugError is a status no caller should ask for (exit 70).
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
