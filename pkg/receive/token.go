package receive

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
)

// maxRequestBody bounds a POST /deploy/NAME body: {"commit", "ref"}.
const maxRequestBody = 4 << 10

// deployRequest handles POST /deploy/{name}: a deployment asked for by a
// holder of one of its tokens (Authorization: Bearer TOKEN), for CI
// systems and scripts that cannot sign GitHub deliveries. The optional JSON
// body may name the "commit" and the "ref" (one the deployment follows);
// dh-deploy verifies them like a push. ?wait=SECONDS (or X-DH-Wait)
// holds the answer until the run ends (wait.go): 200 it succeeded, 422 it
// failed, was refused, superseded or not deployed, 202 still running at
// the deadline; 501 without receive.status_url, 503 at
// receive.max_waiting. Every answer that queued carries Location: the
// delivery's page. Answers: 202 queued; 400 bad body, a bad wait,
// or a token in the URL; 401 no token; 403 a wrong token or no such
// deployment (the same answer, so names cannot be probed), or a ref the
// deployment does not follow; 413; 415; 429 too many failed attempts from
// this source (failLimit); 503 not stored. The source allowlist does not
// apply: the token is the authentication.
func (s *Server) deployRequest(w http.ResponseWriter, r *http.Request) {
	client, _ := s.clientAddr(r)
	name := r.PathValue("name")
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q) > 1 || len(q) == 1 && !q.Has("wait") {
		s.reject(w, r, http.StatusBadRequest, "no query string but ?wait=SECONDS: the token goes in the Authorization header, the rest in a JSON body", client)
		return
	}
	wait, err := waitParam(q, r.Header)
	if err != nil {
		s.reject(w, r, http.StatusBadRequest, err.Error(), client)
		return
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dh-deployer"`)
		s.reject(w, r, http.StatusUnauthorized, "missing Authorization: Bearer TOKEN header", client)
		return
	}
	now := s.Now()
	if wait := s.tokenFails.wait(client, now); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
		fail(w, http.StatusTooManyRequests, "too many failed token attempts from this address; try again later")
		return
	}
	tokenName, ok := match([]byte(token), s.Tokens[name])
	if !ok {
		// Not logged one by one: failLimit logs a line per burst.
		s.tokenFails.fail(client, now, name, s.Logger)
		fail(w, http.StatusForbidden, "wrong token, or no deployment "+strconv.Quote(name)+" that takes tokens")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		s.reject(w, r, http.StatusRequestEntityTooLarge, "body larger than 4096 bytes", client)
		return
	}
	var req struct {
		Commit string `json:"commit"`
		Ref    string `json:"ref"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			s.reject(w, r, http.StatusUnsupportedMediaType, "content type must be application/json", client)
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			s.reject(w, r, http.StatusBadRequest, "body: "+err.Error()+` (want {"commit": SHA, "ref": "refs/heads/BRANCH"}, both optional)`, client)
			return
		}
	}
	var id [16]byte
	rand.Read(id[:])
	e := &event.DeployRequest{Delivery: "token-" + hex.EncodeToString(id[:]), Deployment: name, Ref: req.Ref,
		Commit: req.Commit, From: client.String(), TokenName: tokenName, ReceivedAt: s.Now().UTC()}
	data, err := e.Encode()
	if err != nil {
		s.reject(w, r, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "entry has "), client)
		return
	}
	if d, ok := s.Deployments[name]; req.Ref != "" && (!ok || !d.FollowsRef(req.Ref)) {
		s.reject(w, r, http.StatusForbidden, "deployment "+name+" does not follow "+strconv.Quote(req.Ref)+
			": a token deploys only the branches and tags in its configuration", client)
		return
	}
	release, ok := s.startWait(w, wait, "deployment "+name)
	if !ok {
		return
	}
	defer release()
	entry, err := s.Queue.Publish(data)
	if err != nil {
		s.Logger.Error("deploy request not queued", "delivery", e.Delivery, "deployment", name, "err", err)
		fail(w, http.StatusServiceUnavailable, "the request could not be stored; it was not accepted")
		return
	}
	s.Logger.Info("deploy request queued", "delivery", e.Delivery, "deployment", name, "ref", e.Ref, "commit", e.Commit,
		"client", client, "entry", entry)
	w.Header().Set("Location", s.Location(e.Delivery))
	if wait > 0 {
		s.answerWhenDone(w, r, e.Delivery, name, wait)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery": e.Delivery, "queued": true, "location": s.Location(e.Delivery)})
}

// noTokens stands in for the tokens of a deployment that has none, so
// that a guess against an unknown name takes as long as one against a
// known name.
var noTokens = func() []config.DeployToken {
	t := make([]byte, 32)
	rand.Read(t)
	return []config.DeployToken{{Token: []byte(hex.EncodeToString(t))}}
}()

// match compares token with each of tokens in constant time (every one
// is compared), and returns the name of the one it equals.
func match(token []byte, tokens []config.DeployToken) (string, bool) {
	real := len(tokens) > 0
	if !real {
		tokens = noTokens
	}
	found, at := 0, 0
	for i, t := range tokens {
		eq := subtle.ConstantTimeCompare(token, t.Token)
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found != 1 || !real {
		return "", false
	}
	return tokens[at].Name, true
}
