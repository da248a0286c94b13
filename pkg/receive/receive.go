// Package receive is dh-receive's HTTP front door: it verifies GitHub
// webhook deliveries and enqueues each verified one durably into
// queues/main.
//
// Guarantees: a 202 answer means the delivery is on disk (its entry
// published); anything that cannot be made durable gets 503 and leaves
// no entry. Bad input gets a 4xx with a JSON body saying why, and leaves
// nothing in the queue. Every header is checked before the body is read;
// the body is never held in memory before its signature is checked (see
// stream.go), and the body bytes in flight across requests are bounded by
// max_in_flight. X-Forwarded-For counts only from trusted_proxies.
//
// Status codes:
//
//	202 queued                        405 not POST
//	400 malformed headers or payload  413 body larger than max_body
//	401 no (or malformed) signature   415 content type not JSON or form
//	403 wrong signature, source not   503 queue not writable (disk full,
//	    in the allowlist                  I/O error, missing directory), or
//	                                      max_in_flight reached (Retry-After), or
//	                                      full: at a [queues.main] limit or
//	                                      below the free-space floor, with
//	                                      Retry-After, before reading the body
//
// POST /deploy/NAME (token.go) and the git hook's socket (hook.go) have
// their own answers; both may wait for the runs they cause (wait.go),
// which dh-receive learns from dh-route's status listener (status.go).
package receive

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// Server answers webhook deliveries. Its zero value is not usable; fill
// every field.
type Server struct {
	Config  config.Receive
	Secrets [][]byte
	// Tokens holds, by deployment name, the tokens that may trigger it
	// with POST /deploy/NAME; a deployment without any cannot be.
	Tokens map[string][]config.DeployToken
	// Deployments are the configured deployments by name: a token
	// deploys only the refs its deployment follows.
	Deployments map[string]*config.Deployment
	Queue       *queue.Queue
	// Allowed lists the source networks allowed to deliver; empty allows all.
	Allowed []netip.Prefix
	// Proxies are the networks of receive.trusted_proxies, and ProxyUnix
	// whether it trusts a unix-socket peer: see clientAddr.
	Proxies   []netip.Prefix
	ProxyUnix bool
	Logger    *slog.Logger
	Now       func() time.Time
	// HookListener, if not nil, is the git hook's unix socket (Listen),
	// served with HookHandler; HookUsers maps a Unix user id to the
	// repositories its pushes may queue there (receive.hook_users).
	HookListener net.Listener
	HookUsers    map[uint32][]string

	// MetricsToken, if not empty, must be sent as "Authorization: Bearer
	// TOKEN" to GET /metrics (receive.metrics_token_file); empty, there is
	// no /metrics.
	MetricsToken []byte

	// Status, if not nil, reads dh-route's status listener
	// (receive.status_url): requests that wait for their runs need it.
	Status *StatusClient

	waiting   atomic.Int64    // requests waiting for their runs (wait.go)
	waitMu    sync.Mutex      // guards waitingBy
	waitingBy map[string]int  // waiting requests by deployment or hook user (startWait)
	stopping  context.Context // ended when Serve stops: waiting requests answer at once

	inFlight    budget    // request body bytes being received (max_in_flight)
	tokenFails  failLimit // failed token attempts by source
	metricsOnce sync.Once
	metrics     *serverMetrics // metrics.go
	verifiers   sync.Pool      // *github.Verifier of Secrets, reset
}

// verifier returns a Verifier of s.Secrets for one body; give it back to
// s.verifiers when the body is checked.
func (s *Server) verifier() *github.Verifier {
	if v, ok := s.verifiers.Get().(*github.Verifier); ok {
		v.Reset()
		return v
	}
	return github.NewVerifier(s.Secrets)
}

// Handler returns the server's routes: the webhook path, POST
// /deploy/NAME, GET /, GET /healthz and GET /metrics (metrics.go).
func (s *Server) Handler() http.Handler {
	s.metricsOnce.Do(func() { s.metrics = newServerMetrics(s) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.serveMetrics())
	mux.HandleFunc("GET /{$}", s.info)
	// Both routes that enqueue are refused while the queue is full (admit).
	webhook, deploy := s.admit(s.webhook), s.admit(s.deployRequest)
	mux.HandleFunc("POST /deploy/{name}", deploy)
	// The webhook path is matched literally, not as a ServeMux pattern, so
	// no configured path can be read as pattern syntax.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == s.Config.Path {
			webhook(w, r)
			return
		}
		fail(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return s.instrument(mux)
}

// Headers other forges send in place of GitHub's: Gitea, Forgejo and Gogs
// send X-GitHub-Event and X-GitHub-Delivery too, and a bare hex SHA-256
// HMAC in their own signature header.
var (
	altSignature = []string{"X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"}
	sources      = []struct{ header, name string }{
		{"X-Forgejo-Event", "forgejo"}, {"X-Gitea-Event", "gitea"}, {"X-Gogs-Event", "gogs"},
	}
)

// webhook takes one delivery: read (every check its source and headers
// allow before a byte of the body is read, then its bytes in flight),
// verify and enqueue (in one pass over the body: incoming.streamBody),
// answer.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(w, http.StatusMethodNotAllowed, "deliveries are POSTed")
		return
	}
	// An answer given before the body is read closes the connection:
	// without this, net/http would first read up to 256 KiB of the unread
	// body, waiting for a client that may never send it.
	w.Header().Set("Connection", "close")
	client, rej := s.source(r)
	var d *incoming
	if rej == nil {
		d, rej = s.readHeaders(r)
	}
	if rej == nil {
		rej = s.reserve(w, r, d)
	}
	if rej != nil {
		s.reject(w, r, rej.status, rej.why, client)
		return
	}
	defer s.inFlight.give(d.reserved)
	w.Header().Del("Connection") // the body is read from here on
	name, err := s.enqueue(d)
	s.answer(w, r, client, d, name, err)
}

// source is the requesting client's address (clientAddr), refused unless
// the allowlist takes it.
func (s *Server) source(r *http.Request) (netip.Addr, *rejection) {
	client, err := s.clientAddr(r)
	if err != nil {
		return client, &rejection{http.StatusForbidden, err.Error()}
	}
	if !s.allowed(client) {
		return client, &rejection{http.StatusForbidden, "source address " + client.String() + " is not allowed"}
	}
	return client, nil
}

// answer tells the client what became of its delivery: 202 once its entry
// name is on disk, the rejection of a body that did not verify or check,
// or 503 when the queue could not store it.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, client netip.Addr, d *incoming, name string, err error) {
	var bad *rejection
	switch {
	case errors.As(err, &bad):
		s.reject(w, r, bad.status, bad.why, client)
	case err != nil:
		s.Logger.Error("delivery not queued", "delivery", d.event.Delivery, "event", d.event.Event, "err", err)
		fail(w, http.StatusServiceUnavailable, "the delivery could not be stored; it was not accepted")
	default:
		s.Logger.Info("delivery queued", "delivery", d.event.Delivery, "event", d.event.Event, "source", d.event.Source, "entry", name, "bytes", d.payload)
		verifiedEvent(w, d.event.Event)
		writeJSON(w, http.StatusAccepted, queuedAnswer{Delivery: d.event.Delivery, Queued: true})
	}
}

// Canonical forms of the header names the webhook reads: net/http
// canonicalizes the request's keys once, so a lookup by these is a map
// access (http.Header.Get would canonicalize its argument each time, and
// "X-GitHub-Event" is not canonical, so it would allocate).
var (
	hEvent, hDelivery, hHookID = canonical(github.HeaderEvent), canonical(github.HeaderDelivery), canonical(github.HeaderHookID)
	hSignature, hSignature1    = canonical(github.HeaderSignature256), canonical(github.HeaderSignature1)
	hContentType               = canonical("Content-Type")
)

func canonical(key string) string { return textproto.CanonicalMIMEHeaderKey(key) }

// header is h.Get(key) for a canonical key.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readHeaders checks everything a delivery's headers say, before a byte of
// its body is read: the content type, the length, the signature, the
// event, delivery and hook id. It returns the delivery ready to be
// streamed, or why not.
func (s *Server) readHeaders(r *http.Request) (*incoming, *rejection) {
	mt, _, _ := mime.ParseMediaType(header(r.Header, hContentType))
	if mt != "application/json" && mt != "application/x-www-form-urlencoded" {
		return nil, &rejection{http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded"}
	}
	tooLarge := &rejection{http.StatusRequestEntityTooLarge, "body larger than " + strconv.FormatInt(s.Config.MaxBody, 10) + " bytes"}
	if r.ContentLength > s.Config.MaxBody {
		return nil, tooLarge
	}
	sum, err := signature(r.Header)
	if err != nil {
		return nil, &rejection{http.StatusUnauthorized, err.Error()}
	}
	e := &event.GitHubEvent{
		Delivery:   header(r.Header, hDelivery),
		Event:      header(r.Header, hEvent),
		ReceivedAt: s.Now().UTC(),
	}
	for _, src := range sources {
		if header(r.Header, src.header) != "" {
			e.Source = src.name
			break
		}
	}
	if !event.ValidEventName(e.Event) {
		return nil, &rejection{http.StatusBadRequest, "missing or malformed " + github.HeaderEvent + " header"}
	}
	if _, err := ident.ParseGUID(e.Delivery); err != nil {
		return nil, &rejection{http.StatusBadRequest, "missing or malformed " + github.HeaderDelivery + " header (want a GUID)"}
	}
	if h := header(r.Header, hHookID); h != "" {
		if e.HookID, err = strconv.ParseInt(h, 10, 64); err != nil || e.HookID < 0 {
			return nil, &rejection{http.StatusBadRequest, "malformed " + github.HeaderHookID + " header"}
		}
	}
	head, err := e.EncodeHead()
	if err != nil {
		return nil, &rejection{http.StatusBadRequest, err.Error()}
	}
	return &incoming{event: e, head: head, form: mt == "application/x-www-form-urlencoded", sum: sum,
		secrets: s.Secrets, tooBig: tooLarge}, nil
}

// reserve counts the delivery's body against max_in_flight from here until
// the answer (the caller gives d.reserved back): all of Content-Length, or
// max_body when it is not sent. It bounds the body's reader by max_body.
func (s *Server) reserve(w http.ResponseWriter, r *http.Request, d *incoming) *rejection {
	n := r.ContentLength
	if n < 0 {
		n = s.Config.MaxBody
	}
	if !s.inFlight.take(n, s.Config.MaxInFlight) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return &rejection{http.StatusServiceUnavailable, "too many bytes in flight (receive.max_in_flight): try again later"}
	}
	d.reserved, d.body = n, http.MaxBytesReader(w, r.Body, s.Config.MaxBody)
	return nil
}

// enqueue verifies the delivery's body as it streams into its entry's
// staging file and publishes the entry: its name, or a *rejection (the
// request's fault: nothing was queued) or another error (the queue's).
func (s *Server) enqueue(d *incoming) (string, error) {
	d.bodyMAC = s.verifier()
	defer s.verifiers.Put(d.bodyMAC)
	res := queue.PublishAll([]queue.Item{{Queue: s.Queue, Write: d.streamBody}})[0]
	return res.Name, res.Err
}

// queuedAnswer is the body of a 202 (a struct, not a map: it is encoded
// on every delivery, and a map's keys are sorted each time).
type queuedAnswer struct {
	Delivery string `json:"delivery"`
	Queued   bool   `json:"queued"`
}

// signature finds the SHA-256 signature of a delivery; a missing or
// malformed one is a 401.
func signature(h http.Header) ([]byte, error) {
	v := header(h, hSignature)
	if v == "" {
		for _, alt := range altSignature {
			if a := header(h, alt); a != "" {
				v = "sha256=" + a
				break
			}
		}
	}
	if v == "" {
		if header(h, hSignature1) != "" {
			return nil, github.ErrSHA1Only
		}
		return nil, github.ErrNoSignature
	}
	return github.ParseSignature(v)
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, status int, why string, client netip.Addr) {
	s.Logger.Warn("delivery rejected", "status", status, "reason", why,
		"delivery", r.Header.Get(github.HeaderDelivery), "client", client)
	fail(w, status, why)
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"service": "dh-receive",
		"version": cli.VersionString(),
		"webhook": s.Config.Path,
		"health":  "/healthz",
	})
}

// fail writes the JSON error body durhack-deployer clients know:
// {"status": 401, "message": "Unauthorized", "description": "..."}.
func fail(w http.ResponseWriter, status int, description string) {
	writeJSON(w, status, map[string]any{
		"status": status, "message": http.StatusText(status), "description": description,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// clientAddr is the requesting client's address: the connection's peer,
// or, when the peer is a trusted proxy (receive.trusted_proxies), the
// right-most address of X-Forwarded-For that is not one of the trusted
// proxies. Each proxy appends the address it got the request from, so
// everything left of that one may be the client's own invention, and a
// client that reaches dh-receive directly is never asked. A unix-socket
// peer that is not trusted is the zero address.
func (s *Server) clientAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	peer, viaUnix := ap.Addr().Unmap(), err != nil
	if viaUnix && !s.ProxyUnix || !viaUnix && !inPrefixes(peer, s.Proxies) {
		return peer, nil
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	if len(hops) == 0 {
		return peer, errors.New("a request from a trusted proxy without X-Forwarded-For")
	}
	var a netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		if a, err = netip.ParseAddr(hops[i]); err != nil {
			return peer, errors.New("malformed X-Forwarded-For address")
		}
		if a = a.Unmap(); !inPrefixes(a, s.Proxies) {
			break
		}
	}
	// Every address a proxy: the left-most.
	return a, nil
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Server) allowed(a netip.Addr) bool {
	return len(s.Allowed) == 0 || inPrefixes(a, s.Allowed)
}
