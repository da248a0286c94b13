package notify

// The kinds of this package's errors, which pkg/cli tells apart by their
// methods (cli.ExitStatus); the text is the wrapped error's.

// unavailableError is a sendmail that is missing or failed (exit 69).
type unavailableError struct{ error }

func (unavailableError) Unavailable() bool { return true }
func (e unavailableError) Unwrap() error   { return e.error }

// bugError is a message that could not be encoded (exit 70).
type bugError struct{ error }

func (bugError) Bug() bool       { return true }
func (e bugError) Unwrap() error { return e.error }

// exTempFail is the exit status (sysexits(3) EX_TEMPFAIL) with which
// sendmail says "try again later".
const exTempFail = 75
