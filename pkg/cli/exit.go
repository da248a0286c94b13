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
//   - an error classified with an exit status (pkg/sysexits: usage 64,
//     bad data 65, ...): that status, the outermost in the chain;
//   - a deployment the configuration lacks (config.ErrNoDeployment): 64;
//     a configuration error (*config.Error): 78; a bad entry (*event.Error): 65;
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
	if e, ok := errors.AsType[*sysexits.Error](err); ok && e.Code != sysexits.OK {
		return e.Code
	}
	switch {
	case errors.Is(err, config.ErrNoDeployment):
		return sysexits.Usage
	case errors.As(err, new(*config.Error)):
		return sysexits.Config
	case errors.As(err, new(*event.Error)):
		return sysexits.DataErr
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
