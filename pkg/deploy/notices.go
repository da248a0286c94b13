package deploy

import (
	"context"
	"log/slog"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/notify"
)

// notices posts commit statuses and chat notifications in the background,
// one at a time and in the order they were made (GitHub shows the last
// status of a context, so order matters), so that a slow or unreachable
// API never holds up a deployment. A notice that cannot be posted after
// its retries is logged and dropped.
type notices struct {
	status *ghstatus.Client
	chat   *notify.Webhook
	log    *slog.Logger

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
	if !n.status.Enabled() {
		return
	}
	n.add("commit status", func(ctx context.Context) { n.status.SetLogged(ctx, repo, sha, s) })
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
