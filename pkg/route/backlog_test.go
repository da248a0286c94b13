package route_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// A deployment queue at its [queues.deployments] max_entries holds the
// delivery routed to it, and every later one, in queues/main (a temporary
// failure, retried): nothing is dropped, failed or recorded as routed.
// Once dh-deploy made room, each is routed exactly once.
func TestFullDeploymentQueueHoldsDeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	r.writeConfig(t, deployments+"\n[queues.deployments]\nmax_entries = 1\n")
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatal(err)
	}
	tag := func(n int) []byte {
		return fmt.Appendf(nil, `{"ref":"refs/tags/simple-%d","before":"a1","after":"c%d","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"c%d"}}`, n, n, n)
	}
	master := []byte(`{"ref":"refs/heads/master","before":"a1","after":"b2","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"b2"}}`)
	r.publish(t, entry(t, "tag-1", "push", tag(1)))
	held := r.publish(t, entry(t, "tag-2", "push", tag(2)))
	later := r.publish(t, entry(t, "fanout-1", "push", master))

	run := func() error {
		c, err := r.main.Lock(ctx, true)
		if err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		defer c.Close()
		router := route.New(r.cfg, r.st, route.Options{Logger: r.logger})
		return c.RunBatch(ctx, router.HandleBatch, queue.Options{Once: true})
	}
	err = run()
	if !queue.IsRetry(err) || !strings.Contains(err.Error(), "hello-tags") {
		t.Fatalf("RunBatch(once) = %v; want a temporary failure naming the full queue hello-tags", err)
	}
	if names, _ := r.main.List(); len(names) != 2 || names[0] != held || names[1] != later {
		t.Errorf("queues/main holds %v; want the held %s and the later %s", names, held, later)
	}
	if failed, _ := r.main.Failed(); len(failed) != 0 {
		t.Errorf("queues/main/failed holds %v; want nothing", failed)
	}
	if row, err := r.st.GetEvent(ctx, "tag-2"); err == nil && row.Status == store.StatusRouted {
		t.Errorf("tag-2 recorded routed while held in queues/main")
	}

	// dh-deploy takes its entry: room again.
	hq := r.cfg.QueuePath("hello-tags")
	names, _ := queue.Open(hq).List()
	for _, n := range names {
		os.Remove(filepath.Join(hq, n))
	}
	if err := run(); err != nil {
		t.Fatalf("RunBatch(once) after room was made = %v", err)
	}
	got := forwarded(t, r.cfg)
	for d, want := range map[string]map[string]int{
		"tag-2": {"hello-tags": 1}, "fanout-1": {"hello": 1, "hello-mirror": 1},
	} {
		if !mapsEqual(got[d], want) {
			t.Errorf("%s is in queues %v; want %v", d, got[d], want)
		}
	}
}
