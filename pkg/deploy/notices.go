package deploy

import (
	"context"
	"log/slog"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/notify"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// notices hands commit statuses to dh-route and posts chat notifications
// in the background, one at a time and in the order they were made
// (GitHub shows the last status of a context, so order matters), so that
// a slow or unreachable API never holds up a deployment. A notice that
// cannot be posted after its retries is logged and dropped.
//
// The worker holds no GitHub token (its build steps could read it): a
// commit status is an entry in queues/status, which dh-route, the only
// reader of github.token_file, sets on GitHub (route.Poster).
type notices struct {
	status     *queue.Queue // queues/status; nil when github.token_file is not set
	deployment string
	chat       *notify.Webhook
	log        *slog.Logger

	ch   chan func(context.Context)
	done chan struct{}
}

// backlog bounds the notices waiting to be posted; past it new ones are
// dropped with a log line rather than blocking deployments.
const backlog = 256

func (n *notices) start() {
	n.ch = make(chan func(context.Context), backlog)
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		for post := range n.ch {
			post(context.Background())
		}
	}()
}

func (n *notices) add(what string, post func(context.Context)) {
	select {
	case n.ch <- post:
	default:
		n.log.Warn("too many notices waiting; dropped one", "notice", what)
	}
}

func (n *notices) commitStatus(repo, sha string, s ghstatus.Status) {
	if n.status == nil {
		return
	}
	e := event.CommitStatus{Deployment: n.deployment, Repository: repo, Commit: sha, State: string(s.State),
		Description: s.Description, TargetURL: s.TargetURL, CreatedAt: time.Now()}
	n.add("commit status", func(context.Context) {
		data, err := e.Encode()
		if err == nil {
			_, err = n.status.Publish(data)
		}
		if err != nil {
			n.log.Warn("commit status not queued", "commit", sha, "state", string(s.State), "err", err)
		}
	})
}

func (n *notices) chatMessage(m notify.Message) {
	if !n.chat.Enabled() {
		return
	}
	n.add("notification", func(ctx context.Context) { n.chat.SendLogged(ctx, m) })
}

// close posts what is waiting, for at most d.
func (n *notices) close(d time.Duration) {
	close(n.ch)
	select {
	case <-n.done:
	case <-time.After(d):
		n.log.Warn("gave up waiting for statuses and notifications to be posted", "waited", d)
	}
}
