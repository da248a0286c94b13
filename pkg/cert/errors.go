package cert

// bugError is a request no caller should make, or one that cannot be
// encoded (exit 70: pkg/cli tells it by its Bug method, cli.ExitStatus).
// Bad data is an *event.Error, a configuration error a *config.Error.
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
