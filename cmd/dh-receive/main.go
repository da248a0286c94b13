// dh-receive is dh-deployer's front door: it verifies GitHub webhook
// deliveries (X-Hub-Signature-256 under any configured secret) and enqueues
// each verified one durably into queues/main, answering 202 only once the
// entry is on disk. Routing and deploying happen later, in dh-route and
// dh-deploy.
//
// Usage:
//
//	dh-receive [-c FILE] [serve]     serve until SIGTERM
//	dh-receive [-c FILE] sign [FILE] print the X-Hub-Signature-256 of FILE
//	                                 (or stdin) under the first secret
//	dh-receive [-c FILE] hook --repository OWNER/NAME
//	                                 a git post-receive hook: queue one push per
//	                                 "<old> <new> <ref>" line on stdin
//
// In a bare repository on this host, the one-line hook
//
//	exec /usr/local/bin/dh-receive -c /etc/dh-deployer/config.toml hook --repository local/app
//
// in hooks/post-receive (executable) deploys its pushes like GitHub's: the
// deployments whose repository is local/app and whose clone_url is that
// repository's path. The pushing user needs write access to queues/main
// (dh-deployer-acl hook USER) and a place in [queues.main] writers.
//
// Endpoints: POST <receive.path> (default /github-webhook), GET / (service
// info), GET /healthz (200, or 503 with the reasons). While queues/main is
// at a [queues.main] limit (max_entries, max_bytes) or queue_dir's file
// system below [queues] min_free_bytes, a POST gets 503 with Retry-After
// before its body is read.
//
// Test a running receiver with curl:
//
//	sig=$(dh-receive sign payload.json)
//	curl -H "X-Hub-Signature-256: $sig" -H 'X-GitHub-Event: ping' \
//	     -H "X-GitHub-Delivery: $(cat /proc/sys/kernel/random/uuid)" \
//	     -H 'Content-Type: application/json' --data-binary @payload.json \
//	     http://127.0.0.1:3400/github-webhook
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/receive"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/spf13/pflag"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-receive",
	Summary: "verify GitHub webhook deliveries and enqueue them durably",
	Default: "serve",
	Commands: []*cli.Command{
		{Name: "serve", Summary: "serve until SIGTERM", Run: serve},
		{Name: "sign", Args: "[FILE]", MaxArgs: 1, Summary: "print the X-Hub-Signature-256 of FILE or stdin", Run: sign},
		{Name: "hook", Flags: []string{"repository"}, Summary: "git post-receive hook: queue the pushed refs read from stdin", Run: hook},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.String("repository", "", "the repository's name as deployments know it (owner/name)")
	},
}

// load reads the configuration and the webhook secrets, which every
// command needs.
func load(env *cli.Env) (*config.Config, [][]byte, error) {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return nil, nil, err
	}
	secrets, err := cfg.WebhookSecrets(env.Getenv)
	return cfg, secrets, err
}

func serve(ctx context.Context, env *cli.Env, _ []string) error {
	// A SIGHUP must not kill requests in flight: dh-receive reads its
	// configuration at start only (a restart behind dh-receive.socket
	// loses nothing).
	signal.Ignore(syscall.SIGHUP)
	cfg, secrets, err := load(env)
	if err != nil {
		return err
	}
	allowed, err := cfg.Receive.AllowedPrefixes()
	if err != nil {
		return err
	}
	tokens, err := cfg.DeployTokens(env.Getenv)
	if err != nil {
		return err
	}
	q := queue.Open(cfg.QueuePath(config.MainQueue))
	q.SetLimits(queue.Limits(cfg.QueueLimits(config.MainQueue)))
	if _, err := os.Stat(q.Dir()); err != nil {
		return sysexits.WithHint(sysexits.Errorf(sysexits.IOErr, "queue: %w", err),
			"create the queue directories first (see docs/operations.md)")
	}
	l, err := receive.Listen(cfg.Receive.Listen, env.Getenv)
	if err != nil {
		return sysexits.Errorf(sysexits.Unavailable, "listen on %s: %w", cfg.Receive.Listen, err)
	}
	s := &receive.Server{
		Config: cfg.Receive, Secrets: secrets, Tokens: tokens, Queue: q, Allowed: allowed,
		Logger: env.Logger, Now: time.Now,
	}
	return s.Serve(ctx, l, env.Getenv)
}

func sign(ctx context.Context, env *cli.Env, args []string) error {
	_, secrets, err := load(env)
	if err != nil {
		return err
	}
	in := env.Stdin
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return sysexits.New(sysexits.DataErr, err)
		}
		defer f.Close()
		in = f
	}
	body, err := io.ReadAll(in)
	if err != nil {
		return sysexits.New(sysexits.IOErr, fmt.Errorf("read payload: %w", err))
	}
	fmt.Fprintln(env.Stdout, github.Sign(body, secrets[0]))
	return nil
}

// hook queues the refs git reports to a post-receive hook. It needs no
// secret: whoever may write queues/main may queue deliveries.
func hook(ctx context.Context, env *cli.Env, _ []string) error {
	repository, _ := env.Flags.GetString("repository")
	if repository == "" {
		return sysexits.Errorf(sysexits.Usage, "hook: --repository OWNER/NAME is required")
	}
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	entries, deliveries, err := receive.HookEntries(env.Stdin, repository, time.Now())
	if err != nil {
		return err
	}
	q := queue.Open(cfg.QueuePath(config.MainQueue))
	items := make([]queue.Item, len(entries))
	for i, e := range entries {
		items[i] = queue.Item{Queue: q, Data: e}
	}
	// Each ref stands alone: report the ones queued, and fail with the
	// first that was not.
	var first error
	for i, r := range queue.PublishAll(items) {
		if r.Err != nil {
			env.Logger.Error("delivery not queued", "delivery", deliveries[i], "err", r.Err)
			first = cmp.Or(first, r.Err)
			continue
		}
		fmt.Fprintf(env.Stdout, "dh-deployer: queued as delivery %s\n", deliveries[i])
	}
	return first
}
