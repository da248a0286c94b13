package receive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/follow"
)

// Waiting for a run: POST /deploy/NAME?wait=SECONDS (or X-DH-Wait) holds
// the request until the run ends and answers its result (token.go); the
// hook socket's POST /push?wait=SECONDS streams the runs' logs as they
// are written, then their results (hook.go). Both read dh-route's status
// listener (Status, receive.status_url), count against
// receive.max_waiting and wait at most MaxWait.

// MaxWait is the longest a request may wait for its runs.
const MaxWait = 10 * time.Minute

// HeaderWait is the request header that asks to wait, as ?wait= does.
const HeaderWait = "X-DH-Wait"

// LogTailBytes bounds the log tail of a waited-for token deploy's answer.
const LogTailBytes = 4 << 10

// TrailerOutcome is the trailer that ends a waiting hook's stream with
// the pushes' outcome: succeeded, failed, pending (still running at the
// deadline, or unknown) or not-deployed.
const TrailerOutcome = "Dh-Outcome"

// waitParam reads how long a request asks to wait: ?wait=SECONDS or the
// X-DH-Wait header, 0 for not at all. It fails on anything but a whole
// number of seconds from 0 to MaxWait.
func waitParam(q url.Values, h http.Header) (time.Duration, error) {
	v := q.Get("wait")
	if hv := h.Get(HeaderWait); hv != "" {
		if v != "" && v != hv {
			return 0, fmt.Errorf("?wait=%s and %s: %s disagree: send one", v, HeaderWait, hv)
		}
		v = hv
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || time.Duration(n)*time.Second > MaxWait {
		return 0, fmt.Errorf("wait %q: want a number of seconds from 0 to %d", v, int(MaxWait/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

// startWait checks that a request may wait (for wait > 0): dh-receive
// knows the status listener, fewer than receive.max_waiting requests
// wait, and fewer than waitShare of them for who (a deployment's token
// requests, a hook user's pushes), so that one holder of a token cannot
// take every waiting slot from the others. It answers the request itself
// when not (501, 503), and returns the release of the waiting slot.
func (s *Server) startWait(w http.ResponseWriter, wait time.Duration, who string) (release func(), ok bool) {
	if wait <= 0 {
		return func() {}, true
	}
	if s.Status == nil {
		fail(w, http.StatusNotImplemented, "receive.status_url is not set: dh-receive cannot learn the result of a run; "+
			"point it at dh-route's status listener (docs/receive.md), or do not wait")
		return nil, false
	}
	busy := func(why string) (func(), bool) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		fail(w, http.StatusServiceUnavailable, why+": try again later, or do not wait")
		return nil, false
	}
	if n := s.waiting.Add(1); n > int64(max(s.Config.MaxWaiting, 1)) {
		s.waiting.Add(-1)
		return busy(fmt.Sprintf("%d requests are waiting already (receive.max_waiting)", s.Config.MaxWaiting))
	}
	share := waitShare(s.Config.MaxWaiting)
	s.waitMu.Lock()
	if s.waitingBy[who] >= share {
		s.waitMu.Unlock()
		s.waiting.Add(-1)
		return busy(fmt.Sprintf("%d requests of %s are waiting already (at most a quarter of receive.max_waiting each)", share, who))
	}
	if s.waitingBy == nil {
		s.waitingBy = map[string]int{}
	}
	s.waitingBy[who]++
	s.waitMu.Unlock()
	return func() {
		s.waitMu.Lock()
		if s.waitingBy[who]--; s.waitingBy[who] == 0 {
			delete(s.waitingBy, who)
		}
		s.waitMu.Unlock()
		s.waiting.Add(-1)
	}, true
}

// waitShare is how many of maxWaiting waiting slots one deployment's
// token requests, or one hook user's pushes, may hold: a quarter, at
// least one.
func waitShare(maxWaiting int) int { return max(1, maxWaiting/4) }

// waitContext is ctx bounded by wait, and ended when the server stops.
func (s *Server) waitContext(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	if s.stopping != nil {
		stop := context.AfterFunc(s.stopping, cancel)
		return ctx, func() { stop(); cancel() }
	}
	return ctx, cancel
}

// longRequest lifts the server's read and write timeouts, made for short
// requests, from a request that waits up to wait: an expired read
// deadline would end its context, an expired write deadline its answer.
func longRequest(w http.ResponseWriter, wait time.Duration) *http.ResponseController {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Now().Add(wait + time.Minute))
	return rc
}

// Location is where the story of delivery id is told: the delivery page
// of the status listener (receive.status_page_url, else status_url when
// it is http, else the path alone).
func (s *Server) Location(id string) string {
	base := s.Config.StatusPageURL
	if base == "" && strings.HasPrefix(s.Config.StatusURL, "http") {
		base = s.Config.StatusURL
	}
	return strings.TrimSuffix(base, "/") + "/status/deliveries/" + id
}

// WaitAnswer is the body of a token deploy that waited: the newest
// attempt of its run (id, state, exit_code, failed_step, result, …, as
// the delivery page has it) and the log's tail.
type WaitAnswer struct {
	Delivery string `json:"delivery"`
	Queued   bool   `json:"queued"`
	Location string `json:"location"`
	Outcome  string `json:"outcome"` // succeeded, failed, superseded, not-deployed, pending
	StoryRun
	LogTail string `json:"log_tail,omitempty"` // at most LogTailBytes, from a line's start
	Reason  string `json:"reason,omitempty"`   // why it was not deployed
	Error   string `json:"error,omitempty"`    // why the outcome is not known
}

// answerWhenDone waits up to wait for the token deploy id of deployment
// to end and answers its result: 200 succeeded, 202 still pending at the
// deadline (or not known), 422 anything else.
func (s *Server) answerWhenDone(w http.ResponseWriter, r *http.Request, id, deployment string, wait time.Duration) {
	longRequest(w, wait)
	ctx, cancel := s.waitContext(r.Context(), wait)
	story, err := s.Status.Wait(ctx, id, func(st *Story) bool { return st.Outcome != OutcomePending })
	cancel()
	if r.Context().Err() != nil {
		return // the client left
	}
	a := WaitAnswer{Delivery: id, Queued: true, Location: s.Location(id), Outcome: OutcomePending, StoryRun: StoryRun{Deployment: deployment}}
	if story != nil {
		a.Outcome = story.Outcome
		if story.Decision != nil && a.Outcome == OutcomeNotDeployed {
			a.Reason = story.Decision.Status + ": " + story.Decision.Reason
		}
		if run := story.newest(deployment); run != nil {
			a.StoryRun = *run
			if run.Log != "" {
				tctx, tcancel := context.WithTimeout(r.Context(), 10*time.Second)
				tail, terr := s.Status.LogTail(tctx, run.Log, LogTailBytes)
				tcancel()
				if terr != nil {
					s.Logger.Warn("log tail not read", "delivery", id, "run", run.ID, "err", terr)
				}
				a.LogTail = tail
			}
		}
	}
	if err != nil && a.Outcome == OutcomePending {
		a.Error = s.waitError(id, err)
	}
	code := http.StatusUnprocessableEntity
	switch a.Outcome {
	case OutcomeSucceeded:
		code = http.StatusOK
	case OutcomePending:
		code = http.StatusAccepted
	}
	s.Logger.Info("deploy request answered", "delivery", id, "deployment", deployment, "outcome", a.Outcome, "run", a.ID)
	writeJSON(w, code, a)
}

// streamRuns writes, for each delivery, the log of each run it causes as
// it is written, then the run's result line, until every run ended or
// wait passed; it ends with TrailerOutcome. The hook's pushing user sees
// only these: the runs of the pushes it just made.
func (s *Server) streamRuns(w http.ResponseWriter, r *http.Request, deliveries []string, wait time.Duration) {
	rc := longRequest(w, wait)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", TrailerOutcome)
	w.WriteHeader(http.StatusAccepted)
	out := follow.Flusher(w, rc.Flush)
	for _, d := range deliveries {
		fmt.Fprintf(out, "dh-deployer: queued as delivery %s\n", d)
	}
	ctx, cancel := s.waitContext(r.Context(), wait)
	defer cancel()
	outcome := OutcomeSucceeded
	for _, d := range deliveries {
		switch o := s.tellDelivery(ctx, out, d); {
		case o == OutcomeFailed, outcome == OutcomeFailed:
			outcome = OutcomeFailed
		case o == OutcomePending, outcome == OutcomePending:
			outcome = OutcomePending
		}
	}
	if outcome == OutcomePending {
		fmt.Fprintf(out, "dh-deployer: stopped waiting after %s; the runs go on (the status page has them)\n", wait)
	}
	w.Header().Set(TrailerOutcome, outcome)
}

// tellDelivery writes what becomes of one delivery and returns its
// outcome.
func (s *Server) tellDelivery(ctx context.Context, out io.Writer, id string) string {
	story, err := s.Status.Wait(ctx, id, func(st *Story) bool { return st.Decision != nil })
	if story == nil || story.Decision == nil {
		fmt.Fprintf(out, "dh-deployer: %s: not routed yet (%s)\n", id, s.waitError(id, err))
		return OutcomePending
	}
	if len(story.Decision.Deployments) == 0 {
		fmt.Fprintf(out, "dh-deployer: %s: not deployed: %s %s\n", id, story.Decision.Status, story.Decision.Reason)
		return OutcomeNotDeployed
	}
	for _, dep := range story.Decision.Deployments {
		followed := map[int64]bool{}
		for {
			// The newest attempt, once it has a log (a waiting run has
			// none yet), and not one already shown.
			story, err = s.Status.Wait(ctx, id, func(st *Story) bool {
				run := st.newest(dep)
				return run != nil && !followed[run.ID] && (run.Log != "" || run.Ended())
			})
			var run *StoryRun
			if story != nil {
				run = story.newest(dep)
			}
			if ctx.Err() != nil || run == nil || followed[run.ID] {
				fmt.Fprintf(out, "dh-deployer: %s: no end yet (%s)\n", dep, s.waitError(id, cmp.Or(err, ctx.Err())))
				return OutcomePending
			}
			followed[run.ID] = true
			fmt.Fprintf(out, "dh-deployer: %s: run %d of %s\n", dep, run.ID, run.Commit)
			if run.Log != "" {
				if err := s.Status.FollowLog(ctx, run.Log, out); err != nil && ctx.Err() == nil {
					fmt.Fprintf(out, "dh-deployer: %s: the log stopped: %s\n", dep, s.waitError(id, err))
				}
			}
			// Its end, as recorded.
			story, err = s.Status.Wait(ctx, id, func(st *Story) bool { r := st.newest(dep); return r != nil && (r.ID != run.ID || r.Ended()) })
			if story == nil || ctx.Err() != nil {
				fmt.Fprintf(out, "dh-deployer: %s: run %d has not ended yet\n", dep, run.ID)
				return OutcomePending
			}
			end := story.newest(dep)
			if end.ID != run.ID {
				continue // a newer attempt
			}
			line := fmt.Sprintf("dh-deployer: %s: run %d %s", dep, end.ID, end.State)
			if end.Result != "" && end.Result != "ok" {
				line += ": " + end.Result
			}
			if end.Duration != "" {
				line += " (" + end.Duration + ")"
			}
			fmt.Fprintln(out, line)
			if end.State != "interrupted" {
				break // an interrupted run runs again: its next attempt
			}
		}
	}
	story, err = s.Status.Wait(ctx, id, func(st *Story) bool { return st.Outcome != OutcomePending })
	if story == nil {
		return OutcomePending
	}
	return story.Outcome
}

// waitError is what a waiting client is told of err, which ended its
// wait: whether the delivery is routed yet, or that the wait ended, but
// never the status listener's address, socket path or answer, which are
// logged instead.
func (s *Server) waitError(id string, err error) string {
	switch {
	case errors.Is(err, errNotYet):
		return "dh-route has not recorded the delivery yet"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "the wait ended"
	}
	s.Logger.Warn("status listener not read", "delivery", id, "err", err)
	return "the status listener could not be read (dh-receive's log says why)"
}
