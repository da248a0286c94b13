// Package event defines the entries that travel through the queues: JSON
// objects that say what they are, {"version": 1, "kind": "...", ...}.
//
// Decoding is strict about what it needs (version, kind, required fields)
// and returns every problem as an *Error (bad data: pkg/cli makes it exit
// 65), so a bad entry goes to failed/ with a reason instead of blocking its
// queue. A GitHub payload is
// carried byte for byte: Encode writes it verbatim, Decode hands back the
// same bytes.
package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// Version is the entry format this build writes and reads.
const Version = 1

// Kinds of entries.
const (
	KindGitHubEvent   = "github-event"   // a webhook delivery (queues/main, deployment queues)
	KindNginxSites    = "nginx-sites"    // converge nginx to a deployment's commit (queues/nginx)
	KindCertRequest   = "cert-request"   // obtain a certificate (queues/cert)
	KindNginxReload   = "nginx-reload"   // reload nginx after a renewal (queues/nginx)
	KindDeployRequest = "deploy-request" // deploy a deployment now, by token (queues/main, deployment queues)
	KindCommitStatus  = "commit-status"  // a commit status for dh-route to set on GitHub (queues/status)
	KindRunNotice     = "run-notice"     // a finished run for dh-route to notify about (queues/status)
)

// Envelope is what every entry starts with.
type Envelope struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"`
}

// Peek decodes only the envelope and checks the version.
func Peek(data []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, dataErr("entry is not a JSON object: %v", err)
	}
	if env.Version != Version {
		return env, dataErr("entry version %d is not supported (this build reads version %d)", env.Version, Version)
	}
	if env.Kind == "" {
		return env, dataErr("entry has no kind")
	}
	return env, nil
}

// GitHubEvent is one webhook delivery as dh-receive accepted it.
type GitHubEvent struct {
	Envelope
	// Delivery is the X-GitHub-Delivery GUID (or a generated id for
	// deliveries that did not come from GitHub's webhook).
	Delivery string `json:"delivery"`
	// Event is X-GitHub-Event: push, ping, ...
	Event string `json:"event"`
	// HookID is X-GitHub-Hook-ID, 0 when absent.
	HookID int64 `json:"hook_id,omitempty"`
	// ReceivedAt is when dh-receive accepted the delivery.
	ReceivedAt time.Time `json:"received_at"`
	// Source names the sender when it is not GitHub itself (gitea, ...).
	Source string `json:"source,omitempty"`
	// Deployment is set in a deployment queue: the deployment dh-route
	// routed this delivery to.
	Deployment string `json:"deployment,omitempty"`
	// Payload is the JSON payload exactly as received.
	Payload json.RawMessage `json:"payload"`

	// checked is the Payload DecodeGitHubEvent checked: Encode does not
	// check the same bytes again (dh-route forwards each delivery it
	// decoded to its deployments' queues).
	checked json.RawMessage
}

// ValidEventName reports whether s is an event name (ident.ParseEvent).
func ValidEventName(s string) bool {
	_, err := ident.ParseEvent(s)
	return err == nil
}

// Encode returns the entry's JSON with the payload bytes written verbatim
// (encoding/json would compact them). The payload must be a JSON object:
// Encode checks it, unless it is the very payload DecodeGitHubEvent
// returned, which its decoding checked.
func (e *GitHubEvent) Encode() ([]byte, error) {
	head, err := e.EncodeHead()
	if err != nil {
		return nil, err
	}
	if !sameBytes(e.Payload, e.checked) {
		if err := CheckPayload(e.Payload); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(head) + len(e.Payload) + len(PayloadEnd))
	buf.Write(head)
	buf.Write(e.Payload)
	buf.WriteString(PayloadEnd)
	return buf.Bytes(), nil
}

// PayloadEnd is what follows the payload in an encoded GitHubEvent.
const PayloadEnd = "}\n"

// EncodeHead returns the start of the entry's JSON, up to and including
// `"payload":`, for a writer that streams the payload after it and then
// PayloadEnd (Encode does the same in memory). It checks every field but
// the payload, which the caller checks with CheckPayload. The bytes are
// those encoding/json writes for the struct (its field order, omitempty,
// a UTC time in RFC 3339 with nanoseconds), appended directly: the head is
// made for every delivery, and reflection was a tenth of dh-receive's CPU
// per request.
func (e *GitHubEvent) EncodeHead() ([]byte, error) {
	if err := e.checkHead(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 192+len(e.Source)+len(e.Deployment))
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, `,"kind":"`+KindGitHubEvent+`","delivery":`...)
	b = appendString(b, e.Delivery)
	b = append(b, `,"event":`...)
	b = appendString(b, e.Event)
	if e.HookID != 0 {
		b = append(b, `,"hook_id":`...)
		b = strconv.AppendInt(b, e.HookID, 10)
	}
	b = append(b, `,"received_at":"`...)
	b = e.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano) // checkHead: a year JSON can hold
	b = append(b, '"')
	if e.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, e.Source)
	}
	if e.Deployment != "" {
		b = append(b, `,"deployment":`...)
		b = appendString(b, e.Deployment)
	}
	return append(b, `,"payload":`...), nil
}

// appendString appends s as encoding/json writes a string: as it is
// between quotes when it is printable ASCII that needs no escape (every
// checked identifier), else as json.Marshal writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// DecodeGitHubEvent parses and checks a github-event entry.
func DecodeGitHubEvent(data []byte) (*GitHubEvent, error) {
	// One decoding of the whole entry; Peek's too, to say what is wrong,
	// only when it fails or the envelope is not a github-event's.
	var e GitHubEvent
	err := json.Unmarshal(data, &e)
	if err != nil || e.Version != Version || e.Kind != KindGitHubEvent {
		env, perr := Peek(data)
		if perr != nil {
			return nil, perr
		}
		if env.Kind != KindGitHubEvent {
			return nil, dataErr("entry kind is %q, want %q", env.Kind, KindGitHubEvent)
		}
		return nil, dataErr("decode %s entry: %v", KindGitHubEvent, err)
	}
	if err := e.checkHead(); err != nil {
		return nil, err
	}
	// Unmarshal checked the whole entry, payload included: what is left
	// to check is that the payload is an object, not the JSON again.
	if t := bytes.TrimLeft(e.Payload, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, CheckPayload(e.Payload) // not an object: it says whether it is JSON at all
	}
	e.checked = e.Payload
	return &e, nil
}

// sameBytes reports whether a and b are the same memory, not merely
// equal: a payload replaced since it was checked is checked again.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

func (e *GitHubEvent) checkHead() error {
	switch {
	case !validDelivery(e.Delivery):
		return dataErr("entry has a missing or malformed delivery id %q", e.Delivery)
	case !ValidEventName(e.Event):
		return dataErr("entry has a missing or malformed event name %q", e.Event)
	case e.ReceivedAt.IsZero():
		return dataErr("entry has no received_at time")
	case e.ReceivedAt.UTC().Year() < 0 || e.ReceivedAt.UTC().Year() > 9999:
		// Encode writes the time in UTC, which JSON can hold only for
		// years 0 to 9999; "0000-01-01T00:30:00+01:00" decodes but is in
		// year -1 in UTC.
		return dataErr("entry received_at %s is out of range", e.ReceivedAt.Format(time.RFC3339))
	}
	return nil
}

// CheckPayload checks that a payload is a JSON object (PayloadChecker,
// which checks one as it streams).
func CheckPayload(payload []byte) error {
	var c PayloadChecker
	c.Write(payload)
	return c.Check()
}

// Error is a problem of an entry's content: bad data, which no retry
// mends (its handler fails the entry; pkg/cli makes it exit 65).
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func dataErr(format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...)}
}

// validDelivery reports whether s is a delivery id (ident.ParseDelivery).
func validDelivery(s string) bool {
	_, err := ident.ParseDelivery(s)
	return err == nil
}

// validDeployment reports whether s is a deployment name
// (ident.ParseDeploymentName).
func validDeployment(s string) bool {
	_, err := ident.ParseDeploymentName(s)
	return err == nil
}

// validRef reports whether s is a full branch or tag name
// (ident.ParseRef).
func validRef(s string) bool {
	_, err := ident.ParseRef(s)
	return err == nil
}

// validCommit reports whether s is a full commit name (ident.ParseCommit).
func validCommit(s string) bool {
	_, err := ident.ParseCommit(s)
	return err == nil
}

// validRepository reports whether s is "owner/name"
// (ident.ParseRepository).
func validRepository(s string) bool {
	_, err := ident.ParseRepository(s)
	return err == nil
}
