// dh-nginx installs the nginx sites of nginx-kind deployments into
// /etc/nginx/conf.d, tests the configuration with nginx -t and reloads
// nginx, restoring the previous files exactly when the test fails. It is
// the only consumer of queues/nginx: nginx-sites entries from dh-deploy
// (and from dh-cert once a certificate a site waited for exists) and
// nginx-reload entries from dh-cert after renewals. A site that needs a
// certificate that does not exist yet is held back and a cert-request
// goes to queues/cert. docs/nginx.md has the rules.
//
// Usage:
//
//	dh-nginx [-c FILE] [run] [--once] [--wait]   work queues/nginx until SIGTERM
//	                                             (--once: drain it, then exit;
//	                                             --wait: wait for another consumer
//	                                             to stop instead of exiting)
//	dh-nginx [-c FILE] replay FILE               handle one entry in the foreground
//	dh-nginx [-c FILE] history [DEPLOYMENT] [-n N] [--json]
//	                                             the installs, newest first
//
// SIGHUP makes run reload the configuration before its next entry (new
// nginx deployments, [nginx]); one that does not load is logged and the
// old one kept. run waits for the database at start (run --once exits 75
// instead).
//
// The configuration is read from -c FILE, else $DH_CONFIG, else
// /etc/dh-deployer/config.toml; $DH_DATABASE_URL overrides database_url.
// Exit status follows sysexits(3): 0 ok, 64 usage or an unknown deployment, 65 bad entry, refused
// sites or a failed configuration test (replay), 69 the test or reload
// program is missing, 74 I/O error (or queues/nginx missing: no stage
// creates its queue directory), 75 temporary failure (database down,
// checkout unreadable, queue or install lock held), 77 no permission,
// 78 bad configuration.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/nginx"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-nginx",
	Summary: "install nginx sites safely: write, nginx -t, reload or restore",
	Default: "run",
	Commands: []*cli.Command{
		{Name: "run", Example: "dh-nginx run --once", Summary: "work queues/nginx until SIGTERM", Flags: []string{"once", "wait"}, Run: run},
		{Name: "replay", Example: "dh-nginx replay /var/lib/dh-deployer/queues/nginx/failed/1733472000000000000-42.json", Args: "FILE", MinArgs: 1, MaxArgs: 1, Summary: "handle one entry in the foreground", Run: replay},
		{Name: "history", Example: "dh-nginx history sites -n 5", Args: "[DEPLOYMENT]", MinArgs: 0, MaxArgs: 1, Flags: []string{"limit", "json"},
			Summary: "print the installs, newest first", Run: history},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.Bool("once", false, "drain queues/nginx, then exit")
		fs.Bool("wait", false, "wait for another consumer of queues/nginx to stop instead of exiting")
		fs.IntP("limit", "n", 20, "how many installs to print, `N` (0: all)")
		fs.Bool("json", false, "print JSON, one install per line")
	},
}

func run(ctx context.Context, env *cli.Env, _ []string) error {
	once, _ := env.Flags.GetBool("once")
	wait, _ := env.Flags.GetBool("wait")
	hup, stop := env.Hangups()
	defer stop()
	cfg, st, err := store.LoadWait(ctx, env.Config, env.WaitForDatabase(!once))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer st.Close()
	in := nginx.New(cfg, st, nginx.Options{Logger: env.Logger, WaitLock: true})
	c, err := in.Queue().Lock(ctx, wait)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := in.Recover(ctx); err != nil {
		return err
	}
	hup.Reload(ctx, cfg, in.SetConfig)
	env.Logger.Info("installing", "queue", in.Queue().Dir(), "conf_dir", cfg.Nginx.ConfDir, "once", once)
	defer env.Ready("installing sites from " + in.Queue().Dir())()
	return c.Run(ctx, in.Handle, queue.Options{Once: once, Writers: hup.Writers(config.NginxQueue), Logger: env.Logger})
}

func replay(ctx context.Context, env *cli.Env, args []string) error {
	cfg, st, err := store.Load(ctx, env.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	in := nginx.New(cfg, st, nginx.Options{Logger: env.Logger, WaitLock: true})
	return queue.Replay(ctx, args[0], in.Handle)
}

func history(ctx context.Context, env *cli.Env, args []string) error {
	limit, _ := env.Flags.GetInt("limit")
	asJSON, _ := env.Flags.GetBool("json")
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	deployment := ""
	if len(args) == 1 {
		deployment = args[0]
		if _, err := cfg.Lookup(deployment); err != nil {
			return err
		}
	}
	st, err := store.OpenCurrent(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := st.NginxInstalls(ctx, deployment, limit)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTARTED\tKIND\tDEPLOYMENT\tCOMMIT\tOUTCOME\tINSTALLED\tREMOVED\tPENDING\tERROR")
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, cell.Stamp(r.StartedAt), r.Kind, cell.Dash(r.Deployment),
			cell.ShortSHA(r.Commit), r.Outcome, len(r.Installed), len(r.Removed), cell.Dash(strings.Join(r.Pending, ",")),
			cell.Text(r.Error))
	}
	return w.Flush()
}
