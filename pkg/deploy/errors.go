package deploy

// The kinds of this package's errors that no other package owns, which
// pkg/cli tells apart by their methods (cli.ExitStatus); the text is the
// wrapped error's. Bad data is an *event.Error, a configuration error a
// *config.Error.

// usageError is an argument the deployment cannot take (exit 64).
type usageError struct{ error }

func (usageError) Usage() bool     { return true }
func (e usageError) Unwrap() error { return e.error }

// unavailableError is a run to roll back to that is not there (exit 69;
// a step's program that is missing is a *sysexec.UnavailableError).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }
