package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

func TestNginxInstalls(t *testing.T) {
	ctx := context.Background()
	s := open(t, storetest.NewMigrated(t))
	a, err := s.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindSites, Deployment: "sites",
		Commit: "c1", Delivery: "d1", RunID: 7})
	if err != nil {
		t.Fatalf("StartNginxInstall() = %v", err)
	}
	err = s.FinishNginxInstall(ctx, a, store.NginxInstall{Outcome: store.NginxPartial,
		Installed: []string{"/etc/nginx/conf.d/a.conf"}, Pending: []string{"b"}, Rejected: []string{"c: bad"}, Error: "refused"})
	if err != nil {
		t.Fatalf("FinishNginxInstall() = %v", err)
	}
	b, err := s.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindReload})
	if err != nil {
		t.Fatalf("StartNginxInstall(reload) = %v", err)
	}
	if err := s.FinishNginxInstall(ctx, b+100, store.NginxInstall{Outcome: store.NginxSucceeded}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishNginxInstall(unknown) = %v; want ErrNotFound", err)
	}
	if err := s.FinishNginxInstall(ctx, b, store.NginxInstall{Outcome: "bogus"}); err == nil {
		t.Errorf("FinishNginxInstall(outcome bogus) = nil; want the CHECK constraint's error")
	}
	c, _ := s.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindSites, Deployment: "other"})
	if n, err := s.InterruptNginxInstalls(ctx); n != 2 || err != nil {
		t.Errorf("InterruptNginxInstalls() = %d, %v; want 2, nil", n, err)
	}

	all, err := s.NginxInstalls(ctx, "", 0)
	if err != nil || len(all) != 3 || all[0].ID != c || all[2].ID != a {
		t.Fatalf("NginxInstalls(all) = %+v, %v; want 3 rows, newest first", all, err)
	}
	if all[1].Outcome != store.NginxInterrupted || all[1].Kind != store.NginxKindReload || all[1].FinishedAt.IsZero() {
		t.Errorf("reload row %+v; want interrupted, finished", all[1])
	}
	got, err := s.NginxInstalls(ctx, "sites", 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("NginxInstalls(sites, 1) = %+v, %v; want 1 row", got, err)
	}
	r := got[0]
	if r.Outcome != store.NginxPartial || r.RunID != 7 || r.Commit != "c1" || r.Delivery != "d1" || r.Error != "refused" ||
		!slices.Equal(r.Installed, []string{"/etc/nginx/conf.d/a.conf"}) || !slices.Equal(r.Pending, []string{"b"}) ||
		!slices.Equal(r.Rejected, []string{"c: bad"}) || len(r.Removed) != 0 || r.FinishedAt.IsZero() {
		t.Errorf("row %+v; want what was recorded", r)
	}
}
