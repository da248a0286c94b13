package cli_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// ExitStatus is the one map from errors to exit statuses: the queue's
// outcomes, the typed errors of the packages and sysexits classes.
func TestExitStatus(t *testing.T) {
	boom := errors.New("boom")
	perm := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission}
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain", boom, 1},
		{"usage", sysexits.Errorf(sysexits.Usage, "bad flag"), 64},
		{"config, with a hint", hint.With(sysexits.New(sysexits.Config, boom), "fix it"), 78},
		{"config.Error", fmt.Errorf("load: %w", &config.Error{Err: boom}), 78},
		{"config.Error reading a secret refused", &config.Error{Err: perm}, 78},
		{"unknown deployment", fmt.Errorf("%w %q in x.toml", config.ErrNoDeployment, "api"), 64},
		{"retry", fmt.Errorf("route: %w", queue.Retry(boom)), 75},
		{"retry after, with a hint", hint.With(queue.RetryAfter(boom, 5), "wait"), 75},
		{"stop", queue.Stop(boom), 74},
		{"failed durable write", &durable.Error{Op: "sync dir", Path: "/q", Err: boom}, 74},
		{"durable write refused", &durable.Error{Op: "rename", Path: "/q", Err: perm}, 77},
		{"failed entry hides a retry", queue.Fail(queue.Retry(boom)), 1},
		{"a failed run by hand", sysexits.New(sysexits.Failure, queue.Retry(boom)), 1},
		{"queue tampered", fmt.Errorf("/q/.tmp: %w", queue.ErrTampered), 77},
		{"queue missing", fmt.Errorf("%w: /q", queue.ErrMissing), 74},
		{"entry unreadable", fmt.Errorf("replay: %w (%w)", boom, queue.ErrUnreadable), 65},
		{"handler panicked", fmt.Errorf("%w: x", queue.ErrPanic), 70},
		{"permission", perm, 77},
		{"file system", &fs.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}, 74},
	} {
		if got := cli.ExitStatus(tt.err); got != tt.want {
			t.Errorf("%s: ExitStatus(%v) = %d; want %d", tt.name, tt.err, got, tt.want)
		}
	}
}
