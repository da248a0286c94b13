package setup

// usageError is an argument setup or add cannot take (exit 64: pkg/cli
// tells it by its Usage method, cli.ExitStatus). A configuration error is
// a *config.Error, a missing program or nginx a *sysexec.UnavailableError,
// a refusal wraps fs.ErrPermission.
type usageError struct{ error }

func (usageError) Usage() bool     { return true }
func (e usageError) Unwrap() error { return e.error }
