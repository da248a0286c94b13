// Package cert is dh-cert's stage: it obtains the certificates nginx sites
// wait for, and renews them, with certbot. docs/cert.md is the operator's
// version of this comment.
//
// For a cert-request entry of queues/cert (HandleBatch):
//
//  1. Decode it (a bad entry is a sysexits.DataErr: failed/), and check the
//     certificate name and every domain again (event.ValidCertName,
//     event.ValidDomain) while building certbot's argv (CertonlyArgs).
//     Nothing reaches certbot otherwise; there is never a shell.
//  2. Backoff: if the certificate name's last attempt failed and its next
//     try (certs.next_try) has not come, the entry fails temporarily at
//     once, without running certbot: it stays queued, and the queue retries
//     it (a database read, not an ACME request) until its time comes. The
//     backoff belongs to the name, whichever entry asks for it.
//     HandleBatch handles the whole queue each round, so a waiting request
//     does not hold up the ones behind it; those stay queued until it
//     leaves, and handled again they are recognised (certs.entry) without
//     running certbot or queueing their site twice.
//  3. Run `certbot certonly --non-interactive --agree-tos --cert-name NAME
//     AUTHENTICATOR ACCOUNT [--server URL] -d D1 -d D2 ...
//     --keep-until-expiring --expand` with the configured command prefix
//     (sudo -n /usr/bin/certbot), one certbot at a time (a lock in the
//     queue directory), and record the run in cert_attempts.
//  4. On success: publish the request's For entry (nginx-sites) to
//     queues/nginx, so dh-nginx installs the site that waited, then record
//     the certificate issued, with its expiry. Handling the entry again after a crash is
//     harmless: certbot keeps an unexpired certificate that covers the
//     domains, and dh-nginx converges.
//  5. On failure: record certbot's message and the next try, Backoff(n)
//     after the n-th consecutive failure of the entry, and fail
//     temporarily; after MaxAttempts consecutive failures, record the
//     certificate failed and move the entry to failed/ (dh-cert replay, or
//     a move back once the next try has come, tries again). The defaults (DefaultBackoff, DefaultMaxAttempts) stay
//     well inside Let's Encrypt's failed-validation limit.
//
// Renew runs `certbot renew --non-interactive --no-random-sleep-on-renew`
// and publishes an nginx-reload entry when the content of any
// <cert_dir>/NAME/fullchain.pem changed (appeared, changed or vanished)
// since the last reload it queued (queues/cert/.reloaded), so a renewal
// whose reload was lost to a crash is reloaded by the next renew.
//
// Each certificate's exact expiry (the NotAfter of its fullchain.pem,
// which dh-cert may read, unlike its key) is recorded in certs.not_after
// when certbot obtained it and at every renew, for dh-route's metrics
// and expiry notices.
//
// The database is needed to handle a request (its backoff lives there): when
// it is down the entry waits. Renew records its run when it can, and renews
// anyway when it cannot.
package cert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 5
	DefaultTimeout     = 10 * time.Minute
)

// CertbotLockFile is the lock, in queues/cert, held while certbot runs, so
// that a renewal and a request never run certbot at the same time.
const CertbotLockFile = ".certbot.lock"

// DefaultBackoff is the wait after the n-th consecutive failure of a
// request: 5 minutes, then 30 minutes, 2 hours, 6 hours. With
// DefaultMaxAttempts, a request that keeps failing is tried five times over
// about 8.5 hours, then moved to failed/.
func DefaultBackoff(n int) time.Duration {
	steps := []time.Duration{5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour}
	return steps[min(max(n, 1), len(steps))-1]
}

// Options tune a Worker.
type Options struct {
	Logger *slog.Logger
	// Env is added to certbot's environment, which is otherwise only
	// PATH=progpath.SystemPATH (sudo resets it anyway).
	Env []string
	// Stderr receives certbot's output as it comes (the journal). nil
	// discards it; the database keeps the end of a failure's output.
	Stderr io.Writer
	// Wait retries database calls until they succeed (the daemon) instead
	// of failing the entry temporarily.
	Wait bool
	// Timeout bounds each certbot run (default DefaultTimeout).
	Timeout time.Duration
	// Backoff is the wait after the n-th consecutive failure of a request
	// (default DefaultBackoff).
	Backoff func(n int) time.Duration
	// MaxAttempts is how many consecutive failures of a request move it to
	// failed/ (default DefaultMaxAttempts).
	MaxAttempts int
}

// Worker handles queues/cert and renewals.
type Worker struct {
	next  atomic.Pointer[Worker] // built by SetConfig, not yet taken up
	cfg   *config.Config
	st    *store.Store // nil: Renew only, recording nothing
	opts  Options
	log   *slog.Logger
	q     *queue.Queue
	nginx *queue.Queue
	prog  string   // certbot's command (or the request command), absolute
	args  []string // the rest of the command prefix (or request command)
	env   []string
	db    store.Retrier // every database call of a request goes through it
}

// New returns the worker. st may be nil for a worker that only renews
// (its runs are then not recorded). A command prefix whose program cannot
// be found is a sysexits.Config error.
func New(cfg *config.Config, st *store.Store, opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	env := append([]string{"PATH=" + progpath.SystemPATH}, opts.Env...)
	command, key := cfg.Cert.Command, "cert.command"
	if len(cfg.Cert.RequestCommand) > 0 {
		command, key = cfg.Cert.RequestCommand, "cert.request_command"
	}
	if len(command) == 0 {
		return nil, sysexits.Errorf(sysexits.Config, "%s: %s is empty", cfg.File, key)
	}
	prog, err := progpath.Program(command[0], progpath.EnvPATH(env))
	if err != nil {
		return nil, hint.With(sysexits.Errorf(sysexits.Config, "%s: %s: %v", cfg.File, key, err),
			"give the program as an absolute path, e.g. [\"/usr/bin/sudo\", \"-n\", \"/usr/bin/certbot\"]")
	}
	return &Worker{
		cfg: cfg, st: st, opts: opts, log: opts.Logger, env: env, db: store.Retrying(opts.Wait, opts.Logger),
		q:     queue.Open(cfg.QueuePath(config.CertQueue)),
		nginx: queue.Open(cfg.QueuePath(config.NginxQueue)),
		prog:  prog, args: slices.Clone(command[1:]),
	}, nil
}

// SetConfig hands the worker a reloaded configuration (SIGHUP); it takes
// it up before its next request, never during a certbot run: [cert]
// (command, authenticator, email, server …) and the deployments. A
// configuration New refuses (cert.command not found) is refused here too,
// with New's error, and the worker goes on with the one it has.
func (w *Worker) SetConfig(cfg *config.Config) error {
	next, err := New(cfg, w.st, w.opts)
	if err != nil {
		return err
	}
	w.next.Store(next)
	return nil
}

// update takes up the configuration SetConfig handed over, if any.
func (w *Worker) update() {
	if next := w.next.Swap(nil); next != nil {
		w.cfg, w.prog, w.args = next.cfg, next.prog, next.args
	}
}

// Config is the configuration in use. Like the fields it reads, it is
// for the goroutine that handles the entries.
func (w *Worker) Config() *config.Config { return w.cfg }

// Queue is queues/cert.
func (w *Worker) Queue() *queue.Queue { return w.q }

// CertonlyArgs returns certbot's arguments (after the command prefix) that
// obtain the certificate name for domains, as the sudoers rule in
// sudoers/dh-cert allows them; an invalid name, domain, email or server is
// a sysexits.DataErr (Config for the configuration's values).
func CertonlyArgs(cfg *config.Config, name string, domains []string) ([]string, error) {
	if !event.ValidCertName(name) {
		return nil, sysexits.Errorf(sysexits.DataErr, "invalid certificate name %q", name)
	}
	if len(domains) == 0 {
		return nil, sysexits.Errorf(sysexits.DataErr, "certificate %s has no domains", name)
	}
	args := []string{"certonly", "--non-interactive", "--agree-tos", "--cert-name", name}
	switch cfg.Cert.Authenticator {
	case "webroot":
		webroot := cfg.Webroot()
		if !filepath.IsAbs(webroot) || strings.ContainsAny(webroot, " \t\n") || strings.HasPrefix(webroot, "-") {
			return nil, sysexits.Errorf(sysexits.Config, "cert.webroot %q must be an absolute path without spaces", webroot)
		}
		args = append(args, "--webroot", "-w", webroot)
	case "nginx":
		args = append(args, "--nginx")
	default:
		return nil, sysexits.Errorf(sysexits.Config, "cert.authenticator %q is neither webroot nor nginx", cfg.Cert.Authenticator)
	}
	if e := cfg.Cert.Email; e != "" {
		if !emailRE.MatchString(e) {
			return nil, sysexits.Errorf(sysexits.Config, "cert.email %q is not an address dh-cert passes to certbot", e)
		}
		args = append(args, "--email", e)
	} else {
		args = append(args, "--register-unsafely-without-email")
	}
	if s := cfg.Cert.Server; s != "" {
		if !serverRE.MatchString(s) {
			return nil, sysexits.Errorf(sysexits.Config, "cert.server %q is not an https:// URL dh-cert passes to certbot", s)
		}
		args = append(args, "--server", s)
	}
	for _, d := range domains {
		if !event.ValidDomain(d) {
			return nil, sysexits.Errorf(sysexits.DataErr, "certificate %s: invalid domain %q", name, d)
		}
		args = append(args, "-d", d)
	}
	return append(args, "--keep-until-expiring", "--expand"), nil
}

// RenewArgs returns certbot's arguments (after the command prefix) of a
// renewal.
func RenewArgs() []string {
	return []string{"renew", "--non-interactive", "--no-random-sleep-on-renew"}
}

// emailRE and serverRE are what the sudoers rule allows (and a bit less).
var (
	emailRE  = regexp.MustCompile(`^[A-Za-z0-9._+][A-Za-z0-9._+-]*@[A-Za-z0-9][A-Za-z0-9.-]*$`)
	serverRE = regexp.MustCompile(`^https://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$`)
)

// HandleBatch is the queue.BatchHandler of queues/cert: each entry in
// order, as the package comment says, so that a request waiting for its next try does not hold
// up the requests behind it. The queue keeps the entries after a waiting
// one until it leaves; handled again, a request already obtained is
// recognised (certs.entry) and not run twice.
func (w *Worker) HandleBatch(ctx context.Context, es []*queue.Entry) []error {
	errs := make([]error, len(es))
	for i, e := range es {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			continue
		}
		errs[i] = w.handle(ctx, e, false)
	}
	return errs
}

// Replay handles an entry file in the foreground, as dh-cert replay does:
// like HandleBatch, but certbot runs even before the backoff's next try, and a
// failure is final (exit status 1), never a retry.
func (w *Worker) Replay(ctx context.Context, e *queue.Entry) error { return w.handle(ctx, e, true) }

// handle requests the certificate of one cert-request entry: it reads the
// request and the certificate's record, waits for the backoff's next try
// (unless replayed), runs certbot certonly and records the attempt, then
// queues the site install (issued) or records the failure (failed).
func (w *Worker) handle(ctx context.Context, e *queue.Entry, replay bool) error {
	w.update()
	req, args, err := w.decode(e)
	if err != nil {
		return err
	}
	prev, err := w.record(ctx, req.Name)
	if err != nil {
		return err
	}
	if prev.State == store.CertIssued && prev.Entry == e.Name && slices.Equal(prev.Domains, req.Domains) {
		// Handled already (its site install queued) and left in the queue
		// behind a request that waits for its next try.
		return nil
	}
	// The backoff is per certificate name, whichever entry asks.
	if !replay && prev.State != store.CertIssued && time.Now().Before(prev.NextTry) {
		return queue.RetryAfter(fmt.Errorf("certificate %s: %d failed attempts; next try at %s: %s",
			req.Name, prev.Attempts, prev.NextTry.UTC().Format(time.RFC3339), cell.Line(prev.LastError, 200)), time.Until(prev.NextTry))
	}
	// The consecutive failures so far; a request after one that was given
	// up starts again.
	failures := 0
	if prev.State == store.CertWaiting {
		failures = prev.Attempts
	}
	log := w.log.With("cert", req.Name, "entry", e.Name)
	log.Info("requesting certificate", "domains", req.Domains, "attempt", failures+1)
	attempt, runErr, err := w.certonly(ctx, e, req, args)
	if err != nil {
		return err
	}
	if runErr == nil {
		return w.issued(ctx, e, req, log)
	}
	return w.failed(ctx, e, req, prev, attempt, failures+1, replay, runErr, log)
}

// decode reads a cert-request entry and the certbot arguments it makes.
func (w *Worker) decode(e *queue.Entry) (*event.CertRequest, []string, error) {
	req, err := event.DecodeCertRequest(e.Data)
	if err != nil {
		return nil, nil, err
	}
	args, err := CertonlyArgs(w.cfg, req.Name, req.Domains)
	if err != nil {
		return nil, nil, err
	}
	if w.st == nil {
		return nil, nil, sysexits.Errorf(sysexits.Software, "certificate request without a database")
	}
	return req, args, nil
}

// record reads the certificate's record: its state, attempts and next
// try (the zero Cert when it has none yet).
func (w *Worker) record(ctx context.Context, name string) (prev store.Cert, err error) {
	err = w.db(ctx, "read certificate", func(ctx context.Context) (err error) {
		prev, err = w.st.GetCert(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			prev, err = store.Cert{}, nil
		}
		return err
	})
	return prev, err
}

// certonly runs certbot certonly for req and records the attempt. runErr
// is certbot's failure; err, an outcome for the entry as it is (shutting
// down, certbot not run, the attempt not recorded).
func (w *Worker) certonly(ctx context.Context, e *queue.Entry, req *event.CertRequest, args []string) (attempt store.CertAttempt, runErr, err error) {
	started := time.Now()
	res, runErr := w.certbot(ctx, Request{Command: store.CertCommandCertonly, Name: req.Name, Domains: req.Domains}, args)
	if runErr != nil && ctx.Err() != nil {
		return attempt, nil, ctx.Err() // shutting down: the entry stays queued
	}
	if ee, ok := errors.AsType[*sysexec.ExitError](runErr); runErr != nil && !ok {
		// certbot did not run (not found, no permission, the lock): an
		// operator's problem, not the request's, which waits for the fix.
		return attempt, nil, queue.Retry(fmt.Errorf("certificate %s: %w", req.Name, runErr))
	} else if ok {
		runErr = fmt.Errorf("certbot certonly %s: %s", req.Name, describeFailure(ee))
	}
	attempt = store.CertAttempt{Name: req.Name, Domains: req.Domains, Command: store.CertCommandCertonly,
		Entry: e.Name, StartedAt: started, OK: runErr == nil, ExitCode: exitCode(res, runErr)}
	if runErr != nil {
		attempt.Error = failureText(runErr, res)
	}
	err = w.db(ctx, "record certbot run", func(ctx context.Context) error {
		_, err := w.st.InsertCertAttempt(ctx, attempt)
		return err
	})
	return attempt, runErr, err
}

// issued queues the site install that waited for the certificate, then
// records the certificate as issued.
func (w *Worker) issued(ctx context.Context, e *queue.Entry, req *event.CertRequest, log *slog.Logger) error {
	// Queue the site install first, then record: a crash in between
	// handles the entry again (certbot keeps the certificate) and
	// queues the install twice, never zero times.
	sites := req.For
	data, err := sites.Encode()
	if err != nil {
		return sysexits.New(sysexits.DataErr, fmt.Errorf("certificate %s: the waiting nginx-sites entry: %w", req.Name, err))
	}
	name, err := w.nginx.Publish(data)
	if err != nil {
		return queue.Retry(fmt.Errorf("certificate %s: %w", req.Name, err))
	}
	rec := store.Cert{Name: req.Name, Domains: req.Domains, State: store.CertIssued, Entry: e.Name, IssuedAt: time.Now(),
		NotAfter: w.expiry(req.Name)}
	if err := w.db(ctx, "record certificate", func(ctx context.Context) error { return w.st.PutCert(ctx, rec) }); err != nil {
		return err
	}
	log.Info("certificate obtained; site install queued", "deployment", req.For.Deployment, "commit", req.For.Commit,
		"nginx_entry", name)
	return nil
}

// failed records the failures-th consecutive failure of the request and
// decides the entry's outcome: retried at the backoff's next try, or, on
// a replay or after the last attempt, failed for good (the record keeps a
// next try all the same, which a new request for the name respects).
func (w *Worker) failed(ctx context.Context, e *queue.Entry, req *event.CertRequest, prev store.Cert,
	attempt store.CertAttempt, failures int, replay bool, runErr error, log *slog.Logger) error {
	rec := store.Cert{Name: req.Name, Domains: req.Domains, State: store.CertWaiting, Entry: e.Name,
		Attempts: failures, LastError: attempt.Error, IssuedAt: prev.IssuedAt, NotAfter: prev.NotAfter}
	rec.NextTry = time.Now().Add(w.opts.Backoff(failures))
	final := replay || failures >= w.opts.MaxAttempts
	if final {
		rec.State = store.CertFailed
	}
	if err := w.db(ctx, "record certificate failure", func(ctx context.Context) error { return w.st.PutCert(ctx, rec) }); err != nil {
		return err
	}
	if final {
		log.Error("certificate request failed; giving up", "attempts", failures, "err", runErr)
		return queue.Fail(sysexits.New(sysexits.Failure, fmt.Errorf("%w (attempt %d of %d)", runErr, failures, w.opts.MaxAttempts)))
	}
	log.Warn("certificate request failed; will retry", "attempts", failures, "next_try", rec.NextTry, "err", runErr)
	return queue.RetryAfter(fmt.Errorf("%w (attempt %d of %d; next try at %s)", runErr, failures,
		w.opts.MaxAttempts, rec.NextTry.UTC().Format(time.RFC3339)), time.Until(rec.NextTry))
}

// ReloadedFile, in queues/cert, holds the SHA-256 of each
// <cert_dir>/NAME/fullchain.pem as of the last nginx-reload entry Renew
// queued (or of its first run): what nginx was last told to load.
const ReloadedFile = ".reloaded"

// Renew runs certbot renew and, when any certificate under cert_dir
// changed since the last nginx-reload it queued (ReloadedFile), publishes
// an nginx-reload entry, then records the certificates it covers. So a
// renewal whose reload was never queued (dh-cert killed or the power cut
// between certbot and the publish, or certbot renewing on its own) is
// reloaded by the next Renew. It returns the names of the certificates
// that changed. A failed certbot is an error (exit status 1) after the
// reload for whatever did change was queued.
func (w *Worker) Renew(ctx context.Context) ([]string, error) {
	dir := w.cfg.Nginx.CertDir
	record := filepath.Join(w.q.Dir(), ReloadedFile)
	before, err := readReloaded(record)
	if errors.Is(err, os.ErrNotExist) {
		before, err = snapshot(dir)
	}
	if err != nil {
		return nil, err
	}
	started := time.Now()
	res, runErr := w.certbot(ctx, Request{Command: store.CertCommandRenew}, RenewArgs())
	if runErr != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if ee, ok := errors.AsType[*sysexec.ExitError](runErr); ok {
		runErr = sysexits.New(sysexits.Failure, fmt.Errorf("certbot renew: %s", describeFailure(ee)))
	}
	after, err := snapshot(dir)
	if err != nil {
		return nil, err
	}
	var changed []string
	for name, sum := range after {
		if before[name] != sum {
			changed = append(changed, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)

	if w.st != nil {
		a := store.CertAttempt{Command: store.CertCommandRenew, Domains: changed, StartedAt: started, OK: runErr == nil,
			ExitCode: exitCode(res, runErr)}
		if runErr != nil {
			a.Error = failureText(runErr, res)
		}
		if _, err := w.st.InsertCertAttempt(ctx, a); err != nil {
			w.log.Warn("could not record the renewal", "err", err)
		}
		w.recordExpiries(ctx, slices.Sorted(maps.Keys(after)))
	}
	if len(changed) > 0 {
		data, err := (&event.NginxReload{Reason: "renewed certificates: " + strings.Join(changed, ", "),
			RequestedAt: time.Now().UTC()}).Encode()
		if err != nil {
			return changed, err
		}
		name, err := w.nginx.Publish(data)
		if err != nil {
			return changed, err
		}
		w.log.Info("certificates renewed; nginx reload queued", "certs", changed, "nginx_entry", name)
	} else if runErr == nil {
		w.log.Info("no certificate renewed")
	}
	// Only now that the reload is durably queued: a crash before this
	// queues it again at the next renew, never not at all.
	if err := writeReloaded(record, after); err != nil {
		return changed, err
	}
	return changed, runErr
}

// readReloaded reads ReloadedFile; os.ErrNotExist before the first Renew.
func readReloaded(path string) (map[string][sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, queue.Stop(fmt.Errorf("read %s: %w", path, err))
	}
	var hexes map[string]string
	if err := json.Unmarshal(data, &hexes); err != nil {
		return nil, hint.With(sysexits.Errorf(sysexits.DataErr, "%s: %v", path, err),
			"remove it: the next renew compares with the certificates as they are then")
	}
	sums := map[string][sha256.Size]byte{}
	for name, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return nil, hint.With(sysexits.Errorf(sysexits.DataErr, "%s: %q is not a SHA-256", path, h),
				"remove it: the next renew compares with the certificates as they are then")
		}
		sums[name] = [sha256.Size]byte(b)
	}
	return sums, nil
}

// writeReloaded durably replaces ReloadedFile with sums.
func writeReloaded(path string, sums map[string][sha256.Size]byte) error {
	hexes := map[string]string{}
	for name, sum := range sums {
		hexes[name] = hex.EncodeToString(sum[:])
	}
	data, err := json.MarshalIndent(hexes, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(path, append(data, '\n'), 0o640)
}

// snapshot returns the SHA-256 of each <dir>/NAME/fullchain.pem (through
// certbot's symlinks), by NAME. A missing dir is empty.
func snapshot(dir string) (map[string][sha256.Size]byte, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("read certificates: %w", err))
	}
	sums := map[string][sha256.Size]byte{}
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, de.Name(), "fullchain.pem"))
		if err != nil {
			continue // README, or not a certificate
		}
		sums[de.Name()] = sha256.Sum256(data)
	}
	return sums, nil
}

// certbot runs certbot for req, whose arguments are args, holding the
// certbot lock: with cert.request_command set, by writing req to the
// request file and running that command (`dh-cert certbot` as root reads
// it), whose output is cert.request_output's content when set; else by
// running the command prefix with args.
func (w *Worker) certbot(ctx context.Context, req Request, args []string) (sysexec.Result, error) {
	if err := w.q.Exists(); err != nil { // the lock lives in queues/cert, made by the install
		return sysexec.Result{ExitCode: -1}, err
	}
	unlock, err := queue.Lock(ctx, filepath.Join(w.q.Dir(), CertbotLockFile),
		func() { w.log.Info("waiting for the running certbot") })
	if err != nil {
		return sysexec.Result{ExitCode: -1}, err
	}
	defer unlock()
	if len(w.cfg.Cert.RequestCommand) == 0 {
		return sysexec.Run(ctx, sysexec.Cmd{
			Path: w.prog, Args: append(slices.Clone(w.args), args...), Env: w.env,
			Timeout: w.opts.Timeout, Stream: w.opts.Stderr,
		})
	}
	if err := WriteRequest(w.cfg.CertbotRequestFile(), req); err != nil {
		return sysexec.Result{ExitCode: -1}, err
	}
	started := time.Now()
	res, err := sysexec.Run(ctx, sysexec.Cmd{
		Path: w.prog, Args: slices.Clone(w.args), Env: w.env, Dir: "/",
		Timeout: w.opts.Timeout, Stream: w.opts.Stderr,
	})
	if file := w.cfg.Cert.RequestOutput; file != "" {
		out, rerr := sysexec.ReadOutput(file, started, sysexec.DefaultMaxOutput)
		if rerr != nil {
			w.log.Warn("no certbot output from the request command", "file", file, "err", rerr)
		} else {
			// The unit's output reaches the journal through dh-cert.
			io.WriteString(w.opts.Stderr, out)
			res.Output = append([]byte(out), res.Output...)
			if ee, ok := errors.AsType[*sysexec.ExitError](err); ok {
				ee.Result.Output = res.Output
			}
		}
	}
	return res, err
}

// describeFailure says how certbot failed: its exit status, and the
// problems the ACME server reported ("Detail:" lines) or else its last
// line of output.
func describeFailure(ee *sysexec.ExitError) string {
	var details []string
	for line := range strings.Lines(string(ee.Result.Output)) {
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "Detail:"); ok {
			details = append(details, strings.TrimSpace(d))
		}
	}
	status := fmt.Sprintf("exit status %d", ee.Result.ExitCode)
	switch {
	case ee.Result.TimedOut:
		status = fmt.Sprintf("timed out after %v", ee.Timeout)
	case ee.Result.Signal != "":
		status = "killed by signal " + ee.Result.Signal
	}
	if len(details) > 0 {
		return status + ": " + strings.Join(details, "; ")
	}
	msg := ee.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// failureText is what the database keeps of a failure: the message, then
// the end of certbot's output.
func failureText(err error, res sysexec.Result) string {
	out := strings.TrimSpace(string(res.Output))
	const keep = 4000
	if len(out) > keep {
		out = "…" + out[len(out)-keep:]
	}
	if out == "" {
		return err.Error()
	}
	return err.Error() + "\n" + out
}

func exitCode(res sysexec.Result, err error) *int {
	if err == nil {
		return new(0)
	}
	if res.ExitCode < 0 {
		return nil
	}
	return new(res.ExitCode)
}
