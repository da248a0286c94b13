// dh-cert obtains and renews the TLS certificates of nginx sites with
// certbot, then has dh-nginx install or reload the sites that use them.
// docs/cert.md has the rules.
//
// Usage:
//
//	dh-cert [-c FILE] [run] [--once] [--wait]   work queues/cert until SIGTERM
//	dh-cert [-c FILE] renew                     certbot renew; queue an nginx reload if any certificate changed
//	dh-cert [-c FILE] replay FILE               handle one cert-request entry in the foreground
//	dh-cert [-c FILE] certbot                   as root: run the certbot request dh-cert left
//
// dh-cert certbot is the fixed command line of the root unit
// dh-certbot.service, which dh-cert starts through systemctl (allowed by
// polkit) on a systemd host: it reads <queue_dir>/cert/.certbot-request
// (written by dh-cert, checked again here: no symbolic link, a regular
// file of at most 64 KiB, a valid certificate name and domains), builds
// certbot's arguments from the root-owned configuration as the sudo path
// does, never with a --*-hook, and runs certbot, its output on stdout (the
// unit's output file, which dh-cert reads). It needs no database.
//
// After certbot obtained a certificate, and for every certificate at each
// renew, dh-cert records its exact expiry (the NotAfter of
// cert_dir/NAME/fullchain.pem, a file it may read, never the key) in the
// certs table, which dh-route reports in /metrics and its expiry notices.
//
// SIGHUP makes run reload the configuration before its next request; one
// that does not load is logged and the old one kept. run waits for the
// database at start (run --once exits 75 instead).
//
// Exit status follows sysexits(3): 0 ok, 1 certbot failed, 64 usage,
// 65 bad entry, 69 certbot or sudo missing, 74 I/O error (or queues/cert
// missing: no stage creates its queue directory), 75 temporary failure
// (database down, queue locked, a request waiting for its next try),
// 77 no permission (a queue not as installed), 78 bad configuration.
package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/cert"
	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-cert",
	Summary: "obtain and renew TLS certificates with certbot",
	Default: "run",
	Commands: []*cli.Command{
		{Name: "run", Example: "dh-cert run --once", MaxArgs: 0, Flags: []string{"once", "wait"}, Summary: "work queues/cert until SIGTERM", Run: run},
		{Name: "renew", Example: "dh-cert renew", Fails: "certbot renew failed", MaxArgs: 0, Summary: "renew due certificates; queue an nginx reload if any changed", Run: renew},
		{Name: "replay", Example: "dh-cert replay /var/lib/dh-deployer/queues/cert/failed/1733472000000000000-42.json", Fails: "certbot failed", Args: "FILE", MinArgs: 1, MaxArgs: 1, Summary: "handle one entry in the foreground", Run: replay},
		{Name: "certbot", Example: "systemctl start dh-certbot.service", Fails: "certbot failed", MaxArgs: 0, Summary: "as root (dh-certbot.service): run the certbot request dh-cert left", Run: certbot},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.Bool("once", false, "drain the queue, then exit")
		fs.Bool("wait", false, "wait for another worker of the queue to stop instead of exiting")
	},
}

// worker loads the configuration, opens the store (required unless
// optional; waiting for it if waiting is not nil, see store.OpenWait) and
// returns the worker.
func worker(ctx context.Context, env *cli.Env, wait, optional bool, waiting func(error, time.Duration)) (*cert.Worker, func(), error) {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.OpenWait(ctx, cfg.DatabaseURL, waiting)
	if err != nil {
		if !optional || ctx.Err() != nil {
			return nil, nil, err
		}
		env.Logger.Warn("database unavailable; this run is not recorded", "err", err)
		st = nil
	}
	w, err := cert.New(cfg, st, cert.Options{Logger: env.Logger, Stderr: env.Stderr, Wait: wait})
	if err != nil {
		if st != nil {
			st.Close()
		}
		return nil, nil, err
	}
	return w, func() {
		if st != nil {
			st.Close()
		}
	}, nil
}

func run(ctx context.Context, env *cli.Env, args []string) error {
	once, _ := env.Flags.GetBool("once")
	wait, _ := env.Flags.GetBool("wait")
	hup, stop := env.Hangups()
	defer stop()
	w, done, err := worker(ctx, env, !once, false, env.WaitForDatabase(!once))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer done()
	c, err := w.Queue().Lock(ctx, wait)
	if err != nil {
		return err
	}
	defer c.Close()
	hup.Reload(ctx, w.Config(), w.SetConfig)
	env.Logger.Info("handling certificate requests", "queue", w.Queue().Dir(), "once", once)
	// A request waiting for its next try costs a database read per round,
	// never a certbot run; the rounds slow down to one a minute.
	defer env.Ready("handling certificate requests from " + w.Queue().Dir())()
	return c.RunBatch(ctx, w.HandleBatch, queue.Options{Once: once, Writers: hup.Writers(config.CertQueue), Logger: env.Logger,
		MinBackoff: 5 * time.Second, MaxBackoff: time.Minute})
}

func renew(ctx context.Context, env *cli.Env, args []string) error {
	w, done, err := worker(ctx, env, false, true, nil)
	if err != nil {
		return err
	}
	defer done()
	_, err = w.Renew(ctx)
	return err
}

func replay(ctx context.Context, env *cli.Env, args []string) error {
	w, done, err := worker(ctx, env, false, false, nil)
	if err != nil {
		return err
	}
	defer done()
	return queue.Replay(ctx, args[0], w.Replay)
}

func certbot(ctx context.Context, env *cli.Env, args []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	return cert.Certbot(ctx, cfg, env.Getenv, env.Stdout)
}
