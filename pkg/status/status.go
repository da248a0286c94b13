// Package status is dh-route's read-only status page: an http.Handler
// that shows every deployment with its state, its current commit and its
// last runs (each with its commit's subject, author and link, who
// triggered it, how long it waited and ran, and a link to its log), the
// depths of the queues, the failed entries and the last routing
// decisions. Times are shown in status.time_zone.
//
//	GET /status                    HTML, without JavaScript or external assets
//	GET /status.json               the same data, for scripts (times in UTC)
//	GET /status?page=N             page N of the deployments (above 2×PageSize of them)
//	GET /status?deployment=NAME    one deployment with its last runs (also .json)
//	GET /status?refresh=SECONDS    reloading itself (a meta refresh; status.refresh by default)
//	GET /status/logs/NAME/RUN      the log of run RUN of deployment NAME, text/plain
//	GET /status/logs/NAME/RUN?follow=1  the same, streamed as it grows until the run ends, defused for a
//	                               terminal (logfollow.go)
//	GET /status/deliveries/ID      what became of one delivery: received, decision, runs (delivery.go);
//	                               ID.json or "Accept: application/json" for its JSON
//	GET /metrics                   Prometheus metrics, computed on scrape (metrics.go)
//	GET /healthz                   200, or 503 when a queue is stalled (its worker stopped)
//
// The cost of a request does not grow with the history: the last runs of
// every deployment shown come in one statement, the decisions in another,
// both from indexes. Up to 2×PageSize deployments one page shows them all
// with their last Runs runs; above, the page is paginated, PageSize
// deployments a page, each with its newest run only (its own page,
// ?deployment=NAME, has the rest), so that a page's size and time stay the
// same however many deployments there are.
//
// Guarantees:
//
//   - Nothing is ever written: only GET and HEAD are served (405 otherwise);
//     it reads the configuration, the events and runs tables, the queue
//     directories, the pause files and the run logs. /metrics and /healthz
//     also read the certs table and the certificate files, and probe a
//     queue's .lock with a shared flock(2) released at once (metrics.go).
//   - Every value shown (names, errors, notes, reasons) is escaped by
//     html/template; responses carry a Content-Security-Policy that allows
//     no script, and X-Content-Type-Options: nosniff. A commit's subject
//     and author and who triggered a run, which a pusher chooses, are
//     also cut to one line without control characters. A commit link is
//     built by config.CommitURL from the configured repository and a
//     full SHA only.
//   - A log is served only if it is a regular file directly in
//     config.RunLogDir(state_dir, NAME), opened through an os.Root, for a run of
//     a configured deployment whose log_path names it; anything else is 403
//     or 404.
//   - With a token (status.token_file), every request must carry
//     "Authorization: Bearer TOKEN" (compared in constant time; 401 without
//     it, 403 with another). A token in the query string is refused (400),
//     with or without a configured token, so it never lands in access logs
//     or browser history.
//   - The page degrades rather than fails: a queue that cannot be read shows
//     "-", and when the database is down the queues, pauses and windows are
//     still shown with the error listed.
package status

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/pause"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// Defaults of Options.
const (
	DefaultRuns      = 10
	DefaultDecisions = 20
	DefaultPageSize  = 50
	DefaultTimeout   = 10 * time.Second

	DefaultMaxFollowers = 64
)

// compactRuns is how many runs a paginated page reads per deployment, to
// choose its state (running, failing); it shows the newest.
const compactRuns = 3

// Deployment states, most urgent first.
const (
	StateRunning  = "running"  // a run is in progress
	StateDisabled = "disabled" // enabled = false
	StatePaused   = "paused"   // dh-deploy pause (its own or the global one)
	StateWaiting  = "waiting"  // outside its deploy windows, or an entry waits
	StateFailing  = "failing"  // its last finished run failed or was interrupted
	StateIdle     = "idle"
)

// Options configure a Handler.
type Options struct {
	// Token, if not empty, must be sent as "Authorization: Bearer TOKEN".
	Token []byte
	// Runs is how many runs are shown per deployment (DefaultRuns if 0).
	Runs int
	// Decisions is how many routing decisions are shown (DefaultDecisions if 0).
	Decisions int
	// PageSize is how many deployments a page shows when there are more
	// than twice as many (DefaultPageSize if 0).
	PageSize int
	// Timeout bounds the database queries of one request (DefaultTimeout if 0).
	Timeout time.Duration
	// Now is the clock, for the deploy windows (time.Now if nil).
	Now func() time.Time
	// Logger gets one line per refused request (discarded if nil).
	Logger *slog.Logger
	// MaxFollowers bounds the logs followed at once (?follow=1);
	// DefaultMaxFollowers if 0. One more gets 503.
	MaxFollowers int
}

// Handler serves the status page.
type Handler struct {
	config    func() *config.Config
	st        *store.Store
	opts      Options
	mux       *http.ServeMux
	followers chan struct{} // a slot per log followed (logfollow.go)
}

//go:embed page.html delivery.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"short": cell.ShortSHA,
	"dash":  cell.Dash,
	"line":  func(s string) string { return cell.Line(s, maxLine) }, // text from a pusher: one printable line
	"join":  func(s []string) string { return strings.Join(s, ", ") },
	"pages": func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	},
}).ParseFS(pageFS, "page.html", "delivery.html"))

// New returns the handler. cfg is called once per request, so a
// configuration reloaded on SIGHUP shows at once; st may be nil (no
// database: runs and decisions are then missing, with an error).
func New(cfg func() *config.Config, st *store.Store, opts Options) *Handler {
	if opts.Runs <= 0 {
		opts.Runs = DefaultRuns
	}
	if opts.Decisions <= 0 {
		opts.Decisions = DefaultDecisions
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxFollowers <= 0 {
		opts.MaxFollowers = DefaultMaxFollowers
	}
	h := &Handler{config: cfg, st: st, opts: opts, mux: http.NewServeMux(), followers: make(chan struct{}, opts.MaxFollowers)}
	h.mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	h.mux.HandleFunc("/status", h.html)
	h.mux.HandleFunc("/status.json", h.json)
	h.mux.HandleFunc("/status/logs/{name}/{run}", h.log)
	h.mux.HandleFunc("/status/deliveries/{id}", h.delivery)
	h.mux.Handle("/metrics", h.metricsHandler())
	h.mux.HandleFunc("/healthz", h.healthz)
	return h
}

// ServeHTTP checks the method and the token, then serves the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		h.refuse(w, r, http.StatusMethodNotAllowed, "the status page is read-only: GET and HEAD only")
		return
	}
	if r.URL.Query().Has("token") {
		h.refuse(w, r, http.StatusBadRequest, "no token in the query string: send it as Authorization: Bearer TOKEN")
		return
	}
	if len(h.opts.Token) > 0 {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			hd.Set("WWW-Authenticate", `Bearer realm="dh-deployer status"`)
			h.refuse(w, r, http.StatusUnauthorized, "missing Authorization: Bearer TOKEN header")
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), h.opts.Token) != 1 {
			h.refuse(w, r, http.StatusForbidden, "wrong token")
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.opts.Logger.Warn("status request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "code", code, "why", msg)
	http.Error(w, msg, code)
}

// Page is everything the status page shows; /status.json is its JSON.
type Page struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Total       int             `json:"deployments_total"`    // configured deployments
	Page        int             `json:"page"`                 // this page, from 1; 0 on one deployment's page
	Pages       int             `json:"pages"`                // how many pages the deployments take
	Compact     bool            `json:"compact"`              // each deployment with its newest run only
	Only        string          `json:"deployment,omitempty"` // the deployment of a ?deployment=NAME page
	Paused      *pause.Pause    `json:"paused,omitempty"`     // the global pause
	Deployments []Deployment    `json:"deployments"`
	Queues      []Queue         `json:"queues"`
	Failed      []queue.Failure `json:"failed"`
	Decisions   []Decision      `json:"decisions"`
	Errors      []string        `json:"errors,omitempty"` // what could not be read

	// For the HTML page only: its time zone (status.time_zone), its
	// refresh period in seconds (0: none) and whether ?refresh asked for it.
	Location     *time.Location `json:"-"`
	Refresh      int            `json:"-"`
	RefreshAsked bool           `json:"-"`
}

// Deployment is one deployment's state.
type Deployment struct {
	Name       string       `json:"name"`
	Kind       string       `json:"kind"`
	Repository string       `json:"repository"`
	Branches   []string     `json:"branches,omitempty"`
	Tags       []string     `json:"tags,omitempty"`
	Enabled    bool         `json:"enabled"`
	State      string       `json:"state"`            // running, disabled, paused, waiting, failing or idle
	Detail     string       `json:"detail,omitempty"` // why: the pause, the window, the error
	Pause      *pause.Pause `json:"pause,omitempty"`
	Windows    []string     `json:"windows,omitempty"`
	InWindow   bool         `json:"in_window"`
	NextWindow *time.Time   `json:"next_window,omitempty"` // when outside the windows
	Commit     string       `json:"commit,omitempty"`      // of the last succeeded run
	Subject    string       `json:"commit_subject,omitempty"`
	CommitURL  string       `json:"commit_url,omitempty"`  // its web page (Config.CommitURL), if it has one
	DeployedAt *time.Time   `json:"deployed_at,omitempty"` // when that run finished
	Runs       []Run        `json:"runs"`                  // newest first
}

// Run is one row of a deployment's history.
type Run struct {
	ID         int64      `json:"id"`
	Delivery   string     `json:"delivery"`
	Attempt    int        `json:"attempt"`
	Trigger    string     `json:"trigger"`
	By         string     `json:"triggered_by,omitempty"` // who: pusher=, sender=, token=, user=
	State      string     `json:"state"`
	Ref        string     `json:"ref,omitempty"`
	Commit     string     `json:"commit,omitempty"`
	Subject    string     `json:"commit_subject,omitempty"` // the commit's subject line, as dh-deploy read it
	Author     string     `json:"commit_author,omitempty"`  // "Name <email>"
	CommitURL  string     `json:"commit_url,omitempty"`     // the commit's web page (Config.CommitURL), if it has one
	QueuedAt   time.Time  `json:"queued_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	WaitSecs   *float64   `json:"wait_seconds,omitempty"`     // started - queued, or now - queued while queued
	Wait       string     `json:"wait,omitempty"`             // the same, for people
	Seconds    *float64   `json:"duration_seconds,omitempty"` // finished - started, or now - started while running
	Duration   string     `json:"duration,omitempty"`         // the same, for people
	Result     string     `json:"result"`                     // "ok", "exit 2 at step 1: ...", the error, the note
	ExitCode   *int       `json:"exit_code,omitempty"`
	Log        string     `json:"log,omitempty"` // URL path of the log, if the run has one
}

// Queue is one queue's depth. Depth and Failed are nil when the queue
// cannot be read (Error says why).
type Queue struct {
	Name   string     `json:"name"`
	Depth  *int       `json:"depth"`
	Oldest *time.Time `json:"oldest,omitempty"`
	Failed *int       `json:"failed"`
	Error  string     `json:"error,omitempty"`
}

// Decision is one routing decision of dh-route.
type Decision struct {
	DecidedAt   *time.Time `json:"decided_at,omitempty"` // nil while undecided
	Delivery    string     `json:"delivery"`
	Event       string     `json:"event"`
	Repository  string     `json:"repository,omitempty"`
	Ref         string     `json:"ref,omitempty"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason,omitempty"`
	Deployments []string   `json:"deployments,omitempty"`
}

// View is what a request asks for: a page of the deployments, or one
// deployment.
type View struct {
	Page       int    // from 1; 0 means 1
	Deployment string // one deployment's page; "" for the summary
	Refresh    *int   // seconds between reloads, 0 for none; nil: status.refresh
}

// ViewError is a View that does not exist: no such page or deployment.
type ViewError struct {
	Code int // the HTTP status
	Msg  string
}

func (e *ViewError) Error() string { return e.Msg }

// view reads the View of a request: ?page=N, ?deployment=NAME,
// ?refresh=SECONDS.
func view(r *http.Request) (View, error) {
	q := r.URL.Query()
	v := View{Deployment: q.Get("deployment")}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return v, &ViewError{http.StatusBadRequest, fmt.Sprintf("page %q: a page is a number from 1", p)}
		}
		v.Page = n
	}
	if r := q.Get("refresh"); q.Has("refresh") {
		n, err := strconv.Atoi(r)
		if err == nil {
			err = config.CheckRefresh(time.Duration(n) * time.Second)
		}
		if err != nil {
			return v, &ViewError{http.StatusBadRequest, fmt.Sprintf("refresh %q: want 0 (no refresh) or seconds from %d to %d",
				r, int(config.MinRefresh.Seconds()), int(config.MaxRefresh.Seconds()))}
		}
		v.Refresh = &n
	}
	if v.Deployment != "" && v.Page != 0 {
		return v, &ViewError{http.StatusBadRequest, "ask for a page or for a deployment, not both"}
	}
	return v, nil
}

// Collect reads the state of the installation as v asks: the deployments
// of one page (or one deployment), their queues and failed entries, and
// the last routing decisions. It fails only with a *ViewError.
//
// Each section of the page has its collector (deployments, queues, failed
// entries, decisions), run in that order on one collection; a section
// reads the database with at most one statement, and all of them share one
// deadline (Options.Timeout). After a database error the later sections
// skip the database: the page shows the error once, and what the files
// tell.
func (h *Handler) Collect(ctx context.Context, v View) (*Page, error) {
	c, err := h.scope(v)
	if err != nil {
		return nil, err
	}
	if h.st == nil {
		c.dbErr(errors.New("not connected"))
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	for _, section := range []func(*collection, context.Context){
		(*collection).deployments,
		(*collection).queues,
		(*collection).failed,
		(*collection).decisions,
	} {
		section(c, ctx)
	}
	return c.p, nil
}

// collection is one Collect in progress: what it shows and what it has
// gathered so far.
type collection struct {
	h     *Handler
	cfg   *config.Config
	now   time.Time
	p     *Page
	names []string // the deployments shown, in name order
	runs  int      // how many runs to read per deployment
	down  bool     // a database error was met: skip the database
}

// scope starts the collection of view v: which deployments it shows
// (all, one page of them, or one) and how many runs of each.
func (h *Handler) scope(v View) (*collection, error) {
	cfg := h.config()
	now := h.opts.Now()
	p := &Page{GeneratedAt: now.UTC(), Deployments: []Deployment{}, Queues: []Queue{}, Failed: []queue.Failure{}, Decisions: []Decision{}}
	names := cfg.DeploymentNames()
	p.Total = len(names)
	paginate := len(names) > 2*h.opts.PageSize
	p.Pages = 1
	if paginate {
		p.Pages = (len(names) + h.opts.PageSize - 1) / h.opts.PageSize
	}
	runs := h.opts.Runs
	switch {
	case v.Deployment != "":
		if _, ok := cfg.Deployment(v.Deployment); !ok {
			return nil, &ViewError{http.StatusNotFound, fmt.Sprintf("no deployment %q", v.Deployment)}
		}
		names, p.Only = []string{v.Deployment}, v.Deployment
	default:
		p.Page = max(v.Page, 1)
		if p.Page > p.Pages {
			return nil, &ViewError{http.StatusNotFound, fmt.Sprintf("no page %d: the deployments take %d", p.Page, p.Pages)}
		}
		if paginate {
			p.Compact, runs = true, compactRuns
			names = names[(p.Page-1)*h.opts.PageSize : min(p.Page*h.opts.PageSize, len(names))]
		}
	}
	p.Paused = pause.Get(cfg, "")
	p.Location = location(cfg)
	p.Refresh = int(cfg.Status.Refresh / time.Second)
	if v.Refresh != nil {
		p.Refresh, p.RefreshAsked = *v.Refresh, true
	}
	return &collection{h: h, cfg: cfg, now: now, p: p, names: names, runs: runs}, nil
}

// dbErr lists a database error on the page (once, if the same error comes
// again) and makes the later sections skip the database.
func (c *collection) dbErr(err error) {
	c.down = true
	if msg := "database: " + err.Error(); len(c.p.Errors) == 0 || c.p.Errors[len(c.p.Errors)-1] != msg {
		c.p.Errors = append(c.p.Errors, msg)
	}
}

// deployments is the deployments section: each deployment's
// configuration, pause, windows, state and last runs (one statement).
func (c *collection) deployments(ctx context.Context) {
	var recent map[string]store.Recent
	if !c.down {
		var err error
		if recent, err = c.h.st.LastRuns(ctx, c.names, c.runs); err != nil {
			c.dbErr(err)
		}
	}
	for _, name := range c.names {
		d := c.cfg.Deployments[name]
		dep := Deployment{Name: name, Kind: d.Kind, Repository: d.Repository, Branches: d.Branches, Tags: d.Tags,
			Enabled: d.IsEnabled(), Windows: d.Windows, Runs: []Run{}}
		dep.Pause = pause.Get(c.cfg, name)
		in, next := d.InWindow(c.now)
		dep.InWindow = in
		if !in {
			dep.NextWindow = utc(next)
		}
		rec := recent[name]
		if last := rec.Live; last != nil {
			dep.Commit, dep.Subject, dep.CommitURL = last.Commit, last.CommitSubject, c.cfg.CommitURL(d, last.Commit)
			dep.DeployedAt = utc(last.FinishedAt)
		}
		shown := rec.Runs
		if c.p.Compact {
			shown = shown[:min(len(shown), 1)]
		}
		for _, r := range shown {
			dep.Runs = append(dep.Runs, run(c.cfg, d, r, c.now))
		}
		dep.State, dep.Detail = state(d, dep, rec.Runs)
		c.p.Deployments = append(c.p.Deployments, dep)
	}
}

// queueNames are the queues shown: main (unless the page is one
// deployment's) and those of the deployments shown.
func (c *collection) queueNames() []string {
	if c.p.Only != "" {
		return c.names
	}
	return append([]string{config.MainQueue}, c.names...)
}

// queues is the queues section: each queue's depth, oldest entry and
// failed entries, or why it cannot be read.
func (c *collection) queues(context.Context) {
	for _, name := range c.queueNames() {
		s, err := queue.Open(c.cfg.QueuePath(name)).Stats()
		if err != nil {
			c.p.Queues = append(c.p.Queues, Queue{Name: name, Error: err.Error()})
			continue
		}
		c.p.Queues = append(c.p.Queues, Queue{Name: name, Depth: &s.Depth, Failed: &s.Failed, Oldest: utc(s.Oldest)})
	}
}

// failed is the failed entries section: every entry in the failed/
// directory of a queue shown, with the reason its sidecar gives.
func (c *collection) failed(context.Context) {
	for _, name := range c.queueNames() {
		q := queue.Open(c.cfg.QueuePath(name))
		failed, _ := q.Failed() // an unreadable queue is listed by the queues section
		for _, f := range failed {
			why, err := q.ReadFailure(f)
			if err != nil {
				why = queue.Failure{Entry: f, Error: fmt.Sprintf("no readable sidecar: %v", err)}
			}
			why.Entry, why.Queue = f, name
			c.p.Failed = append(c.p.Failed, why)
		}
	}
}

// decisions is the routing decisions section: the last ones of dh-route
// (one statement).
func (c *collection) decisions(ctx context.Context) {
	if c.down {
		return
	}
	rows, err := c.h.st.RecentEvents(ctx, c.h.opts.Decisions)
	if err != nil {
		c.dbErr(err)
		return
	}
	for _, r := range rows {
		c.p.Decisions = append(c.p.Decisions, decision(r))
	}
}

// decision is the routing decision recorded in an event's row.
func decision(r store.EventRow) Decision {
	return Decision{DecidedAt: utc(r.DecidedAt), Delivery: r.Delivery, Event: r.Event.Event,
		Repository: r.Repository, Ref: r.Ref, Status: r.Status, Reason: r.Reason, Deployments: r.Deployments}
}

// location is the pages' time zone: status.time_zone (checked at load),
// else UTC.
func location(cfg *config.Config) *time.Location {
	if loc, err := cfg.Status.Location(); err == nil {
		return loc
	}
	return time.UTC
}

// state chooses a deployment's state, most urgent first: running,
// disabled, paused, waiting (outside the windows, or a run waits),
// failing (the last finished run failed), idle.
func state(d *config.Deployment, dep Deployment, runs []store.Run) (string, string) {
	for _, r := range runs {
		if r.State == store.RunRunning {
			return StateRunning, fmt.Sprintf("run %d of %s", r.ID, cell.ShortSHA(r.Commit))
		}
	}
	switch {
	case !d.IsEnabled():
		return StateDisabled, "enabled = false"
	case dep.Pause != nil:
		return StatePaused, dep.Pause.String()
	case !dep.InWindow:
		detail := fmt.Sprintf("outside the deploy windows %s", strings.Join(d.Windows, ", "))
		if dep.NextWindow != nil {
			detail += "; the next opens " + cell.Stamp(*dep.NextWindow)
		}
		return StateWaiting, detail
	}
	for _, r := range runs {
		if r.State == store.RunQueued && r.Note != "" {
			return StateWaiting, r.Note
		}
	}
	for _, r := range runs {
		switch r.State {
		case store.RunQueued, store.RunSuperseded:
			continue
		case store.RunFailed, store.RunInterrupted:
			detail := fmt.Sprintf("run %d %s", r.ID, r.State)
			if r.Error != "" {
				detail += ": " + r.Error
			}
			return StateFailing, detail
		}
		break
	}
	return StateIdle, ""
}

// run is one run as the page shows it, its durations measured at now
// while it waits or runs.
func run(cfg *config.Config, d *config.Deployment, r store.Run, now time.Time) Run {
	out := Run{ID: r.ID, Delivery: r.Delivery, Attempt: max(r.Attempt, 1), Trigger: r.Trigger, By: r.TriggeredBy, State: r.State,
		Ref: r.Ref, Commit: r.Commit, Subject: r.CommitSubject, Author: r.CommitAuthor, CommitURL: cfg.CommitURL(d, r.Commit),
		QueuedAt: r.QueuedAt.UTC(), StartedAt: utc(r.StartedAt), FinishedAt: utc(r.FinishedAt), ExitCode: r.ExitCode}
	switch {
	case !r.StartedAt.IsZero() && !r.QueuedAt.IsZero():
		out.WaitSecs, out.Wait = span(r.QueuedAt, r.StartedAt)
	case r.State == store.RunQueued && !r.QueuedAt.IsZero():
		out.WaitSecs, out.Wait = span(r.QueuedAt, now)
	}
	switch {
	case r.StartedAt.IsZero():
	case !r.FinishedAt.IsZero():
		out.Seconds, out.Duration = span(r.StartedAt, r.FinishedAt)
	case r.State == store.RunRunning:
		out.Seconds, out.Duration = span(r.StartedAt, now)
	}
	out.Result = result(r)
	if r.LogPath != "" && filepath.Dir(r.LogPath) == config.RunLogDir(cfg.StateDir, r.Deployment) {
		out.Log = LogURL(r.Deployment, r.ID)
	}
	return out
}

// span is the time from start to end (0 if end is before start) in
// seconds and for people.
func span(start, end time.Time) (*float64, string) {
	d := max(end.Sub(start), 0)
	secs := d.Seconds()
	return &secs, duration(d)
}

// utc is t in UTC, or nil for the zero time.
func utc(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// LogURL is the path of a run's log on the status page.
func LogURL(deployment string, run int64) string {
	return "/status/logs/" + url.PathEscape(deployment) + "/" + strconv.FormatInt(run, 10)
}

func result(r store.Run) string {
	var parts []string
	switch r.State {
	case store.RunSucceeded:
		parts = append(parts, "ok")
	case store.RunUnchanged:
		parts = append(parts, "already live")
	case store.RunFailed:
		switch {
		case r.ExitCode != nil && r.FailedStep != nil:
			parts = append(parts, fmt.Sprintf("exit %d at step %d", *r.ExitCode, *r.FailedStep))
		case r.ExitCode != nil:
			parts = append(parts, fmt.Sprintf("exit %d", *r.ExitCode))
		case r.FailedStep != nil:
			parts = append(parts, fmt.Sprintf("step %d", *r.FailedStep))
		}
	case store.RunSuperseded:
		if r.SupersededBy != 0 {
			parts = append(parts, fmt.Sprintf("by run %d", r.SupersededBy))
		}
	}
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	if r.Note != "" {
		parts = append(parts, r.Note)
	}
	return strings.Join(parts, ": ")
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// collect is Collect for a request; it answers a bad view itself.
func (h *Handler) collect(w http.ResponseWriter, r *http.Request) (*Page, bool) {
	v, err := view(r)
	var p *Page
	if err == nil {
		p, err = h.Collect(r.Context(), v)
	}
	if ve, ok := errors.AsType[*ViewError](err); ok {
		http.Error(w, ve.Msg, ve.Code)
		return nil, false
	}
	return p, true
}

func (h *Handler) html(w http.ResponseWriter, r *http.Request) {
	p, ok := h.collect(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, p); err != nil {
		h.opts.Logger.Error("render status page", "err", err)
	}
}

func (h *Handler) json(w http.ResponseWriter, r *http.Request) {
	p, ok := h.collect(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		h.opts.Logger.Error("encode status", "err", err)
	}
}

// log serves the log of one run, refusing any file that is not directly
// in the deployment's log directory.
func (h *Handler) log(w http.ResponseWriter, r *http.Request) {
	cfg := h.config()
	name := r.PathValue("name")
	dep, ok := cfg.Deployment(name)
	if !ok {
		http.Error(w, "no such deployment", http.StatusNotFound)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("run"), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, "a run is a positive number", http.StatusNotFound)
		return
	}
	if h.st == nil {
		http.Error(w, "database: not connected", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	run, err := h.st.GetRun(ctx, name, id)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "no such run", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
		return
	case run.LogPath == "":
		http.Error(w, "the run has no log", http.StatusNotFound)
		return
	}
	f, err := config.OpenRunLog(cfg.StateDir, name, run.LogPath)
	if errors.Is(err, config.ErrNotRunLog) {
		h.refuse(w, r, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		logError(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		logError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", "inline")
	if r.URL.Query().Has("follow") && !run.Ended() {
		h.followLog(w, r, run, dep.Timeout, f)
		return
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func logError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "the run's log is gone (only the newest logs are kept)", http.StatusNotFound)
	case errors.Is(err, fs.ErrPermission):
		http.Error(w, "no permission to read the run's log", http.StatusForbidden)
	default:
		http.Error(w, "the run's log cannot be read", http.StatusForbidden)
	}
}

// maxLine is how many runes of a commit's subject or author, or of who
// triggered a run, the page shows.
const maxLine = 200

// StampFormat is how the page shows a time, in its time zone.
const StampFormat = "2006-01-02 15:04:05 MST"

// Stamp is t (a time.Time or *time.Time) in the page's time zone, or "-"
// for nil or the zero time.
func (p *Page) Stamp(t any) string {
	var tt time.Time
	switch t := t.(type) {
	case time.Time:
		tt = t
	case *time.Time:
		if t != nil {
			tt = *t
		}
	}
	if tt.IsZero() {
		return "-"
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	return tt.In(loc).Format(StampFormat)
}

// Href is the link to another view of the page (?key=value), keeping
// the ?refresh the request asked for.
func (p *Page) Href(key string, value any) string {
	q := url.Values{key: {fmt.Sprint(value)}}
	if p.RefreshAsked {
		q.Set("refresh", strconv.Itoa(p.Refresh))
	}
	return "/status?" + q.Encode()
}
