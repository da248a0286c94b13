package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/follow"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/termsafe"
)

// followWriteTimeout is how long one piece of a followed log may take to
// reach the client; each write moves the deadline, so a log followed for
// an hour is fine and a client that stopped reading is dropped.
const followWriteTimeout = time.Minute

// followLog streams the log of a run that has not ended (GET
// /status/logs/NAME/RUN?follow=1): plain chunked text/plain, no script
// needed, each piece flushed as the worker writes it (follow.Copy, a
// bounded poll of the file), until the run's state in the database is
// final, the run is Overdue (its worker stopped), the client goes away or
// the listener stops. What the build wrote comes defused for a terminal
// (pkg/termsafe: escape sequences in caret notation, a CR as a line
// break). At most Options.MaxFollowers at once (503 beyond). A log whose
// run has ended is served whole, as without follow.
func (h *Handler) followLog(w http.ResponseWriter, r *http.Request, run store.Run, timeout time.Duration, f *os.File) {
	select {
	case h.followers <- struct{}{}:
		defer func() { <-h.followers }()
	default:
		w.Header().Set("Retry-After", "10")
		h.refuse(w, r, http.StatusServiceUnavailable, fmt.Sprintf("%d logs are followed already: try again later, or without follow", cap(h.followers)))
		return
	}
	rc := http.NewResponseController(w)
	// The listener's read and write timeouts are for short requests: the
	// stream lives as long as the run. (An expired read deadline would
	// also end the request's context.)
	rc.SetReadDeadline(time.Time{})
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front passes each piece on
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	ended := func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
		defer cancel()
		now, err := h.st.GetRun(ctx, run.Deployment, run.ID)
		if err != nil {
			return false, err
		}
		// A run whose worker died stays "running" until the worker
		// starts again: stop rather than hold the follower's slot.
		return now.Ended(), now.Overdue(timeout, h.opts.Now())
	}
	// Read live, often by curl on a terminal: defused (termsafe). The
	// log served whole is the file's bytes.
	out := termsafe.NewWriter(follow.Flusher(deadlineWriter{w: w, rc: rc}, rc.Flush))
	err := follow.Copy(r.Context(), out, f, ended, follow.Options{})
	if err == nil {
		err = out.Flush()
	}
	if err != nil && r.Context().Err() == nil && !errors.Is(err, context.Canceled) {
		// The client is still there: say why the stream stops early.
		fmt.Fprintf(out, "\n[dh-route: stopped following the log: %v]\n", err)
		h.opts.Logger.Warn("log follow stopped", "deployment", run.Deployment, "run", run.ID, "err", err)
	}
}

// deadlineWriter moves the connection's write deadline before each write.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(followWriteTimeout))
	return d.w.Write(p)
}
