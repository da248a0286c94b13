package route

import (
	"context"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Poster sets the commit statuses and sends the run notices that the
// deployments' workers hand over in queues/status, and the notices of
// expiring certificates and failed entries it finds itself (Watch). It
// runs in dh-route, the only process that reads github.token_file and the
// [notify] targets' secrets: no deployment's user (whose build steps run
// a repository's code) can read them. An entry is acted on only if it was
// published by its deployment's user (or root, a replay), and a status
// only if it is about the repository of its deployment: one deployment
// cannot set statuses on another's repository nor notify about another's
// runs. GitHub's answer decides a status entry's fate: set (or no token
// configured: nothing to do), done; a temporary failure (network, 5xx,
// 429, after pkg/ghstatus's own retries), left queued and retried with
// backoff; anything else, failed/ with GitHub's reason. A run notice is
// done once each target was tried (a target failing after pkg/notify's
// retries is logged); only a database that cannot be read leaves it
// queued.
type Poster struct {
	client atomic.Pointer[ghstatus.Client]
	cfg    atomic.Pointer[config.Config]
	notify notifier
	logger *slog.Logger
}

// NewPoster returns a Poster for cfg, reading the token and the targets'
// secrets with getenv (CredentialPath's rule). userAgent is sent with each
// request. st is where runs are read, for the run notices.
func NewPoster(cfg *config.Config, st *store.Store, getenv func(string) string, userAgent string, logger *slog.Logger) (*Poster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Poster{logger: logger, notify: notifier{st: st, logger: logger}}
	return p, p.SetConfig(cfg, getenv, userAgent)
}

// SetConfig makes cfg (and the token and the secrets it names, read now)
// the Poster's configuration for the entries handled from now on.
func (p *Poster) SetConfig(cfg *config.Config, getenv func(string) string, userAgent string) error {
	token, err := cfg.GitHubToken(getenv)
	if err != nil {
		return err
	}
	if err := p.notify.setConfig(cfg, getenv, userAgent); err != nil {
		return err
	}
	p.client.Store(&ghstatus.Client{BaseURL: cfg.GitHub.APIURL, Token: string(token), Context: cfg.GitHub.StatusContext,
		UserAgent: userAgent, Logger: p.logger})
	p.cfg.Store(cfg)
	return nil
}

// Handle is the queue.Handler of queues/status.
func (p *Poster) Handle(ctx context.Context, e *queue.Entry) error {
	cfg, client := p.cfg.Load(), p.client.Load()
	env, err := event.Peek(e.Data)
	if err != nil {
		return err
	}
	if env.Kind == event.KindRunNotice {
		req, err := event.DecodeRunNotice(e.Data)
		if err != nil {
			return err
		}
		d, err := p.owned(cfg, e, "run notice", req.Deployment)
		if err != nil {
			return err
		}
		return p.notify.runNotice(ctx, cfg, d, req)
	}
	req, err := event.DecodeCommitStatus(e.Data)
	if err != nil {
		return err
	}
	d, err := p.owned(cfg, e, "commit status", req.Deployment)
	if err != nil {
		return err
	}
	if !strings.EqualFold(req.Repository, d.Repository) {
		return sysexits.Errorf(sysexits.DataErr, "commit status for repository %s, but deployment %s deploys %s: refused",
			req.Repository, d.Name, d.Repository)
	}
	if !client.Enabled() {
		p.logger.Warn("commit status not set: github.token_file is not configured", "deployment", d.Name, "commit", req.Commit)
		return nil
	}
	err = client.Set(ctx, d.Repository, req.Commit, ghstatus.Status{State: ghstatus.State(req.State),
		Description: req.Description, TargetURL: req.TargetURL})
	if err != nil {
		return err
	}
	p.logger.Info("commit status set", "deployment", d.Name, "repository", d.Repository, "commit", req.Commit, "state", req.State)
	return nil
}

// owned returns the deployment an entry is about, if it is configured and
// the entry was published by its user (or root).
func (p *Poster) owned(cfg *config.Config, e *queue.Entry, what, deployment string) (*config.Deployment, error) {
	d, ok := cfg.Deployment(deployment)
	if !ok {
		return nil, sysexits.Errorf(sysexits.DataErr, "%s for deployment %q, which is not in %s: refused", what, deployment, cfg.File)
	}
	// e.Owner comes from the open file the queue read (queue.Entry); the
	// queue took it only from one of its writers: some deployment's user.
	if uid, ok := config.UserID(d.RunsAs()); e.Owner != 0 && (!ok || e.Owner != uid) {
		return nil, hint.With(sysexits.Errorf(sysexits.DataErr,
			"%s entry %s is owned by %s, not by %s (deployment %s's user) or root: refused",
			what, e.Name, userName(e.Owner), d.RunsAs(), d.Name),
			"only the deployment's own worker asks for its statuses and notices; set deployments."+d.Name+".user to the user it runs as")
	}
	return d, nil
}

// Watch sends the notices of expiring certificates and failed entries
// (each once: the notices table), checking at once and then every
// interval until ctx ends. A check that fails is logged and tried again
// at the next.
func (p *Poster) Watch(ctx context.Context, interval time.Duration) {
	for {
		if err := p.Check(ctx, time.Now()); err != nil && ctx.Err() == nil {
			p.logger.Warn("notices not checked", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Check sends, once each, the notices of the certificates that expire
// within notify.cert_expiry_days of now and of the entries in failed/
// directories.
func (p *Poster) Check(ctx context.Context, now time.Time) error {
	if p.notify.st == nil {
		return queue.Retry(fmt.Errorf("notices: no database"))
	}
	return p.notify.check(ctx, p.cfg.Load(), now)
}

// userName is the name of user id uid, or the number if it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}
