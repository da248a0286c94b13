package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// A delivery's story: GET /status/deliveries/ID (HTML), with ".json" or
// "Accept: application/json" its JSON. ID is any delivery id (a webhook's
// GUID, token-…, hook-…, manual-…), checked by ident.ParseDelivery. It
// reads the delivery's event row and its runs by their keys (two indexed
// statements), whatever the length of the history.

// Outcomes of a delivery, in Delivery.Outcome.
const (
	OutcomePending     = "pending"      // not yet routed, or a run waits, runs or was interrupted (it runs again)
	OutcomeSucceeded   = "succeeded"    // every deployment it reached ran it (or had its commit live already)
	OutcomeFailed      = "failed"       // a run failed or was refused, or the delivery could not be handled
	OutcomeSuperseded  = "superseded"   // a newer commit replaced a run before it ran
	OutcomeNotDeployed = "not-deployed" // routed nowhere: voided (see the decision's reason), a ping
)

// Sources of a delivery, in Received.Source, told by its event and id.
const (
	SourceWebhook = "webhook"  // a signed webhook (GitHub, Gitea, Forgejo, Gogs)
	SourceToken   = "token"    // POST /deploy/NAME with a deployment's token
	SourceGitHook = "git-hook" // dh-receive hook on this host
)

// Delivery is what became of one delivery: /status/deliveries/ID.json.
type Delivery struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Delivery    string        `json:"delivery"`
	Received    *Received     `json:"received"` // nil: not recorded (still in queues/main, or a run by hand)
	Decision    *Decision     `json:"decision"` // nil until dh-route decided
	Runs        []DeliveryRun `json:"runs"`     // by deployment, first attempt first
	Outcome     string        `json:"outcome"`  // pending, succeeded, failed, superseded, not-deployed

	Location *time.Location `json:"-"` // the HTML page's time zone (status.time_zone)
}

// Stamp is t in the page's time zone, as on the status page (Page.Stamp).
func (d *Delivery) Stamp(t any) string { return (&Page{Location: d.Location}).Stamp(t) }

// Received is how the delivery arrived.
type Received struct {
	At         time.Time `json:"received_at"`
	RecordedAt time.Time `json:"recorded_at"` // when dh-route recorded it
	Event      string    `json:"event"`
	Source     string    `json:"source"` // webhook, token, git-hook
	Repository string    `json:"repository,omitempty"`
	Ref        string    `json:"ref,omitempty"`
	Before     string    `json:"before,omitempty"`
	After      string    `json:"after,omitempty"`
	Deliveries int       `json:"deliveries"` // how many times it arrived (redeliveries)
}

// DeliveryRun is one run of the delivery: a Run with its deployment.
type DeliveryRun struct {
	Deployment string `json:"deployment"`
	Run
	FailedStep   *int   `json:"failed_step,omitempty"`
	SupersededBy int64  `json:"superseded_by,omitempty"`
	Follow       string `json:"follow,omitempty"` // the log, streamed while the run goes on
}

// final reports whether a run in state will not change any more: an
// interrupted run runs again (its entry stays queued).
func final(state string) bool {
	switch state {
	case store.RunQueued, store.RunRunning, store.RunInterrupted:
		return false
	}
	return true
}

// DeliveryStory reads what became of delivery id; an error wrapping
// store.ErrNotFound if nothing is recorded of it.
func (h *Handler) DeliveryStory(ctx context.Context, id string) (*Delivery, error) {
	if h.st == nil {
		return nil, errors.New("database: not connected")
	}
	cfg := h.config()
	now := h.opts.Now()
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	ev, err := h.st.GetEvent(ctx, id)
	var evp *store.EventRow
	switch {
	case err == nil:
		evp = &ev
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("database: %w", err)
	}
	runs, err := h.st.DeliveryRuns(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if evp == nil && len(runs) == 0 {
		return nil, fmt.Errorf("delivery %s: %w", id, store.ErrNotFound)
	}
	d := &Delivery{GeneratedAt: now.UTC(), Delivery: id, Runs: []DeliveryRun{}, Outcome: outcome(evp, runs), Location: location(cfg)}
	if evp != nil {
		d.Received = &Received{At: ev.ReceivedAt.UTC(), RecordedAt: ev.RecordedAt.UTC(), Event: ev.Event.Event,
			Source: source(ev), Repository: ev.Repository, Ref: ev.Ref, Before: ev.Before, After: ev.After, Deliveries: ev.Deliveries}
		if ev.Status != store.StatusReceived {
			dec := decision(ev)
			d.Decision = &dec
		}
	}
	for _, r := range runs {
		dep, ok := cfg.Deployment(r.Deployment)
		if !ok {
			dep = &config.Deployment{Name: r.Deployment} // no longer configured: no commit link
		}
		dr := DeliveryRun{Deployment: r.Deployment, Run: run(cfg, dep, r, now), FailedStep: r.FailedStep, SupersededBy: r.SupersededBy}
		if dr.Log != "" && !r.Ended() {
			dr.Follow = dr.Log + "?follow=1"
		}
		d.Runs = append(d.Runs, dr)
	}
	return d, nil
}

// source tells how a recorded delivery arrived.
func source(ev store.EventRow) string {
	switch {
	case ev.Event.Event == route.EventDeployRequest:
		return SourceToken
	case strings.HasPrefix(ev.Delivery, "hook-"):
		return SourceGitHook
	}
	return SourceWebhook
}

// outcome sums up a delivery: each deployment it reached by its newest
// attempt.
func outcome(ev *store.EventRow, runs []store.Run) string {
	var deployments []string
	switch {
	case ev == nil: // runs by hand: their own deployments
		for _, r := range runs {
			if !slices.Contains(deployments, r.Deployment) {
				deployments = append(deployments, r.Deployment)
			}
		}
	case ev.Status == store.StatusReceived:
		return OutcomePending
	case ev.Status == store.StatusFailed:
		return OutcomeFailed
	case ev.Status != store.StatusRouted:
		return OutcomeNotDeployed
	default:
		deployments = ev.Deployments
	}
	pending, failed, superseded := false, false, false
	for _, dep := range deployments {
		var newest *store.Run
		for i, r := range runs {
			if r.Deployment == dep && (newest == nil || r.Attempt > newest.Attempt || r.Attempt == newest.Attempt && r.ID > newest.ID) {
				newest = &runs[i]
			}
		}
		switch {
		case newest == nil || !final(newest.State):
			pending = true
		case newest.State == store.RunFailed || newest.State == store.RunRefused:
			failed = true
		case newest.State == store.RunSuperseded:
			superseded = true
		}
	}
	switch {
	case pending:
		return OutcomePending
	case failed:
		return OutcomeFailed
	case superseded:
		return OutcomeSuperseded
	}
	return OutcomeSucceeded
}

// DeliveryURL is the path of a delivery's page on the status listener.
func DeliveryURL(id string) string { return "/status/deliveries/" + id }

// delivery serves a delivery's page, or its JSON.
func (h *Handler) delivery(w http.ResponseWriter, r *http.Request) {
	id, asJSON := strings.CutSuffix(r.PathValue("id"), ".json")
	asJSON = asJSON || wantsJSON(r)
	if _, err := ident.ParseDelivery(id); err != nil {
		http.Error(w, fmt.Sprintf("%v: a delivery id is the X-GitHub-Delivery GUID, or the id dh-receive answered (token-…, hook-…)", err),
			http.StatusBadRequest)
		return
	}
	d, err := h.DeliveryStory(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, fmt.Sprintf("no delivery %q is recorded: dh-route records a delivery when it routes it (is dh-route running?); "+
			"older ones are pruned after [retention] events", id), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			h.opts.Logger.Error("encode delivery", "err", err)
		}
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.ExecuteTemplate(w, "delivery.html", d); err != nil {
		h.opts.Logger.Error("render delivery page", "err", err)
	}
}

// wantsJSON reports whether the request's Accept header prefers JSON to
// HTML: its first media type is application/json.
func wantsJSON(r *http.Request) bool {
	first, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	mt, _, _ := mime.ParseMediaType(strings.TrimSpace(first))
	return mt == "application/json"
}
