package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

func TestCerts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.NewMigrated(t))

	if _, err := s.GetCert(ctx, "a.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCert(%q) before any = %v; want ErrNotFound", "a.test", err)
	}
	next := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	waiting := store.Cert{Name: "a.test", Domains: []string{"a.test", "www.a.test"}, State: store.CertWaiting,
		Entry: "e1.json", Attempts: 1, LastError: "Challenge failed", NextTry: next}
	if err := s.PutCert(ctx, waiting); err != nil {
		t.Fatalf("PutCert(waiting) = %v", err)
	}
	got, err := s.GetCert(ctx, "a.test")
	if err != nil {
		t.Fatalf("GetCert(%q) = %v", "a.test", err)
	}
	if got.State != store.CertWaiting || got.Attempts != 1 || got.Entry != "e1.json" || got.LastError != "Challenge failed" ||
		!got.NextTry.Equal(next) || !slices.Equal(got.Domains, waiting.Domains) || !got.IssuedAt.IsZero() || got.UpdatedAt.IsZero() {
		t.Errorf("GetCert(%q) = %+v; want %+v", "a.test", got, waiting)
	}

	issued := store.Cert{Name: "a.test", Domains: []string{"a.test"}, State: store.CertIssued, Entry: "e1.json",
		IssuedAt: time.Now()}
	if err := s.PutCert(ctx, issued); err != nil {
		t.Fatalf("PutCert(issued) = %v", err)
	}
	got, err = s.GetCert(ctx, "a.test")
	if err != nil || got.State != store.CertIssued || got.Attempts != 0 || got.LastError != "" || !got.NextTry.IsZero() ||
		got.IssuedAt.IsZero() || !slices.Equal(got.Domains, []string{"a.test"}) {
		t.Errorf("GetCert(%q) after issue = %+v, %v; want issued, no error, no next try", "a.test", got, err)
	}
	if err := s.PutCert(ctx, store.Cert{Name: "b.test", Domains: []string{"b.test"}, State: "bogus"}); err == nil {
		t.Errorf("PutCert(state %q) = nil; want a constraint error", "bogus")
	}
	if err := s.PutCert(ctx, store.Cert{Name: "b.test", Domains: []string{"b.test"}, State: store.CertFailed}); err != nil {
		t.Fatalf("PutCert(b.test) = %v", err)
	}
	all, err := s.ListCerts(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "a.test" || all[1].Name != "b.test" {
		t.Errorf("ListCerts() = %+v, %v; want a.test, b.test", all, err)
	}

	// The expiry dh-cert reads from the certificate: kept by PutCert's
	// caller, set alone by SetCertExpiry, only for a certificate it records.
	notAfter := time.Date(2027, 3, 6, 8, 30, 0, 0, time.UTC)
	if ok, err := s.SetCertExpiry(ctx, "a.test", notAfter); !ok || err != nil {
		t.Errorf("SetCertExpiry(a.test) = %v, %v; want true, nil", ok, err)
	}
	if got, err := s.GetCert(ctx, "a.test"); err != nil || !got.NotAfter.Equal(notAfter) || got.State != store.CertIssued {
		t.Errorf("GetCert(a.test) after SetCertExpiry = %+v, %v; want not_after %v, still issued", got, err, notAfter)
	}
	if ok, err := s.SetCertExpiry(ctx, "nosuch.test", notAfter); ok || err != nil {
		t.Errorf("SetCertExpiry(nosuch.test) = %v, %v; want false, nil (not a certificate dh-cert records)", ok, err)
	}
}

func TestCertAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.NewMigrated(t))
	one := 1
	start := time.Now()
	rows := []store.CertAttempt{
		{Name: "a.test", Domains: []string{"a.test"}, Command: store.CertCommandCertonly, Entry: "e1.json",
			StartedAt: start, ExitCode: &one, Error: "Challenge failed"},
		{Command: store.CertCommandRenew, StartedAt: start, OK: true},
		{Name: "a.test", Domains: []string{"a.test"}, Command: store.CertCommandCertonly, Entry: "e1.json",
			StartedAt: start, OK: true},
	}
	for i, a := range rows {
		id, err := s.InsertCertAttempt(ctx, a)
		if err != nil || id == 0 {
			t.Fatalf("InsertCertAttempt(#%d) = %d, %v", i, id, err)
		}
	}
	if _, err := s.InsertCertAttempt(ctx, store.CertAttempt{Command: "revoke", StartedAt: start}); err == nil {
		t.Errorf("InsertCertAttempt(command %q) = nil; want a constraint error", "revoke")
	}
	got, err := s.ListCertAttempts(ctx, "a.test", 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("ListCertAttempts(%q) = %+v, %v; want 2", "a.test", got, err)
	}
	if !got[0].OK || got[1].OK || got[1].Error != "Challenge failed" || got[1].ExitCode == nil || *got[1].ExitCode != 1 ||
		got[0].ExitCode != nil || got[1].FinishedAt.IsZero() {
		t.Errorf("ListCertAttempts(%q) = %+v; want the success first, then the failure with its exit code", "a.test", got)
	}
	all, err := s.ListCertAttempts(ctx, "", 2)
	if err != nil || len(all) != 2 || all[1].Command != store.CertCommandRenew || all[1].Name != "" {
		t.Errorf("ListCertAttempts(\"\", 2) = %+v, %v; want the last two, the renew second", all, err)
	}
}
