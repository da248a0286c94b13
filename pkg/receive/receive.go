// Package receive is dh-receive's HTTP front door: it verifies GitHub
// webhook deliveries and enqueues each verified one durably into
// queues/main.
//
// Guarantees: a 202 answer means the delivery is on disk (queue.Publish
// returned nil); anything that cannot be made durable gets 503 and leaves
// no entry. Bad input gets a 4xx with a JSON body saying why, and leaves
// nothing in the queue. The body read before the signature check is
// bounded by max_body.
//
// Status codes:
//
//	202 queued                        405 not POST
//	400 malformed headers or payload  413 body larger than max_body
//	401 no (or malformed) signature   415 content type not JSON or form
//	403 wrong signature, source not   503 queue not writable (disk full,
//	    in the allowlist                  I/O error, missing directory), or
//	                                      full: at a [queues.main] limit or
//	                                      below the free-space floor, with
//	                                      Retry-After, before reading the body
package receive

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
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
	Queue  *queue.Queue
	// Allowed lists the source networks allowed to deliver; empty allows all.
	Allowed []netip.Prefix
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler returns the server's routes: the webhook path, GET / and
// GET /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
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
	return mux
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

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(w, http.StatusMethodNotAllowed, "deliveries are POSTed")
		return
	}
	client, err := s.clientAddr(r)
	if err != nil {
		s.reject(w, r, http.StatusForbidden, err.Error(), client)
		return
	}
	if !s.allowed(client) {
		s.reject(w, r, http.StatusForbidden, "source address "+client.String()+" is not allowed", client)
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" && mt != "application/x-www-form-urlencoded" {
		s.reject(w, r, http.StatusUnsupportedMediaType,
			"content type must be application/json or application/x-www-form-urlencoded", client)
		return
	}
	tooLarge := "body larger than " + strconv.FormatInt(s.Config.MaxBody, 10) + " bytes"
	if r.ContentLength > s.Config.MaxBody {
		s.reject(w, r, http.StatusRequestEntityTooLarge, tooLarge, client)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.Config.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, r, http.StatusRequestEntityTooLarge, tooLarge, client)
		} else {
			s.reject(w, r, http.StatusBadRequest, "read body: "+err.Error(), client)
		}
		return
	}

	sum, status, err := signature(r.Header)
	if err != nil {
		s.reject(w, r, status, err.Error(), client)
		return
	}
	payload := body
	if mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil || form.Get("payload") == "" {
			s.reject(w, r, http.StatusBadRequest, "form body has no payload field", client)
			return
		}
		payload = []byte(form.Get("payload"))
	}
	// GitHub signs the body as sent; Gitea signs the JSON payload even
	// when it sends a form.
	if github.Verify(sum, body, s.Secrets) != nil &&
		(mt != "application/x-www-form-urlencoded" || github.Verify(sum, payload, s.Secrets) != nil) {
		s.reject(w, r, http.StatusForbidden, github.ErrBadSignature.Error(), client)
		return
	}

	e := &event.GitHubEvent{
		Delivery:   r.Header.Get(github.HeaderDelivery),
		Event:      r.Header.Get(github.HeaderEvent),
		ReceivedAt: s.Now().UTC(),
		Payload:    payload,
	}
	for _, src := range sources {
		if r.Header.Get(src.header) != "" {
			e.Source = src.name
			break
		}
	}
	if !event.ValidEventName(e.Event) {
		s.reject(w, r, http.StatusBadRequest, "missing or malformed "+github.HeaderEvent+" header", client)
		return
	}
	if !github.ValidGUID(e.Delivery) {
		s.reject(w, r, http.StatusBadRequest, "missing or malformed "+github.HeaderDelivery+" header (want a GUID)", client)
		return
	}
	if h := r.Header.Get(github.HeaderHookID); h != "" {
		if e.HookID, err = strconv.ParseInt(h, 10, 64); err != nil || e.HookID < 0 {
			s.reject(w, r, http.StatusBadRequest, "malformed "+github.HeaderHookID+" header", client)
			return
		}
	}
	data, err := e.Encode()
	if err != nil {
		s.reject(w, r, http.StatusBadRequest, err.Error(), client)
		return
	}
	name, err := s.Queue.Publish(data)
	if err != nil {
		s.Logger.Error("delivery not queued", "delivery", e.Delivery, "event", e.Event, "err", err)
		fail(w, http.StatusServiceUnavailable, "the delivery could not be stored; it was not accepted")
		return
	}
	s.Logger.Info("delivery queued", "delivery", e.Delivery, "event", e.Event, "source", e.Source, "entry", name, "bytes", len(payload))
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery": e.Delivery, "queued": true})
}

// signature finds the SHA-256 signature of a delivery, with the status to
// answer when there is none.
func signature(h http.Header) ([]byte, int, error) {
	v := h.Get(github.HeaderSignature256)
	if v == "" {
		for _, alt := range altSignature {
			if a := h.Get(alt); a != "" {
				v = "sha256=" + a
				break
			}
		}
	}
	if v == "" {
		if h.Get(github.HeaderSignature1) != "" {
			return nil, http.StatusUnauthorized, github.ErrSHA1Only
		}
		return nil, http.StatusUnauthorized, github.ErrNoSignature
	}
	sum, err := github.ParseSignature(v)
	if err != nil {
		return nil, http.StatusUnauthorized, err
	}
	return sum, 0, nil
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

// clientAddr is the delivering client's address: the TCP peer, or with
// trusted_proxies = N, the N-th address from the right of X-Forwarded-For
// (each trusted proxy appends the address it got the request from, so
// only those N entries can be trusted). A unix-socket peer without
// proxies is the zero address.
func (s *Server) clientAddr(r *http.Request) (netip.Addr, error) {
	n := s.Config.TrustedProxies
	if n <= 0 {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, nil
		}
		return ap.Addr().Unmap(), nil
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	if len(hops) < n {
		return netip.Addr{}, errors.New("X-Forwarded-For has fewer addresses than trusted_proxies")
	}
	a, err := netip.ParseAddr(hops[len(hops)-n])
	if err != nil {
		return netip.Addr{}, errors.New("malformed X-Forwarded-For address")
	}
	return a.Unmap(), nil
}

func (s *Server) allowed(a netip.Addr) bool {
	if len(s.Allowed) == 0 {
		return true
	}
	for _, p := range s.Allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
