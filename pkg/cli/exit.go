package cli

import (
	"errors"
	"io/fs"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// ExitStatus is the exit status a tool ends with after err: the one place
// where errors become exit statuses (sysexits(3), the table of
// docs/operations.md). In order, the first that applies:
//
//   - nil: 0;
//   - a typed error (kind), the outermost in err's chain deciding: an exit
//     status cmd/ gave (pkg/sysexits); a deployment the configuration
//     lacks (config.ErrNoDeployment) or a wrong command line (Usage): 64;
//     bad data (*event.Error): 65; something needed missing
//     (Unavailable): 69; a bug (Bug): 70; a configuration error
//     (*config.Error): 78;
//   - a queue outcome (pkg/queue): retry later 75 (the database down, a
//     lock or queue busy, a queue full), stop 74 (a failed durable write);
//   - a durable write refused permission, or a queue tampered with: 77;
//   - a queue directory missing: 74; an entry unreadable or refused: 65;
//     a handler's panic: 70;
//   - any other error holding a refused permission: 77; another file
//     system error: 74;
//   - anything else: 1.
func ExitStatus(err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return sysexits.OK
	}
	if code := kind(err); code != 0 {
		return code
	}
	switch {
	case queue.IsRetry(err):
		return sysexits.TempFail
	case queue.IsStop(err):
		return sysexits.IOErr
	case errors.Is(err, queue.ErrTampered):
		return sysexits.NoPerm
	case errors.Is(err, queue.ErrMissing):
		return sysexits.IOErr
	case errors.Is(err, queue.ErrUnreadable), errors.Is(err, queue.ErrRefused):
		return sysexits.DataErr
	case errors.Is(err, queue.ErrPanic):
		return sysexits.Software
	case errors.Is(err, fs.ErrPermission):
		return sysexits.NoPerm
	}
	if _, ok := errors.AsType[*durable.Error](err); ok {
		return sysexits.IOErr
	}
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return sysexits.IOErr
	}
	return sysexits.Failure
}

// The kinds of error a package pkg/cli may not import (pkg/arch keeps the
// stages, the store, git and the command runner out of the tools that do
// not need them) declares with a method on its error type, as net.Error
// declares Timeout. A package that has such errors keeps its types in its
// errors.go.
type (
	// usage is a wrong command line, or an argument that cannot be
	// (dh-deploy deploy of a deployment that follows no branch by name).
	usage interface{ Usage() bool }
	// unavailable is something needed that is not there: a program, a
	// service, a run to roll back to.
	unavailable interface{ Unavailable() bool }
	// bug is a state the program should never be in, or a caller's
	// mistake.
	bug interface{ Bug() bool }
)

// Typed reports whether err's chain holds a typed error (ExitStatus's
// second case): what failed said what it is, beyond a queue outcome or a
// plain error.
func Typed(err error) bool { return kind(err) != 0 }

// kind returns the exit status of the outermost typed error in err's
// chain (queue.Walk's order), or 0 if it has none.
func kind(err error) int {
	code := 0
	queue.Walk(err, func(e error) bool {
		code = kindOf(e)
		return code != 0
	})
	return code
}

// kindOf is the exit status of err itself as a typed error, or 0.
func kindOf(err error) int {
	switch e := err.(type) {
	case *sysexits.Error:
		return e.Code
	case *config.Error:
		return sysexits.Config
	case *event.Error:
		return sysexits.DataErr
	}
	if u, ok := err.(usage); ok && u.Usage() {
		return sysexits.Usage
	}
	if u, ok := err.(unavailable); ok && u.Unavailable() {
		return sysexits.Unavailable
	}
	if b, ok := err.(bug); ok && b.Bug() {
		return sysexits.Software
	}
	if err == config.ErrNoDeployment {
		return sysexits.Usage
	}
	return 0
}
