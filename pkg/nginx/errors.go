package nginx

// The kinds of this package's errors that no other package owns, which
// pkg/cli tells apart by their methods (cli.ExitStatus); the text is the
// wrapped error's. Bad data (an entry, a site file, a failed
// configuration test) is an *event.Error.

// unavailableError is a test or reload program that cannot be found
// (exit 69).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }

// bugError is a manifest or journal dh-nginx cannot read back: it writes
// them whole (exit 70).
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
