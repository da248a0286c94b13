package receive

// usageError is a wrong argument of dh-receive hook (exit 64: pkg/cli
// tells it by its Usage method, cli.ExitStatus). Bad lines are an
// *event.Error, a refusal wraps fs.ErrPermission, a dh-receive that cannot
// be reached is a queue.Retry.
type usageError struct{ error }

func (usageError) Usage() bool     { return true }
func (e usageError) Unwrap() error { return e.error }
