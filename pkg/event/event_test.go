package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func sample() *GitHubEvent {
	return &GitHubEvent{
		Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Event: "push", HookID: 292430182,
		ReceivedAt: time.Date(2026, 11, 22, 9, 30, 0, 123, time.UTC),
		Payload:    json.RawMessage("{ \"ref\" :  \"refs/heads/main\",\n\"n\": 1.50 }"),
	}
}

func TestEncodeKeepsPayloadBytes(t *testing.T) {
	e := sample()
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("Encode() = %v", err)
	}
	if !bytes.Contains(b, []byte(`"payload":`+string(e.Payload)+"}")) {
		t.Errorf("Encode() = %s; want the payload verbatim", b)
	}
	got, err := DecodeGitHubEvent(b)
	if err != nil {
		t.Fatalf("DecodeGitHubEvent(Encode()) = %v", err)
	}
	if got.Version != Version || got.Kind != KindGitHubEvent || got.Delivery != e.Delivery || got.HookID != e.HookID ||
		!got.ReceivedAt.Equal(e.ReceivedAt) || !bytes.Equal(got.Payload, e.Payload) {
		t.Errorf("DecodeGitHubEvent(Encode(%+v)) = %+v", e, got)
	}
}

func TestDecodeRejectsBadEntries(t *testing.T) {
	good, _ := sample().Encode()
	for _, tc := range []struct{ name, data, want string }{
		{"not JSON", `{"version":1,`, "not a JSON object"},
		{"version 2", strings.Replace(string(good), `"version":1`, `"version":2`, 1), "version 2 is not supported"},
		{"no kind", `{"version":1}`, "no kind"},
		{"other kind", `{"version":1,"kind":"nginx-sites"}`, `want "github-event"`},
		{"other kind, fields of other types", `{"version":1,"kind":"nginx-sites","delivery":5}`, `want "github-event"`},
		{"version 2, fields of other types", `{"version":2,"kind":"github-event","delivery":5}`, "version 2 is not supported"},
		{"bad delivery", strings.Replace(string(good), "72d3162e", "../..", 1), "delivery id"},
		{"bad event", strings.Replace(string(good), `"push"`, `"push; rm"`, 1), "event name"},
		{"no time", strings.Replace(string(good), `"received_at"`, `"x"`, 1), "received_at"},
		{"time out of range in UTC", strings.Replace(string(good), `"2026-11-22T09:30:00.000000123Z"`, `"0000-01-01T00:30:00+01:00"`, 1), "out of range"},
		{"payload not an object", `{"version":1,"kind":"github-event","delivery":"d1","event":"push","received_at":"2026-11-22T09:30:00Z","payload":[1]}`, "not a JSON object"},
	} {
		_, err := DecodeGitHubEvent([]byte(tc.data))
		if !errors.As(err, new(*Error)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeGitHubEvent() = %v; want a data error containing %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecode feeds every decoder (github-event, nginx-sites, cert-request,
// nginx-reload) the same bytes. Every error is a DataErr (the entry goes
// to failed/), at most one decoder accepts an entry (the one its kind
// names), and an accepted entry round-trips: it re-encodes, the encoding
// decodes to an equal entry and encodes to the same bytes again, and a
// github-event's payload bytes are the ones in the input. Seeds: one good
// entry of each kind, each fixture payload as a github-event entry, and
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	good, _ := sample().Encode()
	f.Add(good)
	f.Add([]byte(`{"version":1,"kind":"github-event"}`))
	at := time.Date(2026, 11, 22, 9, 30, 0, 0, time.FixedZone("", 3600))
	sites := NginxSites{Deployment: "sites", Commit: strings.Repeat("a", 40), Delivery: "d-1", RunID: 7, RequestedAt: at}
	for _, e := range []interface{ Encode() ([]byte, error) }{
		&sites,
		&CertRequest{Name: "api.durhack.com", Domains: []string{"api.durhack.com", "*.durhack.com"}, For: sites, RequestedAt: at},
		&NginxReload{Reason: "renewed", RequestedAt: at},
	} {
		b, err := e.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for i, fx := range testenv.Fixtures(f) {
		payload, err := os.ReadFile(fx.Path)
		if err != nil {
			f.Fatal(err)
		}
		e := sample()
		e.Event, e.Payload, e.Deployment = fx.Event, payload, "api"
		if i%3 == 0 {
			e.Payload = bytes.TrimSpace(payload) // some compact, some as captured
		}
		b, err := e.Encode()
		if err != nil {
			f.Fatalf("encode %s: %v", fx.Path, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		accepted := 0
		if e, err := DecodeGitHubEvent(data); checkDecode(t, "github-event", data, err) {
			accepted++
			if !bytes.Contains(data, e.Payload) {
				t.Fatalf("DecodeGitHubEvent(%q).Payload = %q; not the input's bytes", data, e.Payload)
			}
			roundTrip(t, data, e, DecodeGitHubEvent, func(e *GitHubEvent) *time.Time { return &e.ReceivedAt })
		}
		if e, err := DecodeNginxSites(data); checkDecode(t, "nginx-sites", data, err) {
			accepted++
			roundTrip(t, data, e, DecodeNginxSites, func(e *NginxSites) *time.Time { return &e.RequestedAt })
		}
		if e, err := DecodeCertRequest(data); checkDecode(t, "cert-request", data, err) {
			accepted++
			roundTrip(t, data, e, DecodeCertRequest, func(e *CertRequest) *time.Time {
				e.For.RequestedAt = e.For.RequestedAt.UTC() // compared through the outer time's check below
				return &e.RequestedAt
			})
		}
		if e, err := DecodeNginxReload(data); checkDecode(t, "nginx-reload", data, err) {
			accepted++
			roundTrip(t, data, e, DecodeNginxReload, func(e *NginxReload) *time.Time { return &e.RequestedAt })
		}
		if accepted > 1 {
			t.Fatalf("%d decoders accepted %q; want at most one", accepted, data)
		}
		if _, err := Peek(data); err != nil && accepted > 0 {
			t.Fatalf("Peek(%q) = %v, yet a decoder accepted it", data, err)
		}
	})
}

// checkDecode reports whether a decoder accepted data, failing the test
// if its error is not a DataErr.
func checkDecode(t *testing.T, kind string, data []byte, err error) bool {
	t.Helper()
	if err != nil {
		if !errors.As(err, new(*Error)) {
			t.Fatalf("decode %s %q: error %v is not a data error", kind, data, err)
		}
		return false
	}
	return true
}

// roundTrip checks that a decoded entry re-encodes, decodes equal (times
// compared as instants) and encodes to the same bytes a second time.
func roundTrip[T any, P interface {
	*T
	Encode() ([]byte, error)
}](t *testing.T, data []byte, e P, decode func([]byte) (P, error), when func(P) *time.Time) {
	t.Helper()
	once, err := e.Encode()
	if err != nil {
		t.Fatalf("decoded %q, but Encode() = %v", data, err)
	}
	back, err := decode(once)
	if err != nil {
		t.Fatalf("Decode(Encode(decoded %q)) = %v; encoding %q", data, err, once)
	}
	twice, err := back.Encode()
	if err != nil || !bytes.Equal(once, twice) {
		t.Fatalf("Encode() after a round trip = %q, %v; want %q", twice, err, once)
	}
	a, b := *e, *back
	ta, tb := when(&a), when(&b)
	if !ta.Equal(*tb) {
		t.Fatalf("round trip of %q changed the time: %v, then %v", data, *ta, *tb)
	}
	*ta, *tb = time.Time{}, time.Time{}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip of %q = %+v; want %+v", data, b, a)
	}
}

// TestEncodeHeadIsJSON checks that EncodeHead, which appends the head's
// bytes itself, writes what encoding/json writes for the struct.
func TestEncodeHeadIsJSON(t *testing.T) {
	for _, e := range []GitHubEvent{
		*sample(),
		{Delivery: "hook-0123", Event: "ping", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))},
		{Delivery: "d1", Event: "push", HookID: 1, Source: "gitea", Deployment: "api", ReceivedAt: time.Unix(0, 1)},
		{Delivery: "d1", Event: "push", Source: "a\"b\\c<d>&\u2028é\x01\xff", ReceivedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		got, err := e.EncodeHead()
		if err != nil {
			t.Fatalf("EncodeHead(%+v) = %v", e, err)
		}
		m := e
		m.Version, m.Kind, m.ReceivedAt, m.Payload = Version, KindGitHubEvent, e.ReceivedAt.UTC(), json.RawMessage("{}")
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if want = bytes.TrimSuffix(want, []byte("{}}")); !bytes.Equal(got, want) {
			t.Errorf("EncodeHead(%+v) = %s; want %s", e, got, want)
		}
	}
}

// TestEncodeChecksAReplacedPayload: Encode skips checking only the very
// payload DecodeGitHubEvent checked; one replaced since is checked.
func TestEncodeChecksAReplacedPayload(t *testing.T) {
	good, _ := sample().Encode()
	e, err := DecodeGitHubEvent(good)
	if err != nil {
		t.Fatal(err)
	}
	out := *e // as dh-route forwards it
	out.Deployment = "api"
	if _, err := out.Encode(); err != nil {
		t.Errorf("Encode(decoded) = %v", err)
	}
	for _, p := range []string{`[1]`, `{"a":`, `{}, "kind": "x"`} {
		out.Payload = json.RawMessage(p)
		if _, err := out.Encode(); !errors.As(err, new(*Error)) {
			t.Errorf("Encode(payload %s) = %v; want a data error", p, err)
		}
	}
}
