package status

// unavailableError is an address the status page cannot listen on
// (exit 69: pkg/cli tells it by its Unavailable method, cli.ExitStatus).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }
