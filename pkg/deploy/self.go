package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
)

// Tools are the binaries a self deployment installs.
var Tools = []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"}

// updateSelf is the part of a self deployment after its steps: install
// the built tools, migrate with the new dh-route, restart the other
// stages. Any failure fails the run; what was installed stays installed
// (the next run replaces it), and the old daemons keep running until
// restarted.
func (r *run) updateSelf(ctx context.Context) error {
	self := r.w.d.Self
	built := filepath.Join(r.w.d.Path, self.BuildDir)
	for _, tool := range Tools { // check all before replacing any
		if err := executable(filepath.Join(built, tool)); err != nil {
			return fmt.Errorf("self update: the steps did not build %s: %w", tool, err)
		}
	}
	for _, tool := range Tools {
		data, err := os.ReadFile(filepath.Join(built, tool))
		if err != nil {
			return queue.Stop(fmt.Errorf("self update: %w", err))
		}
		dst := filepath.Join(self.InstallDir, tool)
		if err := durable.WriteFile(dst, data, 0o755); err != nil {
			return fmt.Errorf("self update: install %s: %w", dst, err)
		}
		r.out.Line("installed %s (%d bytes)", dst, len(data))
	}
	if self.Migrates() {
		route := filepath.Join(self.InstallDir, "dh-route")
		if err := r.command(ctx, "migrate", []string{route, "-c", r.w.cfg.File, "migrate"}, "DH_DATABASE_URL"); err != nil {
			return err
		}
	}
	for _, argv := range self.Restart {
		if err := r.command(ctx, "restart", argv); err != nil {
			return err
		}
	}
	return nil
}

// restartSelf runs restart_self once the run is recorded. It is the last
// thing the run does: its failure is logged, the run stays succeeded.
func (r *run) restartSelf() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.command(ctx, "restart_self", r.w.d.Self.RestartSelf); err != nil {
		r.log.Error("self update: restarting the workers failed; restart them by hand", "err", err)
	}
}

// command runs one of the self deployment's own commands with the steps'
// environment (plus the named variables of the worker's), output to the
// run's log.
func (r *run) command(ctx context.Context, what string, argv []string, pass ...string) error {
	env, err := StepEnv(r.w.getenv, r.w.d, r.rec)
	env = append(env, environ(pass...)(r.w.getenv)...)
	prog := ""
	if err == nil {
		prog, err = lookProgram(argv[0], r.w.d.Path, env)
	}
	if err != nil {
		return fmt.Errorf("self update: %s: %w", what, err)
	}
	r.out.Line("%s: %s", what, quoteArgv(argv))
	_, err = sysexec.Run(ctx, sysexec.Cmd{Path: prog, Args: argv[1:], Dir: r.w.d.Path, Env: env,
		Timeout: r.w.d.StepTimeout, Stream: r.out, MaxOutput: 4 << 10})
	if err != nil {
		return fmt.Errorf("self update: %s (%s): %w", what, quoteArgv(argv), err)
	}
	return nil
}
