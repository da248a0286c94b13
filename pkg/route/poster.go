package route

import (
	"context"
	"log/slog"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Poster sets the commit statuses that the deployments' workers hand over
// in queues/status. It runs in dh-route, the only process that reads
// github.token_file: no deployment's user (whose build steps run a
// repository's code) can read the token. An entry is set only if it is
// about the repository of its deployment and was published by that
// deployment's user (or root, a replay): one deployment cannot set
// statuses on another's repository. GitHub's answer decides the entry's
// fate: set (or no token configured: nothing to do), done; a temporary
// failure (network, 5xx, 429, after pkg/ghstatus's own retries), left
// queued and retried with backoff; anything else, failed/ with GitHub's
// reason.
type Poster struct {
	client atomic.Pointer[ghstatus.Client]
	cfg    atomic.Pointer[config.Config]
	logger *slog.Logger
}

// NewPoster returns a Poster for cfg, reading the token with getenv
// (CredentialPath's rule). userAgent is sent with each request.
func NewPoster(cfg *config.Config, getenv func(string) string, userAgent string, logger *slog.Logger) (*Poster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Poster{logger: logger}
	return p, p.SetConfig(cfg, getenv, userAgent)
}

// SetConfig makes cfg (and the token it names, read now) the Poster's
// configuration for the entries handled from now on.
func (p *Poster) SetConfig(cfg *config.Config, getenv func(string) string, userAgent string) error {
	token, err := cfg.GitHubToken(getenv)
	if err != nil {
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
	req, err := event.DecodeCommitStatus(e.Data)
	if err != nil {
		return err
	}
	d, ok := cfg.Deployment(req.Deployment)
	if !ok {
		return sysexits.Errorf(sysexits.DataErr, "commit status for deployment %q, which is not in %s: refused", req.Deployment, cfg.File)
	}
	if !strings.EqualFold(req.Repository, d.Repository) {
		return sysexits.Errorf(sysexits.DataErr, "commit status for repository %s, but deployment %s deploys %s: refused",
			req.Repository, d.Name, d.Repository)
	}
	// e.Owner comes from the open file the queue read (queue.Entry); the
	// queue took it only from one of its writers: some deployment's user.
	if uid, ok := config.UserID(d.RunsAs()); e.Owner != 0 && (!ok || e.Owner != uid) {
		return hint.With(sysexits.Errorf(sysexits.DataErr,
			"commit status entry %s is owned by %s, not by %s (deployment %s's user) or root: refused",
			e.Name, userName(e.Owner), d.RunsAs(), d.Name),
			"only the deployment's own worker asks for its statuses; set deployments."+d.Name+".user to the user it runs as")
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

// userName is the name of user id uid, or the number if it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}
