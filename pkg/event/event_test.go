package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
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
		{"bad delivery", strings.Replace(string(good), "72d3162e", "../..", 1), "delivery id"},
		{"bad event", strings.Replace(string(good), `"push"`, `"push; rm"`, 1), "event name"},
		{"no time", strings.Replace(string(good), `"received_at"`, `"x"`, 1), "received_at"},
		{"payload not an object", `{"version":1,"kind":"github-event","delivery":"d1","event":"push","received_at":"2026-11-22T09:30:00Z","payload":[1]}`, "not a JSON object"},
	} {
		_, err := DecodeGitHubEvent([]byte(tc.data))
		if sysexits.Code(err) != sysexits.DataErr || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeGitHubEvent() = %v; want a data error containing %q", tc.name, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := sample().Encode()
	f.Add(good)
	f.Add([]byte(`{"version":1,"kind":"github-event"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeGitHubEvent(data)
		if err != nil {
			if sysexits.Code(err) != sysexits.DataErr {
				t.Fatalf("DecodeGitHubEvent() error %v is not a data error", err)
			}
			return
		}
		again, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode(decoded) = %v", err)
		}
		if _, err := DecodeGitHubEvent(again); err != nil {
			t.Fatalf("DecodeGitHubEvent(Encode(decoded)) = %v", err)
		}
	})
}
