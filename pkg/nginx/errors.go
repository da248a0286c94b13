package nginx

// bugError is a manifest or journal dh-nginx cannot read back: it writes
// them whole (exit 70: pkg/cli tells it by its Bug method,
// cli.ExitStatus). Bad data (an entry, a site file, a failed
// configuration test) is an *event.Error, a missing program a
// *sysexec.UnavailableError.
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }
