package event

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// NginxSites asks dh-nginx to converge nginx to the site files of an
// nginx-kind deployment at one commit. dh-deploy publishes it to
// queues/nginx once the commit is verified and checked out; dh-nginx takes
// the checkout's path and the site rules from its own configuration, never
// from the entry.
type NginxSites struct {
	Envelope
	// Deployment is the nginx-kind deployment.
	Deployment string `json:"deployment"`
	// Commit is the commit now checked out.
	Commit string `json:"commit"`
	// Delivery is the delivery (or manual id) whose run asked for it.
	Delivery string `json:"delivery"`
	// RunID is that run's id in the runs table.
	RunID int64 `json:"run_id,omitempty"`
	// RequestedAt is when the entry was made.
	RequestedAt time.Time `json:"requested_at"`
}

var (
	deploymentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	commitRE     = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

// Encode returns the entry's JSON.
func (e *NginxSites) Encode() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	out := *e
	out.Version, out.Kind = Version, KindNginxSites
	out.RequestedAt = e.RequestedAt.UTC()
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeNginxSites parses and checks an nginx-sites entry.
func DecodeNginxSites(data []byte) (*NginxSites, error) {
	env, err := Peek(data)
	if err != nil {
		return nil, err
	}
	if env.Kind != KindNginxSites {
		return nil, dataErr("entry kind is %q, want %q", env.Kind, KindNginxSites)
	}
	var e NginxSites
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, dataErr("decode %s entry: %v", KindNginxSites, err)
	}
	return &e, e.check()
}

func (e *NginxSites) check() error {
	switch {
	case !deploymentRE.MatchString(e.Deployment):
		return dataErr("entry has a missing or malformed deployment name %q", e.Deployment)
	case !commitRE.MatchString(e.Commit):
		return dataErr("entry has a missing or malformed commit %q", e.Commit)
	case !ValidDelivery(e.Delivery):
		return dataErr("entry has a missing or malformed delivery id %q", e.Delivery)
	case e.RequestedAt.IsZero():
		return dataErr("entry has no requested_at time")
	}
	return nil
}
