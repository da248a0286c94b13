package event

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStageEntries(t *testing.T) {
	sites := NginxSites{Deployment: "sites", Commit: strings.Repeat("a", 40), Delivery: "d-1", RunID: 7, RequestedAt: time.Now()}
	data, err := sites.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeNginxSites(data)
	if err != nil || back.Kind != KindNginxSites || back.Version != Version || back.Commit != sites.Commit || back.RunID != 7 {
		t.Fatalf("round trip of %s = %+v, %v", data, back, err)
	}
	req := CertRequest{Name: "api.durhack.com", Domains: []string{"api.durhack.com", "*.durhack.com"}, For: sites, RequestedAt: time.Now()}
	if data, err = req.Encode(); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeCertRequest(data); err != nil || got.For.Deployment != "sites" || len(got.Domains) != 2 {
		t.Fatalf("round trip of %s = %+v, %v", data, got, err)
	}
	if _, err := DecodeNginxSites(data); !errors.As(err, new(*Error)) {
		t.Errorf("a cert-request decoded as nginx-sites: %v; want DataErr", err)
	}
	reload := NginxReload{Reason: "renewed", RequestedAt: time.Now()}
	if data, err = reload.Encode(); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeNginxReload(data); err != nil || got.Reason != "renewed" {
		t.Fatalf("round trip of %s = %+v, %v", data, got, err)
	}

	for _, bad := range []CertRequest{
		{Name: "../etc", Domains: []string{"a.example.org"}, For: sites, RequestedAt: time.Now()},
		{Name: "a.org", Domains: []string{"a..org"}, For: sites, RequestedAt: time.Now()},
		{Name: "a.org", Domains: []string{"$(reboot).org"}, For: sites, RequestedAt: time.Now()},
		{Name: "a.org", Domains: []string{"-d"}, For: sites, RequestedAt: time.Now()},
		{Name: "a.org", Domains: nil, For: sites, RequestedAt: time.Now()},
		{Name: "a.org", Domains: []string{"a.org"}, RequestedAt: time.Now()},
	} {
		if _, err := bad.Encode(); !errors.As(err, new(*Error)) {
			t.Errorf("Encode(%+v) = %v; want DataErr", bad, err)
		}
	}
}

// A deploy request's ref is checked by ident.ParseRef, git's rules, not
// by a looser pattern of its own (which let these through).
func TestDeployRequestRef(t *testing.T) {
	good := DeployRequest{Delivery: "d-1", Deployment: "api", Ref: "refs/heads/main", ReceivedAt: time.Now()}
	if _, err := good.Encode(); err != nil {
		t.Fatalf("Encode(%+v) = %v; want no error", good, err)
	}
	for _, ref := range []string{"refs/heads/-x", "refs/heads/a.lock", "refs/heads/a/", "refs/heads/.hidden", "refs/tags/v1.", "refs/heads/a..b", "refs/pull/1/head"} {
		bad := good
		bad.Ref = ref
		if _, err := bad.Encode(); !errors.As(err, new(*Error)) {
			t.Errorf("Encode with ref %q = %v; want DataErr", ref, err)
		}
	}
}
