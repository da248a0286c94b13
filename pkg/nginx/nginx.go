// Package nginx is dh-nginx's stage: it installs the nginx site files of
// nginx-kind deployments into conf.d (config Nginx.ConfDir) and their
// snippets into Nginx.SnippetsDir, tests the whole configuration and
// reloads nginx. docs/nginx.md is the operator's version of this comment.
//
// For an nginx-sites entry (Handle, Converge):
//
//  0. The entry must come from the deployment's own user (the owner of
//     its file: config.Deployment.RunsAs), root or dh-cert, and name a
//     commit the deployment's runs recorded as verified (a succeeded run
//     of it; from the deployment's user also the still running run the
//     entry names). Otherwise it is refused and recorded.
//  1. The deployment's checkout must be at the entry's commit (its HEAD).
//     Otherwise the entry is stale: a newer entry follows, so it is
//     recorded and dropped.
//  2. Site files are production/NAME.conf or production/NAME.nginxconf;
//     NAME.conf.disabled (or .nginxconf.disabled) is never installed. The
//     deployment's site rules select among them (config.Deployment.
//     SelectsSite: the last matching rule wins, none means excluded).
//     Every regular file directly in snippets/ is a snippet. Everything
//     is read from the commit's git objects (readTree), never the working
//     tree: symbolic links, submodules and files over 1 MiB are refused.
//  3. A selected site is refused (and reported) when its name is not a
//     certificate name (lower-case DNS labels), when it does not parse,
//     or when a server block has no server_name or a name that is not a
//     DNS name (ParseSite), or when the site policy refuses it
//     (Policy.CheckSite, policy.go: directives, paths, upstreams,
//     domains); a snippet the policy refuses is refused likewise. A site
//     with an ssl_certificate directive
//     whose certificate (Nginx.CertDir/NAME/fullchain.pem) does not exist
//     yet is pending: a cert-request (NAME, its server_names) goes to
//     queues/cert and dh-cert re-queues the entry once it exists (a
//     certificate that exists but misses a name is requested again,
//     and the site installed meanwhile). A
//     refused or pending site that is installed keeps its installed
//     version; one that is not is not installed.
//  4. conf.d converges to the selected set: site NAME is installed as
//     ConfDir/NAME.conf, snippet FILE as SnippetsDir/FILE. dh-nginx
//     changes only files in the deployment's manifest
//     (state_dir/nginx/DEPLOYMENT.json): a file of that name that it does
//     not manage is a conflict, left alone and reported, unless its
//     content is already exactly what would be installed, in which case
//     it is adopted. Managed files that left the set are removed.
//  5. Install: the previous content of every file about to change is
//     copied to state_dir/nginx/DEPLOYMENT.backup and a journal listing
//     the changes is written (both fsynced) before conf.d is touched.
//     Existing files are overwritten in place (they keep their owner,
//     mode and ACL); new files are created under a temporary name and
//     linked into place. Then Nginx.TestCommand runs, between two
//     hashings of the deployment's files: they must be the bytes written
//     and unchanged by the time the test ends. If either fails, every
//     file is restored byte for byte, the journal removed, and the entry
//     fails with nginx's message: nginx is never reloaded with a broken
//     configuration. If it passes, a reload-pending flag is set, the
//     journal removed, the manifest saved, the files hashed once more
//     (changed since the test: no reload), Nginx.ReloadCommand run and
//     the flag cleared. Before all this, installed files that differ
//     from the manifest are reported as drift and, if the commit has
//     them, written and tested again.
//  6. Crash safety: a journal left by a crash is rolled back before
//     anything else (at start and before each converge), and the entry,
//     still queued, converges again. A reload-pending flag left behind
//     makes the next converge or reload entry reload nginx.
//
// An nginx-reload entry tests and reloads nginx.
//
// Every entry is recorded in the nginx_installs table (a row is inserted
// before anything is touched, so a database outage only makes the entry
// wait) and logged on one line. Refused sites and conflicts fail the
// entry (it goes to failed/) after the rest converged; a failed test
// fails it after the restore.
package nginx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// CommandTimeout bounds the test and reload commands.
const CommandTimeout = 2 * time.Minute

// LockFile, in state_dir/nginx, is held during every install and reload:
// the worker and a replay never change conf.d at the same time.
const LockFile = ".lock"

// Options tune an Installer.
type Options struct {
	Logger *slog.Logger
	// WaitLock makes the install lock wait for another dh-nginx (replay)
	// rather than fail with a queue.Retry. (Unlike the other stages, dh-nginx
	// has no Wait: it does not retry the database.)
	WaitLock bool
	// CertUser is dh-cert's Unix user, whose nginx-sites entries (the
	// re-queue once a certificate exists) are accepted for verified
	// commits; "" means DefaultCertUser.
	CertUser string
}

// DefaultCertUser is dh-cert's user (systemd/dh-deployer.sysusers).
const DefaultCertUser = "dh-cert"

// Installer is dh-nginx: it handles the entries of queues/nginx.
type Installer struct {
	next atomic.Pointer[config.Config] // handed over by SetConfig, not yet taken up
	cfg  *config.Config
	st   *store.Store
	log  *slog.Logger
	wait bool
	// certUser is Options.CertUser.
	certUser string
}

// New returns an installer for the configuration; st records the
// installs.
func New(cfg *config.Config, st *store.Store, opts Options) *Installer {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	certUser := opts.CertUser
	if certUser == "" {
		certUser = DefaultCertUser
	}
	return &Installer{cfg: cfg, st: st, log: log, wait: opts.WaitLock, certUser: certUser}
}

// SetConfig hands the installer a reloaded configuration (SIGHUP); it
// takes it up before its next entry, never during an install: new and
// changed nginx deployments, [nginx] commands and directories.
func (in *Installer) SetConfig(cfg *config.Config) error {
	in.next.Store(cfg)
	return nil
}

// Queue is queues/nginx.
func (in *Installer) Queue() *queue.Queue {
	return queue.Open(in.cfg.QueuePath(config.NginxQueue))
}

// Result is what a converge did.
type Result struct {
	Outcome   string   // a store.Nginx* outcome
	Installed []string // files written
	Removed   []string // files removed
	Adopted   []string // unmanaged files already identical, now managed
	Pending   []string // sites waiting for a certificate
	Rejected  []string // "name: reason"
	Conflicts []string // files in the way that dh-nginx does not manage
	Drift     []string // installed files that changed since dh-nginx wrote them
	Output    string   // the test command's output, when it failed
}

// Recover prepares the worker's start: it rolls back every install a
// crash interrupted and marks unfinished rows interrupted.
func (in *Installer) Recover(ctx context.Context) error {
	unlock, err := in.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	journals, _ := filepath.Glob(filepath.Join(in.stateDir(), "*.journal"))
	for _, j := range journals {
		if _, err := in.recoverJournal(strings.TrimSuffix(filepath.Base(j), ".journal")); err != nil {
			return err
		}
	}
	if in.reloadPending() {
		// Files that passed the test were installed, but nginx may not
		// have loaded them.
		in.log.Warn("a reload was pending; testing and reloading")
		if tested, out, err := in.test(ctx, in.managedFiles()); err != nil {
			in.log.Error("pending reload not done: the configuration test failed", "output", cell.Line(out, 0))
		} else if err := in.reload(ctx, tested); err != nil {
			in.log.Error("pending reload failed", "err", err)
		}
	}
	if n, err := in.st.InterruptNginxInstalls(ctx); err != nil {
		return err
	} else if n > 0 {
		in.log.Warn("marked unfinished installs interrupted", "installs", n)
	}
	return nil
}

// Handle handles one entry of queues/nginx.
func (in *Installer) Handle(ctx context.Context, e *queue.Entry) error {
	if cfg := in.next.Swap(nil); cfg != nil {
		in.cfg = cfg
	}
	env, err := event.Peek(e.Data)
	if err != nil {
		return err
	}
	switch env.Kind {
	case event.KindNginxSites:
		req, err := event.DecodeNginxSites(e.Data)
		if err != nil {
			return err
		}
		from, err := in.sender(e, req)
		if err != nil {
			in.log.Error("nginx-sites entry refused", "entry", e.Name, "deployment", req.Deployment, "commit", req.Commit, "err", err)
			in.refuseEntry(ctx, req, err)
			return err
		}
		_, err = in.converge(ctx, req, from)
		return err
	case event.KindNginxReload:
		req, err := event.DecodeNginxReload(e.Data)
		if err != nil {
			return err
		}
		return in.Reload(ctx, req.Reason)
	}
	return sysexits.Errorf(sysexits.DataErr, "entry kind %q does not belong in queues/nginx", env.Kind)
}

// lock takes state_dir/nginx/.lock.
func (in *Installer) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(in.stateDir(), 0o750); err != nil {
		return nil, ioFailure(fmt.Errorf("create state directory: %w", err))
	}
	path := filepath.Join(in.stateDir(), LockFile)
	if !in.wait {
		return queue.TryLock(path)
	}
	return queue.Lock(ctx, path, func() { in.log.Info("waiting for another dh-nginx to finish") })
}

// Reload tests the configuration and reloads nginx.
func (in *Installer) Reload(ctx context.Context, reason string) error {
	id, err := in.st.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindReload})
	if err != nil {
		return err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		in.finish(ctx, id, store.NginxInstall{Outcome: store.NginxInterrupted, Error: err.Error()})
		return err
	}
	defer unlock()
	rec := store.NginxInstall{Outcome: store.NginxSucceeded}
	tested, out, err := in.test(ctx, in.managedFiles())
	if err != nil {
		rec.Outcome, rec.Error = store.NginxFailed, "nginx configuration test failed: "+out
		err = sysexits.Errorf(sysexits.DataErr, "configuration test failed; not reloading: %s", cell.Line(out, 0))
		in.log.Error("reload refused: the configuration test failed", "reason", reason, "output", cell.Line(out, 0))
		return errors.Join(err, in.finish(ctx, id, rec))
	}
	if err := in.reload(ctx, tested); err != nil {
		rec.Outcome, rec.Error = store.NginxFailed, err.Error()
		in.log.Error("reload failed", "reason", reason, "err", err)
		return errors.Join(err, in.finish(ctx, id, rec))
	}
	in.log.Info("reloaded", "reason", reason)
	return in.finish(ctx, id, rec)
}

// finish records the end of install id.
func (in *Installer) finish(ctx context.Context, id int64, rec store.NginxInstall) error {
	if err := in.st.FinishNginxInstall(context.WithoutCancel(ctx), id, rec); err != nil {
		in.log.Error("could not record the install", "install", id, "err", err)
		return err
	}
	return nil
}

// reload sets the reload-pending flag, checks that the files tested
// (their hashes when the test passed) are unchanged, runs the reload
// command and clears the flag. Files changed since the test are not
// reloaded (errChanged): the flag stays, so the next converge or reload
// tests them first.
func (in *Installer) reload(ctx context.Context, tested map[string]string) error {
	if err := in.setReloadPending(); err != nil {
		return err
	}
	if err := in.unchanged(tested); err != nil {
		return err
	}
	if _, err := in.command(ctx, "reload", in.cfg.Nginx.ReloadCommand); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // the flag stays: the next start reloads
		}
		return fmt.Errorf("reload nginx: %w", err)
	}
	if err := os.Remove(in.reloadFlag()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return queue.Stop(err)
	}
	return nil
}

func (in *Installer) setReloadPending() error {
	if _, err := os.Stat(in.reloadFlag()); err == nil {
		return nil
	}
	if err := os.MkdirAll(in.stateDir(), 0o750); err != nil {
		return ioFailure(fmt.Errorf("create state directory: %w", err))
	}
	return durable.WriteFile(in.reloadFlag(), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o640)
}

func (in *Installer) reloadPending() bool {
	_, err := os.Stat(in.reloadFlag())
	return err == nil
}

// command runs the test or reload command and returns its output. The
// test's output is nginx.test_output's content when that is set and was
// written by this run (the root unit dh-nginx-test.service writes nginx
// -t's messages there; systemctl's own output only says the unit failed),
// else the command's own.
func (in *Installer) command(ctx context.Context, what string, argv []string) (string, error) {
	prog, err := progpath.Program(argv[0], os.Getenv("PATH")+":"+progpath.SystemPATH)
	if err != nil {
		return err.Error(), sysexits.Errorf(sysexits.Unavailable, "%s command: %v", what, err)
	}
	started := time.Now()
	res, err := sysexec.Run(ctx, sysexec.Cmd{
		Path:    prog,
		Args:    argv[1:],
		Env:     []string{"PATH=" + progpath.SystemPATH, "LC_ALL=C"},
		Timeout: CommandTimeout,
		Dir:     "/",
	})
	out := strings.TrimSpace(string(res.Output))
	if file := in.cfg.Nginx.TestOutput; what == "test" && file != "" {
		unit, rerr := sysexec.ReadOutput(file, started, sysexec.DefaultMaxOutput)
		switch {
		case rerr != nil && err != nil:
			in.log.Warn("no output of the configuration test", "file", file, "err", rerr)
		case strings.TrimSpace(unit) != "":
			out = strings.TrimSpace(unit)
		}
	}
	if err != nil && out == "" {
		out = err.Error()
	}
	return out, err
}

// Converge brings the installed files of req's deployment to its commit,
// as an operator's request (root's: Handle finds out who published an
// entry). See the package documentation for the steps. The error decides
// the entry's fate (queue.Handler).
func (in *Installer) Converge(ctx context.Context, req *event.NginxSites) (*Result, error) {
	return in.converge(ctx, req, fromOperator)
}

func (in *Installer) converge(ctx context.Context, req *event.NginxSites, from origin) (*Result, error) {
	d, ok := in.cfg.Deployment(req.Deployment)
	if !ok || d.Kind != config.KindNginx {
		return nil, sysexits.Errorf(sysexits.DataErr, "deployment %q is not an nginx deployment in %s", req.Deployment, in.cfg.File)
	}
	id, err := in.st.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindSites, Deployment: d.Name,
		Commit: req.Commit, Delivery: req.Delivery, RunID: req.RunID})
	if err != nil {
		return nil, err
	}
	res, err := in.install(ctx, d, req, from)
	rec := store.NginxInstall{Outcome: store.NginxFailed}
	if res != nil {
		rec = store.NginxInstall{Outcome: res.Outcome, Installed: res.Installed, Removed: res.Removed,
			Pending: res.Pending, Rejected: res.Rejected, Conflicts: res.Conflicts}
		if len(res.Drift) > 0 {
			// The history has no column of its own for it: the note
			// goes where an error would.
			rec.Error = "drift: " + strings.Join(res.Drift, "; ")
		}
	}
	if err != nil {
		rec.Error = strings.TrimPrefix(rec.Error+"; ", "; ") + err.Error()
		if rec.Outcome != store.NginxPartial {
			rec.Outcome = store.NginxFailed
		}
		if ctx.Err() != nil || queue.IsRetry(err) {
			rec.Outcome = store.NginxInterrupted
		}
	}
	attrs := []any{"deployment", d.Name, "commit", req.Commit, "delivery", req.Delivery, "outcome", rec.Outcome,
		"installed", len(rec.Installed), "removed", len(rec.Removed)}
	if len(rec.Pending) > 0 {
		attrs = append(attrs, "pending", strings.Join(rec.Pending, ","))
	}
	if len(rec.Rejected) > 0 {
		attrs = append(attrs, "rejected", strings.Join(rec.Rejected, "; "))
	}
	if len(rec.Conflicts) > 0 {
		attrs = append(attrs, "conflicts", strings.Join(rec.Conflicts, ","))
	}
	if res != nil && len(res.Drift) > 0 {
		attrs = append(attrs, "drift", strings.Join(res.Drift, "; "))
		in.log.Error("installed files changed since dh-nginx wrote them", "deployment", d.Name, "drift", strings.Join(res.Drift, "; "))
	}
	if err != nil {
		in.log.Error("install failed", append(attrs, "err", err)...)
	} else {
		in.log.Info("installed", attrs...)
	}
	return res, errors.Join(err, in.finish(ctx, id, rec))
}

// install converges d's installed files to req's commit, holding the
// install lock: it reads what it needs (the commit's tree, the manifest,
// the files on disk: look), decides everything without touching the disk
// (plan), asks for the certificates the plan found missing, then applies
// the plan, tests it or rolls it back, and commits it (commit).
func (in *Installer) install(ctx context.Context, d *config.Deployment, req *event.NginxSites, from origin) (*Result, error) {
	if err := in.verified(ctx, d, req, from); err != nil {
		return nil, err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := in.recoverJournal(d.Name); err != nil {
		return nil, err
	}

	// The files come from the commit's objects, never the working tree.
	repo := &gitrepo.Repo{Path: d.Path, Timeout: CommandTimeout, Foreign: true, Env: []string{"PATH=" + progpath.UserPATH}}
	if stale, err := in.stale(ctx, repo, req.Commit); err != nil || stale {
		res := &Result{Outcome: store.NginxSucceeded}
		if stale {
			res.Outcome = store.NginxStale
		}
		return res, err
	}
	t, err := readTree(ctx, repo, req.Commit)
	if err != nil {
		return nil, err
	}
	m, err := in.LoadManifest(d.Name)
	if err != nil {
		return nil, err
	}
	// What is installed must be what dh-nginx wrote: a file changed since
	// (by hand, or by anyone who may write conf.d) is reported, and one
	// of the commit's is written again and tested like any change.
	drifted, err := drift(m.Files)
	if err != nil {
		return nil, err
	}
	p, err := plan(in.cfg, d, req.Commit, t, m, drifted, in.look(d, t, m))
	if err != nil {
		return nil, err
	}
	for _, c := range p.certs {
		if len(c.missing) > 0 {
			// The site works for the names the certificate has; dh-cert
			// expands it (certbot --expand).
			in.log.Info("certificate does not cover every server_name; requesting it again", "site", c.site,
				"missing", strings.Join(c.missing, ","))
		}
		if err := in.requestCert(c.site, c.domains, req); err != nil {
			return nil, err
		}
	}
	return in.commit(ctx, p)
}

// commit carries out a plan: with no change, it saves the next manifest
// (and finishes a reload left pending); else it writes the journal and the
// files (apply), tests the configuration and, if the test fails, restores
// the previous files (rollback); if it passes, it keeps them: the next
// manifest is saved and nginx reloaded.
func (in *Installer) commit(ctx context.Context, p *planned) (*Result, error) {
	j, next, res := p.journal, p.next, p.res
	if len(j.Changes) == 0 {
		if res.Outcome == store.NginxSucceeded {
			res.Outcome = store.NginxUnchanged
		}
		if err := in.saveManifest(next); err != nil {
			return res, err
		}
		if in.reloadPending() {
			tested, out, err := in.test(ctx, slices.Collect(maps.Keys(next.Files)))
			if err != nil {
				res.Outcome, res.Output = store.NginxFailed, out
				return res, sysexits.Errorf(sysexits.DataErr, "configuration test failed; not reloading: %s", cell.Line(out, 0))
			}
			if err := in.reload(ctx, tested); err != nil {
				res.Outcome = store.NginxFailed
				return res, err
			}
		}
		return res, refused(res)
	}

	if err := in.apply(j); err != nil {
		if rerr := in.rollback(j); rerr != nil {
			return res, errors.Join(err, rerr)
		}
		return res, err
	}
	// Install what was tested: the files as the test saw them are the
	// bytes written (nothing changed them since apply), and they are the
	// same after the test and again right before the reload.
	tested, out, err := in.test(ctx, slices.Collect(maps.Keys(next.Files)))
	if err == nil {
		if err = changedFrom(tested, wanted(j)); err != nil {
			out = err.Error()
		}
	}
	if err != nil {
		res.Outcome, res.Output = store.NginxFailed, out
		if rerr := in.rollback(j); rerr != nil {
			return res, errors.Join(err, rerr)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if errors.Is(err, errChanged) {
			return res, fmt.Errorf("%w; previous files restored, nginx not reloaded", err)
		}
		if !isExit(err) {
			return res, err // the program is missing, or may not run
		}
		return res, sysexits.Errorf(sysexits.DataErr, "configuration test failed; previous files restored: %s", cell.Line(out, 0))
	}
	// The new files pass: from here on they stay, and nginx must load them.
	if err := in.setReloadPending(); err != nil {
		return res, err
	}
	if err := in.clearJournal(j.Deployment); err != nil {
		return res, err
	}
	if err := in.saveManifest(next); err != nil {
		return res, err
	}
	if err := in.reload(ctx, tested); err != nil {
		res.Outcome = store.NginxFailed
		return res, err
	}
	return res, refused(res)
}

func isExit(err error) bool {
	_, ok := errors.AsType[*sysexec.ExitError](err)
	return ok
}

// refused is the error of a converge that left sites out.
func refused(res *Result) error {
	var why []string
	if len(res.Rejected) > 0 {
		why = append(why, "refused: "+strings.Join(res.Rejected, "; "))
	}
	if len(res.Conflicts) > 0 {
		why = append(why, "not managed by dh-nginx, left alone: "+strings.Join(res.Conflicts, ", "))
	}
	if why == nil {
		return nil
	}
	return sysexits.Errorf(sysexits.DataErr, "%s", strings.Join(why, "; "))
}

// stale reports whether the checkout's HEAD is not at commit.
func (in *Installer) stale(ctx context.Context, repo *gitrepo.Repo, commit string) (bool, error) {
	head, err := repo.Head(ctx)
	if err != nil {
		return false, queue.Retry(fmt.Errorf("read the checkout's HEAD: %v", err))
	}
	if head != commit {
		in.log.Warn("checkout is not at the entry's commit; a newer entry follows", "head", head, "commit", commit)
		return true, nil
	}
	return false, nil
}

// requestCert publishes a cert-request for a site to queues/cert.
func (in *Installer) requestCert(name string, domains []string, req *event.NginxSites) error {
	e := event.CertRequest{Name: name, Domains: domains, For: *req, RequestedAt: time.Now().UTC()}
	data, err := e.Encode()
	if err != nil {
		return err
	}
	q := queue.Open(in.cfg.QueuePath(config.CertQueue))
	if err := q.Init(); err != nil {
		return err
	}
	entry, err := q.Publish(data)
	if err != nil {
		return fmt.Errorf("publish cert-request for %s: %w", name, err)
	}
	in.log.Info("certificate requested", "site", name, "domains", strings.Join(domains, ","), "entry", entry)
	return nil
}
