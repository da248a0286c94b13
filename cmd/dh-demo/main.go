// dh-demo runs dh-deployer's main job end to end on a throwaway setup:
// it starts a private PostgreSQL, makes a bare git repository with a tiny
// app, writes a configuration, starts dh-receive (on a free port of
// 127.0.0.1), dh-route and dh-deploy, pushes a commit, posts a signed
// push webhook, waits for the deployment, prints the history and the
// deployed files, then stops everything and removes its directory. It is
// what `make demo` runs; a development tool, not installed.
//
// Usage:
//
//	dh-demo [--bin DIR] [--keep] [--timeout D]
//
// --bin names the directory holding dh-receive, dh-route and dh-deploy
// (default bin). --keep, or DH_DEMO_KEEP=1, keeps the directory (logs,
// configuration, queues, checkout) for a look afterwards. Exit status:
// 0 the push was deployed, 1 it was not, 64 usage.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := pflag.NewFlagSet("dh-demo", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bin := fs.String("bin", "bin", "the `DIR` holding dh-receive, dh-route and dh-deploy")
	keep := fs.Bool("keep", os.Getenv(demo.KeepEnv) == "1", "keep the demo's directory (also "+demo.KeepEnv+"=1)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the deployment")
	help := fs.BoolP("help", "h", false, "show this help and exit")
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		cli.Report(os.Stderr, os.Getenv, "dh-demo", hint.With(sysexits.New(sysexits.Usage, err), "see 'dh-demo --help'"))
		return sysexits.Usage
	}
	if *help {
		fmt.Printf("dh-demo - run dh-deployer's main job end to end on a throwaway setup\n\nUsage:\n  dh-demo [flags]\n\nFlags:\n%s", fs.FlagUsages())
		return sysexits.OK
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = demo.Run(ctx, demo.Options{BinDir: *bin, Keep: *keep, Timeout: *timeout, Out: os.Stdout})
	if err != nil {
		cli.Report(os.Stderr, os.Getenv, "dh-demo", err)
		return sysexits.Failure
	}
	return sysexits.OK
}
