package status

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// What the metrics read, so that a scrape costs the same however long the
// history grows.
const (
	// MetricRuns is how many of each deployment's newest runs
	// dh_route_runs and dh_route_run_duration_seconds count.
	MetricRuns = 100
	// DeliveryWindow is how far back dh_route_deliveries counts, and
	// MetricDeliveries how many of the newest deliveries at most.
	DeliveryWindow   = 24 * time.Hour
	MetricDeliveries = 10_000
)

// RunDurationBuckets are the upper bounds of dh_route_run_duration_seconds.
var RunDurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}

var (
	descDeliveries = prometheus.NewDesc("dh_route_deliveries",
		"Deliveries among the newest 10000 received in the last 24 hours, by event and routing decision (received, routed, voided, duplicate, ping, failed).",
		[]string{"event", "decision"}, nil)
	descQueueDepth = prometheus.NewDesc("dh_route_queue_depth",
		"Entries waiting in the queue.", []string{"queue"}, nil)
	descQueueOldest = prometheus.NewDesc("dh_route_queue_oldest_age_seconds",
		"Age of the queue's oldest waiting entry; 0 when it is empty.", []string{"queue"}, nil)
	descQueueFailed = prometheus.NewDesc("dh_route_queue_failed",
		"Entries in the queue's failed/ directory.", []string{"queue"}, nil)
	descQueueStalled = prometheus.NewDesc("dh_route_queue_stalled",
		"1 when the queue's oldest entry is older than status.stall_after and no worker holds the queue's lock.",
		[]string{"queue"}, nil)
	descRuns = prometheus.NewDesc("dh_route_runs",
		"Runs by state among the newest 100 runs of each deployment.", []string{"deployment", "state"}, nil)
	descRunDuration = prometheus.NewDesc("dh_route_run_duration_seconds",
		"Duration (started to finished) of the finished runs among the newest 100 of each deployment.",
		[]string{"deployment"}, nil)
	descLastSuccess = prometheus.NewDesc("dh_route_last_success_age_seconds",
		"Seconds since the deployment's last succeeded run finished; absent if it never succeeded.",
		[]string{"deployment"}, nil)
	descCertExpiry = prometheus.NewDesc("dh_route_cert_expiry_timestamp_seconds",
		"When the certificate expires (Unix time, its NotAfter as dh-cert read it), for each certificate dh-cert records; absent until dh-cert has read it.",
		[]string{"cert"}, nil)
	descDatabaseUp = prometheus.NewDesc("dh_route_database_up",
		"1 when the database answers, 0 when it does not.", nil, nil)
	descScrapeErrors = prometheus.NewDesc("dh_route_scrape_errors",
		"What this scrape could not read, by source (queue, database, cert); details in dh-route's log.",
		[]string{"source"}, nil)
)

// metrics is the Prometheus collector of a Handler: it reads everything
// on each scrape from the queue directories, the database and the
// certificate files, and keeps no counter of its own.
type metrics struct{ h *Handler }

// Describe sends the descriptions of every metric.
func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDeliveries, descQueueDepth, descQueueOldest, descQueueFailed,
		descQueueStalled, descRuns, descRunDuration, descLastSuccess, descCertExpiry, descDatabaseUp, descScrapeErrors} {
		ch <- d
	}
}

// Collect reads the metrics.
func (m metrics) Collect(ch chan<- prometheus.Metric) {
	h := m.h
	cfg := h.config()
	now := h.opts.Now()
	errs := map[string]int{"queue": 0, "database": 0, "cert": 0}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	for _, q := range h.queues(cfg, now) {
		if q.err != nil {
			errs["queue"]++
			h.opts.Logger.Warn("metrics: read queue", "queue", q.name, "err", q.err)
			continue
		}
		gauge(descQueueDepth, float64(q.stats.Depth), q.name)
		gauge(descQueueFailed, float64(q.stats.Failed), q.name)
		age := 0.0
		if !q.stats.Oldest.IsZero() {
			age = max(now.Sub(q.stats.Oldest).Seconds(), 0)
		}
		gauge(descQueueOldest, age, q.name)
		gauge(descQueueStalled, bool01(q.stalled), q.name)
	}

	up := 0.0
	if h.st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout)
		defer cancel()
		if err := m.database(ctx, ch, cfg, now); err != nil {
			errs["database"]++
			h.opts.Logger.Warn("metrics: read the database", "err", err)
		} else {
			up = 1
		}
		errs["cert"] += m.certs(ctx, ch)
	}
	gauge(descDatabaseUp, up)
	for source, n := range errs {
		gauge(descScrapeErrors, float64(n), source)
	}
}

// database sends the metrics read from the database: deliveries, runs,
// durations and the last success of each deployment.
func (m metrics) database(ctx context.Context, ch chan<- prometheus.Metric, cfg *config.Config, now time.Time) error {
	st := m.h.st
	if err := st.Ping(ctx); err != nil {
		return err
	}
	counts, err := st.DeliveryCounts(ctx, now.Add(-DeliveryWindow), MetricDeliveries)
	if err != nil {
		return err
	}
	for _, c := range counts {
		ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.GaugeValue, float64(c.Count), c.Event, c.Status)
	}
	names := cfg.DeploymentNames()
	stats, err := st.RecentRunStats(ctx, names, MetricRuns)
	if err != nil {
		return err
	}
	type hist struct {
		count   uint64
		sum     float64
		buckets map[float64]uint64
	}
	states := map[[2]string]int{}
	hists := map[string]*hist{}
	for _, name := range names {
		hists[name] = &hist{buckets: map[float64]uint64{}}
		for _, b := range RunDurationBuckets {
			hists[name].buckets[b] = 0 // every bound, empty ones too
		}
	}
	for _, r := range stats {
		states[[2]string{r.Deployment, r.State}]++
		hs := hists[r.Deployment]
		if r.Seconds == nil || hs == nil {
			continue
		}
		hs.count++
		hs.sum += *r.Seconds
		for _, b := range RunDurationBuckets {
			if *r.Seconds <= b {
				hs.buckets[b]++ // cumulative: counted in every bucket it fits
			}
		}
	}
	for k, n := range states {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for _, name := range names {
		hs := hists[name]
		ch <- prometheus.MustNewConstHistogram(descRunDuration, hs.count, hs.sum, hs.buckets, name)
	}
	live, err := st.LastRuns(ctx, names, 0)
	if err != nil {
		return err
	}
	for _, name := range names {
		if l := live[name].Live; l != nil && !l.FinishedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue,
				max(now.Sub(l.FinishedAt).Seconds(), 0), name)
		}
	}
	return nil
}

// certs sends the expiry of each certificate dh-cert records, as it
// recorded it (certs.not_after: dh-route may not read the certificates),
// and returns 1 if they could not be listed.
func (m metrics) certs(ctx context.Context, ch chan<- prometheus.Metric) int {
	certs, err := m.h.st.ListCerts(ctx)
	if err != nil {
		m.h.opts.Logger.Warn("metrics: list the certificates", "err", err)
		return 1
	}
	for _, c := range certs {
		if !c.NotAfter.IsZero() { // not read yet
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(c.NotAfter.Unix()), c.Name)
		}
	}
	return 0
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// queueState is one queue as the metrics and /healthz see it.
type queueState struct {
	name    string
	stats   queue.Stats
	stalled bool // an entry older than stall_after waits and no worker holds the lock
	err     error
}

// queues reads the state of the queues the status page shows: main and
// each deployment's (dh-route may not read nginx's and cert's).
func (h *Handler) queues(cfg *config.Config, now time.Time) []queueState {
	var out []queueState
	for _, name := range append([]string{config.MainQueue}, cfg.DeploymentNames()...) {
		q := queue.Open(cfg.QueuePath(name))
		s, err := q.Stats()
		qs := queueState{name: name, stats: s, err: err}
		if err == nil {
			qs.stalled, qs.err = q.StalledSince(s, now.Add(-cfg.Status.StallAfter))
		}
		out = append(out, qs)
	}
	return out
}

// metricsHandler serves the collector in Prometheus's text format.
func (h *Handler) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics{h})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLogger{h}})
}

type promLogger struct{ h *Handler }

func (l promLogger) Println(v ...any) { l.h.opts.Logger.Error("metrics", "err", fmt.Sprint(v...)) }

// Health is the answer of GET /healthz.
type Health struct {
	Status  string   `json:"status"` // "ok" or "unhealthy"
	Reasons []string `json:"reasons,omitempty"`
	Stalled []string `json:"stalled,omitempty"` // the stalled queues
	Errors  []string `json:"errors,omitempty"`  // queues that could not be read (not unhealthy by themselves)
}

// Check reports whether every queue is being consumed: unhealthy when an
// entry older than status.stall_after waits in a queue whose lock no
// worker holds (its worker stopped). A queue that cannot be read is listed
// in Errors (and counted by dh_route_scrape_errors) without turning the
// answer red, as the status page shows it as "-".
func (h *Handler) Check() Health {
	cfg := h.config()
	now := h.opts.Now()
	hl := Health{Status: "ok"}
	for _, q := range h.queues(cfg, now) {
		switch {
		case q.err != nil:
			hl.Errors = append(hl.Errors, fmt.Sprintf("queue %s: %v", q.name, q.err))
		case q.stalled:
			hl.Stalled = append(hl.Stalled, q.name)
			hl.Reasons = append(hl.Reasons, fmt.Sprintf("queue %s: the oldest entry waits for %s, longer than status.stall_after %s, and no worker holds %s: start its worker (%s)",
				q.name, now.Sub(q.stats.Oldest).Round(time.Second), cfg.Status.StallAfter,
				filepath.Join(cfg.QueuePath(q.name), queue.LockFile), worker(q.name)))
		}
	}
	if len(hl.Reasons) > 0 {
		hl.Status = "unhealthy"
	}
	return hl
}

// worker names the unit that consumes a queue.
func worker(name string) string {
	switch name {
	case config.MainQueue:
		return "systemctl start dh-route"
	}
	return "systemctl start dh-deploy@" + name
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	hl := h.Check()
	code := http.StatusOK
	if hl.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(hl)
}
