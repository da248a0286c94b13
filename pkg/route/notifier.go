package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/notify"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// The bounds of the log lines a failure notice carries: the last
// LogTailLines lines within the last LogTailBytes bytes of the run's log.
const (
	LogTailLines = 20
	LogTailBytes = 2048
)

// sendTimeout bounds sending one notice to all its targets, retries
// included, so that a dead target holds up queues/status for at most
// this long.
const sendTimeout = 2 * time.Minute

// notifier sends notices to the [notify] targets, with the secrets it
// read (dh-route alone reads them). Sending never fails what it is about:
// a target that still fails after its retries (pkg/notify) is logged and
// skipped; the others are still sent to.
type notifier struct {
	senders atomic.Pointer[map[string]notify.Sender]
	st      *store.Store
	logger  *slog.Logger

	mu      sync.Mutex
	claimed map[string]bool // keys of the notices table this process saw taken: no query for them
	warned  map[string]bool // queues whose failed/ could not be read, logged once
}

// claim reports whether the notice key is new (ClaimNotice), asking the
// database only about keys this process has not seen taken.
func (n *notifier) claim(ctx context.Context, key string) (bool, error) {
	n.mu.Lock()
	seen := n.claimed[key]
	n.mu.Unlock()
	if seen {
		return false, nil
	}
	fresh, err := n.st.ClaimNotice(ctx, key)
	if err == nil {
		n.mu.Lock()
		if n.claimed == nil {
			n.claimed = map[string]bool{}
		}
		n.claimed[key] = true
		n.mu.Unlock()
	}
	return fresh, err
}

// setConfig reads every target's secrets and makes its sender.
func (n *notifier) setConfig(cfg *config.Config, getenv func(string) string, userAgent string) error {
	senders := map[string]notify.Sender{}
	var errs []error
	for name, t := range cfg.Notify.Targets {
		logger := n.logger.With("target", name)
		switch t.Kind {
		case config.TargetEmail:
			pw, err := cfg.SMTPPassword(t, getenv)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			senders[name] = &notify.Mail{From: t.From, To: t.To, SMTP: t.SMTP, StartTLS: *t.StartTLS,
				User: t.SMTPUser, Password: string(pw), Logger: logger}
		default:
			url, err := cfg.NotifyURL(t, getenv)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			senders[name] = &notify.Webhook{Kind: t.Kind, URL: url, Username: t.Username, UserAgent: userAgent, Logger: logger}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	n.senders.Store(&senders)
	return nil
}

// send sends m to each target, in turn, and logs the ones that fail.
func (n *notifier) send(ctx context.Context, targets []*config.NotifyTarget, m notify.Message, attrs ...any) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	senders := *n.senders.Load()
	for _, t := range targets {
		s, ok := senders[t.Name]
		if !ok {
			continue
		}
		if err := s.Send(ctx, m); err != nil {
			n.logger.Warn("notification not sent", append(attrs, "target", t.Name, "err", err.Error())...)
			continue
		}
		n.logger.Info("notification sent", append(attrs, "target", t.Name)...)
	}
}

// runNotice sends the notice of a finished run to its deployment's
// targets that want its outcome, reading the run from the database and
// its log's last lines.
func (n *notifier) runNotice(ctx context.Context, cfg *config.Config, d *config.Deployment, req *event.RunNotice) error {
	outcome := config.OnFailure
	if req.State == store.RunSucceeded {
		outcome = config.OnSuccess
	}
	targets := cfg.NotifyTargets(d.Notify, outcome)
	if len(targets) == 0 {
		return nil // the configuration changed since the worker asked
	}
	if n.st == nil {
		return queue.Retry(fmt.Errorf("run notice: no database"))
	}
	run, err := n.st.GetRun(ctx, d.Name, req.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return event.Errorf("run notice: deployment %s has no run %d", d.Name, req.RunID)
	}
	if err != nil {
		return err
	}
	if run.State != req.State {
		return event.Errorf("run notice: run %d of %s is %s, not %s as the entry says", run.ID, d.Name, run.State, req.State)
	}
	r := notify.Run{ID: run.ID, Deployment: d.Name, Repository: d.Repository, Commit: run.Commit,
		CommitURL: cfg.CommitURL(d, run.Commit), Ref: run.Ref, Subject: run.CommitSubject, Author: run.CommitAuthor,
		Trigger: run.Trigger, TriggeredBy: run.TriggeredBy, State: notify.Success, Error: run.Error}
	if !run.StartedAt.IsZero() && run.FinishedAt.After(run.StartedAt) {
		r.Duration = run.FinishedAt.Sub(run.StartedAt).Round(time.Millisecond)
	}
	if run.State != store.RunSucceeded {
		r.State, r.ExitCode = notify.Failure, run.ExitCode
		if run.FailedStep != nil {
			r.Step = *run.FailedStep
			if r.Step >= 1 && r.Step <= len(d.Steps) && len(d.Steps[r.Step-1]) > 0 {
				r.Command = d.Steps[r.Step-1][0]
			}
		}
		if run.LogPath != "" {
			tail, err := logTail(cfg, d.Name, run.LogPath)
			if err != nil {
				n.logger.Warn("run notice without the log's last lines", "deployment", d.Name, "run", run.ID, "err", err)
			}
			r.Log = tail
		}
	}
	n.send(ctx, targets, r.Message(), "deployment", d.Name, "run", run.ID)
	return nil
}

// logTail returns the last LogTailLines lines of a run's log, within its
// last LogTailBytes bytes (a first, partial line dropped).
func logTail(cfg *config.Config, deployment, path string) (string, error) {
	f, err := config.OpenRunLog(cfg.StateDir, deployment, path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-LogTailBytes, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimRight(string(buf), "\n")
	if off > 0 {
		if _, rest, ok := strings.Cut(s, "\n"); ok {
			s = rest
		}
	}
	lines := strings.Split(s, "\n")
	if len(lines) > LogTailLines {
		lines = lines[len(lines)-LogTailLines:]
	}
	return strings.ToValidUTF8(strings.Join(lines, "\n"), "\uFFFD"), nil
}

// check sends, once each, the notices of the certificates that expire
// within notify.cert_expiry_days (once a day per certificate) and of the
// entries in the failed/ directories of every queue (nginx's and cert's
// through the ACL of tmpfiles.d, which lets dh-route read their sidecars).
func (n *notifier) check(ctx context.Context, cfg *config.Config, now time.Time) error {
	var errs []error
	if to := cfg.NotifyTargets(cfg.Notify.DefaultTargets, config.OnCertExpiry); cfg.Notify.CertExpiryDays > 0 && len(to) > 0 {
		errs = append(errs, n.certs(ctx, cfg, to, now, time.Duration(cfg.Notify.CertExpiryDays)*24*time.Hour))
	}
	errs = append(errs, n.failed(ctx, cfg))
	return errors.Join(errs...)
}

// certs sends to the targets to the notices of the certificates that
// expire within within of now, once a day each.
func (n *notifier) certs(ctx context.Context, cfg *config.Config, to []*config.NotifyTarget, now time.Time, within time.Duration) error {
	certs, err := n.st.ListCerts(ctx)
	if err != nil {
		return err
	}
	today := now.UTC().Format(time.DateOnly)
	n.mu.Lock()
	for key := range n.claimed {
		if strings.HasPrefix(key, "cert/") && !strings.HasSuffix(key, "/"+today) {
			delete(n.claimed, key) // another day's
		}
	}
	n.mu.Unlock()
	for _, c := range certs {
		notAfter, estimated, ok := certExpiry(cfg, c)
		if !ok || notAfter.Sub(now) > within {
			continue
		}
		key := "cert/" + c.Name + "/" + today
		fresh, err := n.claim(ctx, key)
		if err != nil {
			return err
		}
		if !fresh {
			continue
		}
		n.send(ctx, to, notify.CertExpiry(c.Name, c.Domains, notAfter, now, estimated), "cert", c.Name)
	}
	return nil
}

// certExpiry is when c expires: as dh-cert recorded it from the
// certificate, else (not recorded yet: a certificate obtained before
// dh-cert recorded expiries, until its next renew) its issue time plus
// notify.cert_lifetime, estimated.
func certExpiry(cfg *config.Config, c store.Cert) (notAfter time.Time, estimated, ok bool) {
	if !c.NotAfter.IsZero() {
		return c.NotAfter, false, true
	}
	if c.IssuedAt.IsZero() {
		return time.Time{}, false, false
	}
	return c.IssuedAt.Add(cfg.Notify.CertLifetime), true, true
}

// MaxFailedNotices bounds the failed-entry notices of one queue per
// check: the entries found beyond it are told in one notice (how many),
// so that a consumer (a deployment's user writes its queue's failed/)
// cannot flood the chat with a notice per file.
const MaxFailedNotices = 5

func (n *notifier) failed(ctx context.Context, cfg *config.Config) error {
	var read, seen []string
	queues := append([]string{config.MainQueue, config.StatusQueue, config.NginxQueue, config.CertQueue}, cfg.DeploymentNames()...)
	for _, name := range queues {
		targets := cfg.Notify.DefaultTargets
		if d, ok := cfg.Deployment(name); ok {
			targets = d.Notify
		}
		q := queue.Open(cfg.QueuePath(name))
		entries, err := q.Failed()
		if err != nil {
			n.warnOnce("failed/ not readable", name, err)
			continue
		}
		read = append(read, name)
		told, more := 0, 0
		to := cfg.NotifyTargets(targets, config.OnFailedEntry)
		for _, e := range entries {
			key := "failed/" + name + "/" + e
			seen = append(seen, key)
			fresh, err := n.claim(ctx, key)
			if err != nil {
				return err
			}
			if !fresh || len(to) == 0 {
				continue
			}
			if told == MaxFailedNotices {
				more++ // told in one notice below
				continue
			}
			told++
			f, err := q.ReadFailure(e)
			if err != nil {
				f.Error = "(no readable sidecar: " + err.Error() + ")"
			}
			n.send(ctx, to, notify.FailedEntry(name, e, f.Error, f.Attempts, f.FailedAt), "queue", name, "entry", e)
		}
		if more > 0 {
			n.send(ctx, to, notify.MoreFailed(name, more), "queue", name, "more", more)
		}
	}
	kept := make(map[string]bool, len(seen))
	for _, key := range seen {
		kept[key] = true
	}
	n.mu.Lock()
	for key := range n.claimed {
		if strings.HasPrefix(key, "failed/") && !kept[key] {
			delete(n.claimed, key) // its record is forgotten below: if it fails again, it is told again
		}
	}
	n.mu.Unlock()
	return n.st.ForgetNotices(ctx, read, seen)
}

// warnOnce logs a queue's problem the first time this process sees it.
func (n *notifier) warnOnce(msg, queue string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.warned == nil {
		n.warned = map[string]bool{}
	}
	if !n.warned[queue] {
		n.warned[queue] = true
		n.logger.Warn(msg, "queue", queue, "err", err, "hint", "systemd-tmpfiles --create dh-deployer.conf (or dh-deployer-acl queues) lets dh-route read it")
	}
}
