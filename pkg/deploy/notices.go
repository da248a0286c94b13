package deploy

import (
	"log/slog"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// notices hands commit statuses and run notices to dh-route in the
// background, one at a time and in the order they were made (GitHub
// shows the last status of a context, so order matters), so that a full
// disk or a slow queue never holds up a deployment. A notice that cannot
// be queued is logged and dropped.
//
// The worker holds no GitHub token and no notification secret (its build
// steps could read them): a commit status or a run notice is an entry in
// queues/status, which dh-route, the only reader of github.token_file and
// of the [notify] targets' secrets, sets on GitHub or sends
// (route.Poster).
type notices struct {
	status     *queue.Queue // queues/status; nil without github.token_file and [notify] targets
	deployment string
	log        *slog.Logger

	ch   chan func()
	done chan struct{}
}

// backlog bounds the notices waiting to be posted; past it new ones are
// dropped with a log line rather than blocking deployments.
const backlog = 256

func (n *notices) start() {
	n.ch = make(chan func(), backlog)
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		for post := range n.ch {
			post()
		}
	}()
}

func (n *notices) add(what string, post func()) {
	select {
	case n.ch <- post:
	default:
		n.log.Warn("too many notices waiting; dropped one", "notice", what)
	}
}

func (n *notices) commitStatus(repo, sha string, s ghstatus.Status) {
	e := event.CommitStatus{Deployment: n.deployment, Repository: repo, Commit: sha, State: string(s.State),
		Description: s.Description, TargetURL: s.TargetURL, CreatedAt: time.Now()}
	n.publish("commit status", &e, "commit", sha, "state", string(s.State))
}

// runNotice asks dh-route to notify the deployment's targets of a
// finished run.
func (n *notices) runNotice(run int64, state string) {
	e := event.RunNotice{Deployment: n.deployment, RunID: run, State: state, CreatedAt: time.Now()}
	n.publish("run notice", &e, "run", run, "state", state)
}

// publish queues e in the background; nothing without queues/status.
func (n *notices) publish(what string, e interface{ Encode() ([]byte, error) }, attrs ...any) {
	if n.status == nil {
		return
	}
	n.add(what, func() {
		data, err := e.Encode()
		if err == nil {
			_, err = n.status.Publish(data)
		}
		if err != nil {
			n.log.Warn(what+" not queued", append(attrs, "err", err)...)
		}
	})
}

// close posts what is waiting, for at most d.
func (n *notices) close(d time.Duration) {
	close(n.ch)
	select {
	case <-n.done:
	case <-time.After(d):
		n.log.Warn("gave up waiting for statuses and notices to be queued", "waited", d)
	}
}
