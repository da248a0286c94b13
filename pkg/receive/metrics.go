package receive

import (
	"crypto/subtle"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LatencyBuckets are the upper bounds of dh_receive_request_duration_seconds:
// a delivery is answered once its entry is on disk, usually in
// milliseconds; GitHub gives up after 10 s.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// eventName is what an X-GitHub-Event header may be to become a label:
// only a verified delivery's header is used, and only if it looks like
// an event name, so that labels stay few whatever clients send.
var eventName = regexp.MustCompile(`^[a-z_]{1,40}$`)

// Events of the label event besides GitHub's names.
const (
	eventDeploy     = "deploy"     // POST /deploy/NAME
	eventUnverified = "unverified" // a webhook answered other than 2xx: its header is not trusted
)

// serverMetrics are dh-receive's metrics: unlike dh-route's, they are
// counted by the process (dh-receive has no database), so they start
// from zero at each start, as Prometheus counters may.
type serverMetrics struct {
	reg        *prometheus.Registry
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
	refusals   prometheus.Counter
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dh_receive_deliveries_total",
			Help: "Requests to the webhook path and POST /deploy/NAME, by event (X-GitHub-Event of a verified delivery, deploy, or unverified) and answer (HTTP status).",
		}, []string{"event", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dh_receive_request_duration_seconds",
			Help:    "Time from a delivery's request to its answer (the entry on disk for a 202).",
			Buckets: LatencyBuckets,
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dh_receive_backlog_refusals_total",
			Help: "Deliveries refused with 503 before their body was read because queues/main was at a limit or below the free-space floor.",
		}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dh_receive_bytes_in_flight",
		Help: "Request body bytes being received now (bounded by receive.max_in_flight).",
	}, func() float64 { return float64(s.inFlight.current()) })
	m.reg.MustRegister(m.deliveries, m.latency, m.refusals, inFlight)
	return m
}

// instrument counts and times the requests of next that deliver: the
// webhook path and POST /deploy/NAME.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deploy := strings.HasPrefix(r.URL.Path, "/deploy/")
		if r.URL.Path != s.Config.Path && !deploy {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		event := eventDeploy
		if !deploy {
			event = eventUnverified
			if rec.code/100 == 2 && eventName.MatchString(rec.event) {
				event = rec.event
			}
		}
		s.metrics.deliveries.WithLabelValues(event, strconv.Itoa(rec.code)).Inc()
		s.metrics.latency.Observe(time.Since(start).Seconds())
	})
}

// serveMetrics serves GET /metrics to a holder of receive.metrics_token_file's
// token; without a configured token there is no such endpoint (404).
func (s *Server) serveMetrics() http.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.MetricsToken) == 0 {
			fail(w, http.StatusNotFound, "no such endpoint: /metrics (set receive.metrics_token_file to serve it)")
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dh-receive metrics"`)
			fail(w, http.StatusUnauthorized, "missing Authorization: Bearer TOKEN header (receive.metrics_token_file)")
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), s.MetricsToken) != 1 {
			fail(w, http.StatusForbidden, "wrong token")
			return
		}
		h.ServeHTTP(w, r)
	}
}

// statusRecorder remembers the status code a handler answered, and the
// event of a verified delivery (verifiedEvent).
type statusRecorder struct {
	http.ResponseWriter
	code  int
	event string
	wrote sync.Once
}

// verifiedEvent tells instrument, if w is its recorder, the event of a
// delivery whose signature verified: its header, read once by the
// webhook.
func verifiedEvent(w http.ResponseWriter, name string) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.event = name
	}
}

func (r *statusRecorder) WriteHeader(code int) {
	r.wrote.Do(func() { r.code = code })
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote.Do(func() {})
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
