package event

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// NginxSites asks dh-nginx to converge nginx to the site files of an
// nginx-kind deployment at one commit. dh-deploy publishes it to
// queues/nginx once the commit is verified and checked out, and dh-cert
// publishes it again once a certificate the sites wait for exists.
// dh-nginx takes the checkout's path and the site rules from its own
// configuration, never from the entry.
type NginxSites struct {
	Envelope
	// Deployment is the nginx-kind deployment.
	Deployment string `json:"deployment"`
	// Commit is the commit checked out.
	Commit string `json:"commit"`
	// Delivery is the delivery (or manual id) whose run asked for it.
	Delivery string `json:"delivery"`
	// RunID is that run's id in the runs table.
	RunID int64 `json:"run_id,omitempty"`
	// RequestedAt is when the entry was made.
	RequestedAt time.Time `json:"requested_at"`
}

// CertRequest asks dh-cert for a certificate (queues/cert), on behalf of
// the nginx-sites request that needs it, which dh-cert re-queues to
// queues/nginx once the certificate exists.
type CertRequest struct {
	Envelope
	// Name is the certificate name (certbot's --cert-name).
	Name string `json:"name"`
	// Domains are the DNS names the certificate covers, the first one
	// being its subject.
	Domains []string `json:"domains"`
	// For is the nginx-sites request waiting for the certificate.
	For NginxSites `json:"for"`
	// RequestedAt is when the entry was made.
	RequestedAt time.Time `json:"requested_at"`
}

// NginxReload asks dh-nginx to test and reload nginx (queues/nginx), after
// dh-cert renewed certificates.
type NginxReload struct {
	Envelope
	// Reason says why, for the log.
	Reason string `json:"reason"`
	// RequestedAt is when the entry was made.
	RequestedAt time.Time `json:"requested_at"`
}

var (
	// certNameRE is a certificate name: a DNS name's alphabet, no "..",
	// since certbot makes it a directory name.
	certNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	// domainRE is a DNS name dh-cert may ask a certificate for: lower
	// case, a label of 1 to 63 characters, optionally a leading "*." for a
	// wildcard.
	domainRE = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidDomain reports whether s is a DNS name a certificate may cover.
func ValidDomain(s string) bool { return len(s) <= 253 && domainRE.MatchString(s) }

// ValidCertName reports whether s is an acceptable certificate name.
func ValidCertName(s string) bool { return len(s) <= 253 && certNameRE.MatchString(s) }

// DeployRequest asks for one deployment to be deployed now: what
// dh-receive queues for POST /deploy/NAME with a valid token. dh-route
// records and forwards it to that deployment's queue; dh-deploy verifies
// it like a push (the commit must be on the ref) and records the run with
// the trigger "token".
type DeployRequest struct {
	Envelope
	// Delivery is a generated id ("token-" and 32 hex digits).
	Delivery string `json:"delivery"`
	// Deployment is the deployment asked for.
	Deployment string `json:"deployment"`
	// Ref is refs/heads/X or refs/tags/X; "" means the first branch the
	// deployment follows by name.
	Ref string `json:"ref,omitempty"`
	// Commit is the commit to deploy; "" means the tip of Ref.
	Commit string `json:"commit,omitempty"`
	// From is the client's address, for the record.
	From string `json:"from,omitempty"`
	// TokenName names the token that authorized the request (its file's
	// base name), for the record; never the token.
	TokenName string `json:"token_name,omitempty"`
	// ReceivedAt is when dh-receive accepted the request.
	ReceivedAt time.Time `json:"received_at"`
}

// Encode returns the entry's JSON.
func (e *DeployRequest) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindDeployRequest) }

// DecodeDeployRequest parses and checks a deploy-request entry.
func DecodeDeployRequest(data []byte) (*DeployRequest, error) {
	return decode[DeployRequest](data, KindDeployRequest)
}

func (e *DeployRequest) check() error {
	switch {
	case !validDelivery(e.Delivery):
		return Errorf("entry has a missing or malformed delivery id %q", e.Delivery)
	case !validDeployment(e.Deployment):
		return Errorf("entry has a missing or malformed deployment name %q", e.Deployment)
	case e.Ref != "" && !validRef(e.Ref):
		return Errorf("entry has a malformed ref %q", e.Ref)
	case e.Commit != "" && !validCommit(e.Commit):
		return Errorf("entry has a malformed commit %q", e.Commit)
	case e.ReceivedAt.IsZero():
		return Errorf("entry has no received_at time")
	}
	return nil
}

// Encode returns the entry's JSON.
func (e *NginxSites) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindNginxSites) }

// Encode returns the entry's JSON.
func (e *CertRequest) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindCertRequest) }

// Encode returns the entry's JSON.
func (e *NginxReload) Encode() ([]byte, error) { return encode(e, &e.Envelope, KindNginxReload) }

// DecodeNginxSites parses and checks an nginx-sites entry.
func DecodeNginxSites(data []byte) (*NginxSites, error) {
	return decode[NginxSites](data, KindNginxSites)
}

// DecodeCertRequest parses and checks a cert-request entry.
func DecodeCertRequest(data []byte) (*CertRequest, error) {
	return decode[CertRequest](data, KindCertRequest)
}

// DecodeNginxReload parses and checks an nginx-reload entry.
func DecodeNginxReload(data []byte) (*NginxReload, error) {
	return decode[NginxReload](data, KindNginxReload)
}

type checked interface{ check() error }

func encode(e checked, env *Envelope, kind string) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	env.Version, env.Kind = Version, kind
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	return append(b, '\n'), nil
}

func decode[T any, P interface {
	*T
	checked
}](data []byte, kind string) (*T, error) {
	env, err := Peek(data)
	if err != nil {
		return nil, err
	}
	if env.Kind != kind {
		return nil, Errorf("entry kind is %q, want %q", env.Kind, kind)
	}
	var e T
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, Errorf("decode %s entry: %v", kind, err)
	}
	if err := P(&e).check(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *NginxSites) check() error {
	switch {
	case !validDeployment(e.Deployment):
		return Errorf("entry has a missing or malformed deployment name %q", e.Deployment)
	case !validCommit(e.Commit):
		return Errorf("entry has a missing or malformed commit %q", e.Commit)
	case !validDelivery(e.Delivery):
		return Errorf("entry has a missing or malformed delivery id %q", e.Delivery)
	case e.RequestedAt.IsZero():
		return Errorf("entry has no requested_at time")
	}
	return nil
}

func (e *CertRequest) check() error {
	if !ValidCertName(e.Name) {
		return Errorf("entry has a missing or malformed certificate name %q", e.Name)
	}
	if len(e.Domains) == 0 || len(e.Domains) > 100 {
		return Errorf("entry has %d domains; want 1 to 100", len(e.Domains))
	}
	for _, d := range e.Domains {
		if !ValidDomain(d) {
			return Errorf("entry has a malformed domain %q", d)
		}
	}
	if e.RequestedAt.IsZero() {
		return Errorf("entry has no requested_at time")
	}
	return e.For.check()
}

func (e *NginxReload) check() error {
	if e.RequestedAt.IsZero() {
		return Errorf("entry has no requested_at time")
	}
	return nil
}
