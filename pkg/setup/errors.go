package setup

// The kinds of this package's errors that no other package owns, which
// pkg/cli tells apart by their methods (cli.ExitStatus); the text is the
// wrapped error's. A configuration error is a *config.Error, a refusal
// wraps fs.ErrPermission.

// usageError is an argument setup or add cannot take (exit 64).
type usageError struct{ error }

func (usageError) Usage() bool     { return true }
func (e usageError) Unwrap() error { return e.error }

// unavailableError is something the host lacks: a program, nginx's
// sites-enabled, read access to a clone URL (exit 69).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }
