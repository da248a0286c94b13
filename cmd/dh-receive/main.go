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
//	dh-receive [-c FILE] hook --repository OWNER/NAME [--socket PATH] [--wait[=DURATION]]
//	                                 a git post-receive hook: send each
//	                                 "<old> <new> <ref>" line on stdin to
//	                                 dh-receive's hook socket, which queues it;
//	                                 --wait prints the runs' logs as they are
//	                                 written and their results (up to 10m)
//
// Every header is checked before the body is read; the body streams into
// its staging file while its HMAC is computed and is deleted unless it
// verifies, and receive.max_in_flight bounds the body bytes in flight (503
// and Retry-After beyond), so a flood of large unsigned bodies costs no
// memory. X-Forwarded-For is read only from the peers listed in
// receive.trusted_proxies.
//
// In a bare repository on this host, the one-line hook
//
//	exec /usr/local/bin/dh-receive -c /etc/dh-deployer/config.toml hook --repository local/app
//
// in hooks/post-receive (executable) deploys its pushes like GitHub's: the
// deployments whose repository is local/app and whose clone_url is that
// repository's path. The hook writes no queue: it sends the pushed refs to
// dh-receive over receive.hook_socket (dh-receive-hook.socket), and
// dh-receive queues them if receive.hook_users gives the pushing user
// (identified by SO_PEERCRED) that repository. The user needs only to be in
// the group dh-hook (dh-deployer-acl hook USER). With --wait (and
// receive.status_url set) the pusher sees the build: dh-receive streams the
// log of each run the push caused, read from dh-route's status listener,
// then its result line; the user reads no log file itself. Exit statuses of
// hook: 64 a bad --repository, 65 a malformed line, 77 not allowed, 78
// --wait without receive.status_url, 75
// dh-receive not reachable or the queue not writable (or, with --wait, no
// result before the wait ended), 1 a run failed (--wait).
//
// Endpoints: POST <receive.path> (default /github-webhook), POST
// /deploy/NAME (a deployment's token; only refs it follows; failed tokens
// limited per client, 429; the 202 carries Location: the delivery's page
// on dh-route's status listener; ?wait=SECONDS, at most 600, answers when
// the run ended: 200 succeeded, 422 failed, with its exit status and the
// log's tail, 202 still running), GET / (service info), GET /healthz (200, or 503
// with the reasons), GET /metrics (Prometheus, with the bearer token of
// receive.metrics_token_file; 404 without one; see docs/receive.md). While queues/main is at a [queues.main] limit
// (max_entries, max_bytes) or queue_dir's file system below [queues]
// min_free_bytes, a POST gets 503 with Retry-After before its body is read.
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
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
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
		{Name: "serve", Example: "dh-receive -c /etc/dh-deployer/config.toml serve", Summary: "serve until SIGTERM", Run: serve},
		{Name: "sign", Example: "dh-receive sign payload.json", Args: "[FILE]", MaxArgs: 1, Summary: "print the X-Hub-Signature-256 of FILE or stdin", Run: sign},
		{Name: "hook", Example: "dh-receive hook --repository ducompsoc/durhack --wait < refs-from-git", Flags: []string{"repository", "socket", "wait"},
			Fails: "a run the push caused failed (--wait)", Summary: "git post-receive hook: queue the pushed refs read from stdin", Run: hook},
	},
	DefineFlags: func(fs *pflag.FlagSet) {
		fs.String("repository", "", "the repository's name as deployments know it, `OWNER/NAME`")
		fs.String("socket", "", "dh-receive's hook socket `PATH` (default: receive.hook_socket, if the configuration is readable, else "+config.Default().Receive.HookSocket+")")
		fs.Duration("wait", 0, "print the runs' logs as they are written and their results, for up to `DURATION` (--wait alone: "+receive.MaxWait.String()+", the most)")
		fs.Lookup("wait").NoOptDefVal = receive.MaxWait.String()
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
	proxies, proxyUnix, err := cfg.Receive.TrustedProxyPrefixes()
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
		return hint.With(sysexits.Errorf(sysexits.IOErr, "queue: %w", err),
			"create the queue directories first (see docs/operations.md)")
	}
	hookUsers, err := hookUIDs(cfg.Receive.HookUsers)
	if err != nil {
		return err
	}
	hookSocket := ""
	if len(hookUsers) > 0 {
		if err := receive.CheckPeerCredentials(); err != nil {
			return hint.With(sysexits.Errorf(sysexits.Config, "receive.hook_users: %v", err),
				"or empty receive.hook_users")
		}
		hookSocket = cfg.Receive.HookSocket
	}
	l, hl, err := receive.Listen(cfg.Receive.Listen, hookSocket, env.Getenv)
	if err != nil {
		return sysexits.Errorf(sysexits.Unavailable, "listen on %s: %w", cfg.Receive.Listen, err)
	}
	metricsToken, err := cfg.MetricsToken(env.Getenv)
	if err != nil {
		return err
	}
	var status *receive.StatusClient
	if cfg.Receive.StatusURL != "" {
		token, err := cfg.ReceiveStatusToken(env.Getenv)
		if err != nil {
			return err
		}
		if status, err = receive.NewStatusClient(cfg.Receive.StatusURL, token); err != nil {
			return sysexits.Errorf(sysexits.Config, "config: receive.status_url: %v", err)
		}
	}
	s := &receive.Server{
		Config: cfg.Receive, Secrets: secrets, Tokens: tokens, Deployments: cfg.Deployments, Queue: q, Allowed: allowed,
		Proxies: proxies, ProxyUnix: proxyUnix, HookListener: hl, HookUsers: hookUsers, MetricsToken: metricsToken,
		Status: status, Logger: env.Logger, Now: time.Now,
	}
	return s.Serve(ctx, l, env.Ready)
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

// hookUIDs resolves the user names of receive.hook_users.
func hookUIDs(users map[string][]string) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	for name, repos := range users {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, sysexits.Errorf(sysexits.Config, "config: receive.hook_users: %v", err)
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, sysexits.Errorf(sysexits.Config, "config: receive.hook_users: user %s has uid %q", name, u.Uid)
		}
		out[uint32(uid)] = append(out[uint32(uid)], repos...)
	}
	return out, nil
}

// hook sends the refs git reports to a post-receive hook to dh-receive's
// hook socket, which queues them if receive.hook_users lets this user
// push that repository. It needs no secret and writes no queue.
func hook(ctx context.Context, env *cli.Env, _ []string) error {
	repository, _ := env.Flags.GetString("repository")
	if repository == "" {
		return sysexits.Errorf(sysexits.Usage, "hook: --repository OWNER/NAME is required")
	}
	// The pushing user need not read the configuration (it holds other
	// deployments' settings): without it, the default socket.
	socket, _ := env.Flags.GetString("socket")
	if socket == "" {
		cfg, err := config.Load(env.Config)
		switch {
		case err == nil:
			socket = cfg.Receive.HookSocket
		case errors.Is(err, fs.ErrPermission):
			socket = config.Default().Receive.HookSocket
		default:
			return err
		}
	}
	wait, _ := env.Flags.GetDuration("wait")
	deliveries, err := receive.Push(ctx, socket, repository, env.Stdin, wait, env.Stdout)
	for _, d := range deliveries {
		fmt.Fprintf(env.Stdout, "dh-deployer: queued as delivery %s\n", d)
	}
	return err
}
