// dh-route is the main queue worker of dh-deployer: it consumes
// queues/main, records every GitHub delivery in the event table, and
// forwards each push to the queues of the deployments that follow its
// branch (or voids it, with a recorded reason). docs/route.md has the
// decision rules, the void reasons and the duplicate rule.
//
// Usage:
//
//	dh-route [-c FILE] [run] [--once] [--wait]  route queues/main until SIGTERM
//	                                            (--once: drain it, then exit;
//	                                            --wait: wait for another consumer
//	                                            to stop instead of exiting)
//	dh-route [-c FILE] replay FILE              handle one entry in the foreground
//	dh-route [-c FILE] status                   queue depths, failed entries and
//	                                            the last decisions
//	dh-route [-c FILE] migrate                  apply the embedded database migrations
//	dh-route [-c FILE] prune                    delete the history [retention] lets go, now
//	dh-route [-c FILE] setup [--host H] [--no-start]
//	                                            as root, on a host with a local PostgreSQL:
//	                                            create the database, migrate, create the
//	                                            stages' roles (roles.sql), make the webhook
//	                                            secret (printing what to paste into GitHub,
//	                                            for https://H/github-webhook), check, and
//	                                            enable and start the units (not with
//	                                            --no-start); idempotent, refuses to
//	                                            overwrite (pkg/setup)
//	dh-route [-c FILE] doctor [--json]          as root: check the whole host, one line per
//	                                            check, ✔ or ✘ with the command that fixes
//	                                            it; exit 0 only if all pass (pkg/doctor)
//
// SIGHUP makes run reload the configuration between two entries; a
// configuration that does not load is logged and the old one kept.
// queue_dir, database_url and [status] changes need a restart. run starts
// while the database is down or its schema behind and waits for it
// (STATUS= says so); run --once exits 75 instead.
//
// run takes an entry of queues/main only from a writer of it ([queues.main]
// writers, default dh-receive; root and dh-route too): any other goes to
// failed/ unread. A delivery for a deployment whose queue is at a
// [queues.deployments] limit stays in queues/main (with the ones after it)
// and is retried with backoff; replay and run --once exit 75 then. One
// for a deployment whose queue is missing goes to failed/, its .why
// naming the queue and the fix: dh-route never creates a deployment
// queue (dh-deployer-acl deployment NAME does, with its owner and ACL).
//
// run also consumes queues/status: the commit statuses the deployments'
// workers ask for, which it sets on GitHub with github.token_file, and the
// notices of their finished runs, which it sends to the deployments'
// [notify] targets (chat webhooks, email) with the commit, its subject and
// author, who triggered it, the duration and, on failure, the failed
// step, its exit status and the log's last 20 lines (at most 2 KiB). It
// alone reads those secrets (docs/operations.md, "Security model"). Every
// minute (not with --once) it also sends, once each, a notice for each
// certificate expiring within notify.cert_expiry_days (once a day) and
// for each entry that landed in a failed/ directory it can read
// (docs/route.md, "Notifications").
//
// run also prunes the history a minute after it starts, then every
// retention.interval (an hour): deliveries, routes and runs older than
// [retention] allows, in small batches beside the routing, keeping what
// the stages still need (docs/operations.md, "Retention"); run --once
// does not.
//
// With status.listen set, run also serves the read-only status page
// (GET /status, /status.json, /status/logs/NAME/RUN, streamed with
// ?follow=1 until the run ends, and /status/deliveries/ID, what became of
// one delivery; times in status.time_zone, reloading every status.refresh
// or ?refresh=SECONDS; see pkg/status and docs/route.md), Prometheus
// metrics (GET /metrics) and GET /healthz,
// 503 when a queue's oldest entry is older than status.stall_after while
// no worker holds its lock, until it stops; run --once does not.
//
// The configuration is read from -c FILE, else $DH_CONFIG, else
// /etc/dh-deployer/config.toml; $DH_DATABASE_URL overrides database_url.
// Exit status follows sysexits(3): 0 ok, 64 usage, 65 bad entry (replay),
// 74 I/O error (or queues/main or queues/status missing: no stage creates
// its queue directory), 75 temporary failure (database down or behind,
// except for run, which waits; queue locked), 77 no permission (a queue
// not as installed), 78 bad configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/doctor"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/setup"
	statuspage "github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-route",
	Summary: "route GitHub deliveries from queues/main to the deployment queues",
	Default: "run",
	Commands: []*cli.Command{
		{Name: "run", Example: "dh-route run --once", Summary: "route queues/main until SIGTERM", Flags: []string{"once", "wait"}, Run: run},
		{Name: "replay", Example: "dh-route replay /var/lib/dh-deployer/queues/main/failed/1733472000000000000-42.json", Fails: "the entry could not be routed", Args: "FILE", MinArgs: 1, MaxArgs: 1, Summary: "handle one entry in the foreground", Run: replay},
		{Name: "status", Example: "dh-route status", Summary: "print queue depths, failed entries and the last decisions", Run: status},
		{Name: "migrate", Example: "dh-route migrate", Summary: "apply the embedded database migrations", Run: migrate},
		{Name: "prune", Example: "dh-route prune", Summary: "delete the history older than [retention] allows, now", Run: prune},
		{Name: "setup", Example: "dh-route setup --host deploy.example.org", Fails: "a check failed", Flags: []string{"host", "no-start"}, Summary: "as root: database, migrations, roles, webhook secret, units (idempotent)", Run: setupCmd},
		{Name: "doctor", Example: "dh-route doctor --json", Fails: "a check failed", Flags: []string{"json"}, Summary: "as root: check the host; each failure with the command that fixes it", Run: doctorCmd},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.Bool("once", false, "drain queues/main, then exit")
		fs.Bool("wait", false, "wait for another consumer of queues/main to stop instead of exiting")
		fs.String("host", "", "the webhook's public host name, for the URL setup prints")
		fs.Bool("no-start", false, "setup: leave the units alone (the package's postinst starts them)")
		fs.Bool("json", false, "doctor: print the checks as JSON")
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
	c, err := queue.Open(cfg.QueuePath(config.MainQueue)).Lock(ctx, wait)
	if err != nil {
		return err
	}
	defer c.Close()

	// queues/status: the commit statuses and run notices the deployments'
	// workers ask for, set and sent with the GitHub token and the [notify]
	// targets' secrets only dh-route reads.
	agent := "dh-deployer/" + cli.VersionString()
	poster, err := route.NewPoster(cfg, st, env.Getenv, agent, env.Logger)
	if err != nil {
		return err
	}
	sc, err := queue.Open(cfg.QueuePath(config.StatusQueue)).Lock(ctx, wait)
	if err != nil {
		return err
	}
	defer sc.Close()

	r := route.New(cfg, st, route.Options{Logger: env.Logger, Wait: !once})
	if err := r.RecordRoles(ctx); err != nil {
		return err
	}
	hup.Reload(ctx, cfg, func(cfg *config.Config) error {
		if err := poster.SetConfig(cfg, env.Getenv, agent); err != nil {
			return err
		}
		r.SetConfig(cfg)
		return r.RecordRoles(ctx)
	})
	if network, addr := cfg.Status.ListenNetwork(); network != "" && !once {
		stop, err := serveStatus(ctx, env, r, st, network, addr)
		if err != nil {
			return err
		}
		defer stop()
	}
	if !once {
		// The daemon's background work: pruning, and the notices of
		// expiring certificates and failed entries.
		ctx, cancel := context.WithCancel(ctx)
		var bg sync.WaitGroup
		bg.Go(func() { r.PruneEvery(ctx) })
		bg.Go(func() { poster.Watch(ctx, noticeInterval) })
		defer func() { cancel(); bg.Wait() }()
	}
	env.Logger.Info("routing", "queue", cfg.QueuePath(config.MainQueue), "deployments", len(cfg.Deployments), "once", once)
	defer env.Ready("routing " + cfg.QueuePath(config.MainQueue))()
	// Both queues until either stops with an error (or, with --once,
	// both are drained).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	posted := make(chan error, 1)
	go func() {
		err := sc.Run(ctx, poster.Handle, queue.Options{Once: once, Writers: hup.Writers(config.StatusQueue), Logger: env.Logger})
		if err != nil {
			cancel(err)
		}
		posted <- err
	}()
	err = c.RunBatch(ctx, r.HandleBatch, queue.Options{Once: once, Writers: hup.Writers(config.MainQueue), Logger: env.Logger})
	if err != nil {
		cancel(err)
	}
	if perr := <-posted; err == nil || errors.Is(err, context.Canceled) {
		err = perr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// noticeInterval is how often run looks for expiring certificates and
// failed entries to notify about.
const noticeInterval = time.Minute

// serveStatus serves the status page (status.listen) until ctx ends or
// stop is called; stop waits for the server to shut down.
func serveStatus(ctx context.Context, env *cli.Env, r *route.Router, st *store.Store, network, addr string) (stop func(), err error) {
	token, err := r.Config().StatusToken(env.Getenv)
	if err != nil {
		return nil, err
	}
	l, err := statuspage.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	h := statuspage.New(r.Config, st, statuspage.Options{Token: token, Logger: env.Logger})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := statuspage.Serve(ctx, l, h, env.Logger); err != nil {
			env.Logger.Error("status page stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

func replay(ctx context.Context, env *cli.Env, args []string) error {
	cfg, st, err := store.Load(ctx, env.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	r := route.New(cfg, st, route.Options{Logger: env.Logger})
	return queue.Replay(ctx, args[0], r.Handle)
}

// recent is how many decisions status shows.
const recent = 20

func status(ctx context.Context, env *cli.Env, _ []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tDEPTH\tOLDEST\tFAILED")
	var failures []queue.Failure
	var unreadable []string
	for _, name := range append([]string{config.MainQueue, config.StatusQueue}, cfg.DeploymentNames()...) {
		q := queue.Open(cfg.QueuePath(name))
		s, err := q.Stats()
		if err != nil {
			fmt.Fprintf(w, "%s\t-\t-\t-\n", name)
			unreadable = append(unreadable, fmt.Sprintf("queue %s: %v", name, err))
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", name, s.Depth, cell.Stamp(s.Oldest), s.Failed)
		failed, _ := q.Failed()
		for _, f := range failed {
			why, err := q.ReadFailure(f)
			if err != nil {
				why = queue.Failure{Entry: f, Queue: name, Error: fmt.Sprintf("no readable sidecar: %v", err)}
			}
			// The sidecar is the consumer's (a deployment's user for its
			// queue) and may quote a build: its names are the ones listed,
			// its reason one line without control characters.
			why.Entry, why.Queue, why.Error = f, name, cell.Line(why.Error, 0)
			failures = append(failures, why)
		}
	}
	w.Flush()
	for _, u := range unreadable {
		fmt.Fprintln(env.Stdout, u)
	}
	if len(failures) > 0 {
		fmt.Fprintln(env.Stdout, "\nFailed entries:")
		w = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "QUEUE\tENTRY\tFAILED AT\tATTEMPTS\tREASON")
		for _, f := range failures {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", f.Queue, f.Entry, cell.Stamp(f.FailedAt), f.Attempts, f.Error)
		}
		w.Flush()
	}

	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := st.RecentEvents(ctx, recent)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "\nLast %d decisions:\n", recent)
	w = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DECIDED\tDELIVERY\tEVENT\tREPOSITORY\tREF\tSTATUS\tREASON\tDEPLOYMENTS")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell.Stamp(r.DecidedAt), r.Delivery, r.Event.Event,
			cell.Dash(r.Repository), cell.Dash(r.Ref), r.Status, cell.Dash(cell.Line(r.Reason, 0)), cell.Dash(strings.Join(r.Deployments, ",")))
	}
	return w.Flush()
}

func prune(ctx context.Context, env *cli.Env, _ []string) error {
	cfg, st, err := store.Load(ctx, env.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	p, err := route.New(cfg, st, route.Options{Logger: env.Logger}).Prune(ctx)
	fmt.Fprintf(env.Stdout, "pruned %d deliveries, %d routes, %d runs in %s\n", p.Events, p.Routes, p.Runs,
		time.Since(start).Round(time.Millisecond))
	return err
}

func migrate(ctx context.Context, env *cli.Env, _ []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	from, to, err := store.Migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(env.Stdout, "database schema is up to date (version %d)\n", to)
	} else {
		fmt.Fprintf(env.Stdout, "migrated database schema from version %d to %d\n", from, to)
	}
	return nil
}

func setupCmd(ctx context.Context, env *cli.Env, _ []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	host, _ := env.Flags.GetString("host")
	noStart, _ := env.Flags.GetBool("no-start")
	r := &setup.Runner{Out: env.Stdout}
	if err := setup.Setup(ctx, r, cfg, setup.Options{Config: env.Config, Host: host, NoStart: noStart}); err != nil {
		return err
	}
	// Check what setup made.
	h, err := doctorHost(cfg, r)
	if err != nil {
		return err
	}
	rs := doctor.Run(ctx, h, "config", "secret", "database")
	doctor.Print(env.Stdout, rs)
	if !doctor.Passed(rs) {
		return sysexits.Errorf(sysexits.Failure, "setup: a check failed (above)")
	}
	fmt.Fprintln(env.Stdout, "next: add a deployment with  dh-deploy add NAME --repository OWNER/NAME --branch main --path DIR")
	return nil
}

func doctorHost(cfg *config.Config, r *setup.Runner) (*doctor.Host, error) {
	if err := setup.RequireRoot("doctor"); err != nil {
		return nil, err
	}
	db, _ := setup.OpenDB(cfg.DatabaseURL, r)
	return &doctor.Host{Cfg: cfg, Run: r, DB: db, Installed: setup.Locate(), Booted: setup.Booted()}, nil
}

func doctorCmd(ctx context.Context, env *cli.Env, _ []string) error {
	asJSON, _ := env.Flags.GetBool("json")
	cfg, err := config.Load(env.Config)
	var rs []doctor.Result
	if err != nil {
		fix := hint.Of(err)
		if fix == "" {
			fix = "edit " + env.Config
		}
		rs = []doctor.Result{{Group: "config", Name: "load", Detail: err.Error(), Fix: fix}}
	} else {
		h, err := doctorHost(cfg, &setup.Runner{Timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		rs = doctor.Run(ctx, h)
	}
	if asJSON {
		if err := doctor.PrintJSON(env.Stdout, rs); err != nil {
			return err
		}
	} else {
		doctor.Print(env.Stdout, rs)
	}
	if !doctor.Passed(rs) {
		failed := 0
		for _, r := range rs {
			if !r.OK {
				failed++
			}
		}
		return sysexits.Errorf(sysexits.Failure, "doctor: %d of %d checks failed", failed, len(rs))
	}
	return nil
}
