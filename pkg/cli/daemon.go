package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// What the run commands of the daemons (dh-route, dh-deploy, dh-nginx,
// dh-cert) share besides Main: SIGHUP reloads and waiting for the
// database at start.

// Hangups makes SIGHUP a request to reload the configuration instead of
// what it is by default, the end of the process. A daemon calls it first
// thing, so that a SIGHUP while it starts (waiting for the database) is
// kept for Reload rather than fatal, and defers the returned stop.
func (e *Env) Hangups() (h *Hangup, stop func()) {
	h = &Hangup{env: e, sig: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(h.sig, syscall.SIGHUP)
	var once sync.Once
	return h, func() {
		once.Do(func() {
			signal.Stop(h.sig)
			close(h.done)
		})
	}
}

// Hangup receives a daemon's SIGHUPs; see Hangups.
type Hangup struct {
	env     *Env
	sig     chan os.Signal
	done    chan struct{}
	current atomic.Pointer[config.Config] // what Reload last handed over
}

// Reload starts reloading the configuration on each SIGHUP (including one
// received since Hangups) until ctx ends or Hangups' stop is called. cfg
// is the configuration in use. On each signal it loads the configuration
// file again and hands it to apply, which takes it up (between two
// entries) or says why not. A file that does not load, or that apply
// refuses, is logged as an error and the configuration in use is kept.
// queue_dir and database_url cannot change without a restart: a change is
// logged as a warning and the old values stay in the new configuration.
func (h *Hangup) Reload(ctx context.Context, cfg *config.Config, apply func(*config.Config) error) {
	h.current.Store(cfg)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.done:
				return
			case <-h.sig:
				if next := h.reload(cfg, apply); next != nil {
					cfg = next
					h.current.Store(cfg)
				}
			}
		}
	}()
}

// Writers is the queue.Options.Writers of the consumer of queue name
// (config.Config.QueueWriters): the writers of the configuration Reload
// last handed over, so that a reload that adds an nginx deployment (and
// with it a writer of queues/nginx) holds for the next entry already.
// Call it after Reload.
func (h *Hangup) Writers(name string) func() []int {
	return func() []int { return h.current.Load().QueueWriters(name) }
}

// reload loads the file once and returns the configuration now in use,
// or nil if it is unchanged.
func (h *Hangup) reload(old *config.Config, apply func(*config.Config) error) *config.Config {
	log := h.env.Logger
	cfg, err := config.Load(h.env.Config)
	if err == nil && (cfg.QueueDir != old.QueueDir || cfg.DatabaseURL != old.DatabaseURL) {
		log.Warn("queue_dir and database_url changes take effect only after a restart")
		cfg.QueueDir, cfg.DatabaseURL = old.QueueDir, old.DatabaseURL
	}
	if err == nil {
		err = apply(cfg)
	}
	if err != nil {
		log.Error("configuration reload failed; keeping the old one", errAttrs(err)...)
		return nil
	}
	log.Info("configuration reloaded", "deployments", strings.Join(cfg.DeploymentNames(), ","))
	return cfg
}

// WaitForDatabase returns, if wait is set, what a daemon does each time it
// finds the database unavailable at start (store.OpenWait's waiting), or
// nil (run --once, which fails at once with TempFail instead). It logs one
// warning per distinct reason (not one per attempt) and tells the service
// manager it is up and what it waits for (READY=1, STATUS=waiting for the
// database: ...): the daemon has started, and neither `systemctl start`
// nor the boot waits for the database with it. READY=1 again once
// connected changes nothing but the status.
func (e *Env) WaitForDatabase(wait bool) func(err error, retry time.Duration) {
	if !wait {
		return nil
	}
	last := ""
	return func(err error, retry time.Duration) {
		if msg := err.Error(); msg != last {
			last = msg
			e.Logger.Warn("waiting for the database", errAttrs(err, "retry", retry)...)
		}
		systemd.Notify(e.Getenv, fmt.Sprintf("READY=1\nSTATUS=waiting for the database: %v", err))
	}
}

// errAttrs are the log attributes of err: err, its hint if it has one,
// then more.
func errAttrs(err error, more ...any) []any {
	attrs := []any{"err", err}
	if h := hint.Of(err); h != "" {
		attrs = append(attrs, "hint", h)
	}
	return append(attrs, more...)
}
