package route_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// deployments follow the fixtures' repositories: two on Hello-World's
// master (fan-out), one on its tags, one disabled, one that takes no push.
const deployments = `
[deployments.hello]
repository = "Codertocat/Hello-World"
branches   = ["master"]
path       = "/srv/hello"

[deployments.hello-mirror]
repository = "codertocat/hello-world"
branches   = ["master"]
path       = "/srv/hello-mirror"

[deployments.hello-tags]
repository = "Codertocat/Hello-World"
branches   = ["release"]
tags       = ["simple-*"]
path       = "/srv/hello-tags"

[deployments.argo]
repository = "jessesuen/test-repo"
branches   = ["master"]
path       = "/srv/argo"

[deployments.drone]
repository = "bradrydzewski/drone-test-go"
branches   = ["feature-*"]
tags       = ["v*"]
path       = "/srv/drone"

[deployments.agoda]
repository = "agoda-com/samsahai-example"
branches   = ["phantomnat-patch-1"]
path       = "/srv/agoda"
enabled    = false

[deployments.packit]
repository = "packit-service/hello-world"
branches   = ["build-branch"]
events     = ["release"]
path       = "/srv/packit"

[deployments.probot]
repository = "bkeepers-inc/test"
branches   = ["bkeepers-patch-*"]
path       = "/srv/probot"
`

// fixtureWant is the decision for each (repository, ref) of a push in
// MANIFEST.tsv that is not a deletion; any other push is not followed.
var fixtureWant = map[string]route.Decision{
	"Codertocat/Hello-World refs/heads/master":                 {Status: store.StatusRouted, Deployments: []string{"hello", "hello-mirror"}},
	"Codertocat/Hello-World refs/tags/simple-tag":              {Status: store.StatusRouted, Deployments: []string{"hello-tags"}},
	"jessesuen/test-repo refs/heads/master":                    {Status: store.StatusRouted, Deployments: []string{"argo"}},
	"jessesuen/test-repo refs/tags/v1.0":                       {Status: store.StatusVoided, Reason: route.ReasonNotFollowed},
	"bradrydzewski/drone-test-go refs/heads/feature-branch":    {Status: store.StatusRouted, Deployments: []string{"drone"}},
	"bradrydzewski/drone-test-go refs/tags/v0.0.1":             {Status: store.StatusRouted, Deployments: []string{"drone"}},
	"agoda-com/samsahai-example refs/heads/phantomnat-patch-1": {Status: store.StatusVoided, Reason: route.ReasonDisabled},
	"packit-service/hello-world refs/heads/build-branch":       {Status: store.StatusVoided, Reason: route.ReasonEventNotTaken},
	"bkeepers-inc/test refs/heads/bkeepers-patch-3":            {Status: store.StatusRouted, Deployments: []string{"probot"}},
}

func want(f testenv.Fixture) route.Decision {
	switch {
	case f.Event == route.EventPing:
		return route.Decision{Status: store.StatusPing}
	case f.Event != route.EventPush:
		return route.Decision{Status: store.StatusVoided, Reason: route.ReasonEventNotTaken}
	case strings.Contains(f.What, "deletion"):
		return route.Decision{Status: store.StatusVoided, Reason: route.ReasonDeleted}
	}
	if d, ok := fixtureWant[f.Repository+" "+f.Ref]; ok {
		return d
	}
	return route.Decision{Status: store.StatusVoided, Reason: route.ReasonNotFollowed}
}

// rig is a queue directory, a migrated database and a configuration.
type rig struct {
	dir    string // queue_dir
	file   string // the configuration file
	cfg    *config.Config
	url    string
	st     *store.Store
	main   *queue.Queue
	logger *slog.Logger
}

func newRig(t testing.TB, url string) *rig {
	t.Helper()
	r := &rig{dir: t.TempDir(), url: url, logger: slog.New(slog.DiscardHandler)}
	r.file = filepath.Join(t.TempDir(), "config.toml")
	r.writeConfig(t, deployments)
	var err error
	if r.cfg, err = config.Load(r.file); err != nil {
		t.Fatalf("config.Load() = %v", err)
	}
	if r.st, err = store.Open(context.Background(), url); err != nil {
		t.Fatalf("store.Open() = %v", err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.main = queue.Open(r.cfg.QueuePath(config.MainQueue))
	// dh-route consumes queues/main and queues/status; as installed, both
	// exist before it starts.
	for _, q := range []*queue.Queue{r.main, queue.Open(r.cfg.QueuePath(config.StatusQueue))} {
		if err := q.Init(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) writeConfig(t testing.TB, deployments string) {
	t.Helper()
	doc := fmt.Sprintf("queue_dir = %q\ndatabase_url = %q\n%s", r.dir, r.url, deployments)
	if err := os.WriteFile(r.file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// entry encodes a delivery of payload.
func entry(t testing.TB, delivery, name string, payload []byte) []byte {
	t.Helper()
	ev := event.GitHubEvent{Delivery: delivery, Event: name, HookID: 42, ReceivedAt: time.Now(), Payload: payload}
	data, err := ev.Encode()
	if err != nil {
		t.Fatalf("Encode(%s) = %v", delivery, err)
	}
	return data
}

func (r *rig) publish(t testing.TB, data []byte) string {
	t.Helper()
	name, err := r.main.Publish(data)
	if err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	return name
}

// drain routes queues/main until it is empty.
func (r *rig) drain(t testing.TB) {
	t.Helper()
	c, err := r.main.Lock(t.Context(), true)
	if err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	defer c.Close()
	router := route.New(r.cfg, r.st, route.Options{Logger: r.logger})
	if err := c.RunBatch(context.Background(), router.HandleBatch, queue.Options{Once: true}); err != nil {
		t.Fatalf("Run(once) = %v", err)
	}
}

// forwarded counts the entries per delivery in each deployment queue
// (waiting or failed), checking each names its queue's deployment.
func forwarded(t testing.TB, cfg *config.Config) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, name := range cfg.DeploymentNames() {
		dir := cfg.QueuePath(name)
		for _, sub := range []string{dir, filepath.Join(dir, queue.FailedDir)} {
			des, err := os.ReadDir(sub)
			if err != nil {
				continue
			}
			for _, de := range des {
				if !de.Type().IsRegular() || !queue.IsEntry(de.Name()) {
					continue
				}
				data, err := os.ReadFile(filepath.Join(sub, de.Name()))
				if err != nil {
					t.Fatal(err)
				}
				var delivery, deployment string
				if req, rerr := event.DecodeDeployRequest(data); rerr == nil {
					delivery, deployment = req.Delivery, req.Deployment
				} else {
					var ev *event.GitHubEvent
					if ev, err = event.DecodeGitHubEvent(data); err == nil {
						delivery, deployment = ev.Delivery, ev.Deployment
					}
				}
				if err != nil || deployment != name {
					t.Fatalf("entry %s in queue %s is for %q (%v); want an entry for %s", de.Name(), name, deployment, err, name)
				}
				if out[delivery] == nil {
					out[delivery] = map[string]int{}
				}
				out[delivery][name]++
			}
		}
	}
	return out
}

func TestFixtures(t *testing.T) {
	t.Parallel()
	r := newRig(t, storetest.NewMigrated(t))
	fixtures := testenv.Fixtures(t)

	// Two bad entries among the fixtures: not JSON at all, and a push whose
	// payload lacks "after" (its delivery id is readable).
	r.publish(t, []byte("not json\n"))
	for i, f := range fixtures {
		payload, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		r.publish(t, entry(t, fmt.Sprintf("fixture-%02d", i), f.Event, payload))
		if i == len(fixtures)/2 {
			r.publish(t, entry(t, "bad-push", "push", []byte(`{"ref":"refs/heads/master","repository":{"full_name":"Codertocat/Hello-World"}}`)))
		}
	}
	r.drain(t)

	if names, _ := r.main.List(); len(names) != 0 {
		t.Errorf("queues/main after draining = %v; want empty", names)
	}
	failed, _ := r.main.Failed()
	if len(failed) != 2 {
		t.Fatalf("queues/main/failed = %v; want the 2 bad entries", failed)
	}
	for _, name := range failed {
		if why, err := r.main.ReadFailure(name); err != nil || why.Error == "" {
			t.Errorf("ReadFailure(%s) = %+v, %v; want a reason", name, why, err)
		}
	}
	ctx := context.Background()
	if row, err := r.st.GetEvent(ctx, "bad-push"); err != nil || row.Status != store.StatusFailed || !strings.Contains(row.Reason, "after") {
		t.Errorf("GetEvent(bad-push) = %+v, %v; want failed, naming the missing after", row, err)
	}

	got := forwarded(t, r.cfg)
	seen := map[string]bool{}
	for i, f := range fixtures {
		delivery := fmt.Sprintf("fixture-%02d", i)
		w := want(f)
		seen[f.Repository+" "+f.Ref] = true
		row, err := r.st.GetEvent(ctx, delivery)
		if err != nil {
			t.Errorf("GetEvent(%s: %s) = %v", delivery, f.Path, err)
			continue
		}
		if row.Status != w.Status || (w.Status != store.StatusPing && row.Reason != w.Reason) ||
			!slices.Equal(row.Deployments, w.Deployments) && !(len(row.Deployments) == 0 && len(w.Deployments) == 0) {
			t.Errorf("Route(%q) = %s %q %v; want %s %q %v", f.Path, row.Status, row.Reason, row.Deployments, w.Status, w.Reason, w.Deployments)
		}
		if f.Event == route.EventPush && (row.Ref != f.Ref || !strings.EqualFold(row.Repository, f.Repository) || row.After != f.After) {
			t.Errorf("Route(%q) recorded %s %s %s; want %s %s %s", f.Path, row.Repository, row.Ref, row.After, f.Repository, f.Ref, f.After)
		}
		if f.Event == route.EventPing && (row.HookID != 42 || !strings.Contains(row.Reason, "events=")) {
			t.Errorf("Route(%q) recorded ping %d %q; want hook 42 and the hook's events", f.Path, row.HookID, row.Reason)
		}
		var queued []string
		for name, n := range got[delivery] {
			if n != 1 {
				t.Errorf("Route(%q): %d entries in queue %s; want 1", f.Path, n, name)
			}
			queued = append(queued, name)
		}
		slices.Sort(queued)
		if !slices.Equal(queued, w.Deployments) {
			t.Errorf("Route(%q) queued for %v; want %v", f.Path, queued, w.Deployments)
		}
	}
	for key := range fixtureWant {
		if !seen[key] {
			t.Errorf("no fixture pushes to %s; the table expects one", key)
		}
	}
}

func TestDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	const d = "dup-0001"
	push := []byte(`{"ref":"refs/heads/master","before":"a1","after":"b2","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"b2"}}`)
	run := func(deployment, state string) {
		id, err := r.st.InsertRun(ctx, store.Run{Delivery: d, Deployment: deployment, State: store.RunRunning})
		if err != nil {
			t.Fatalf("InsertRun(%s) = %v", deployment, err)
		}
		if state != store.RunRunning {
			if err := r.st.FinishRun(ctx, id, store.RunResult{State: state}); err != nil {
				t.Fatalf("FinishRun(%s) = %v", deployment, err)
			}
		}
	}
	for _, step := range []struct {
		name   string
		before func()
		status string
		queued map[string]int // entries in the deployment queues afterwards
	}{
		{"first", func() {}, store.StatusRouted, map[string]int{"hello": 1, "hello-mirror": 1}},
		{"waiting in queues", func() {}, store.StatusDuplicate, map[string]int{"hello": 1, "hello-mirror": 1}},
		{"running and succeeded", func() { run("hello", store.RunSucceeded); run("hello-mirror", store.RunRunning) }, store.StatusDuplicate, map[string]int{"hello": 1, "hello-mirror": 1}},
		{"one failed", func() {
			if _, err := r.st.InsertRun(ctx, store.Run{Delivery: d, Deployment: "hello-mirror", Attempt: 2, State: store.RunFailed}); err != nil {
				t.Fatal(err)
			}
		}, store.StatusRouted, map[string]int{"hello": 1, "hello-mirror": 2}},
		{"failed one forwarded again, waiting", func() {}, store.StatusDuplicate, map[string]int{"hello": 1, "hello-mirror": 2}},
	} {
		step.before()
		r.publish(t, entry(t, d, "push", push))
		r.drain(t)
		row, err := r.st.GetEvent(ctx, d)
		if err != nil || row.Status != step.status {
			t.Errorf("%s: Route(%s) = %s (%v); want %s", step.name, d, row.Status, err, step.status)
		}
		if got := forwarded(t, r.cfg)[d]; !mapsEqual(got, step.queued) {
			t.Errorf("%s: Route(%s) queued %v; want %v", step.name, d, got, step.queued)
		}
	}
}

// One batch holding a delivery three times, a bad entry and a delivery
// recorded before: each GUID gets one row counting its arrivals, each
// deployment one entry per delivery, the bad entry goes to failed/.
func TestBatchDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	push := []byte(`{"ref":"refs/heads/master","before":"a1","after":"b2","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"b2"}}`)
	r.publish(t, entry(t, "old-0001", "push", push))
	r.drain(t)
	r.publish(t, entry(t, "dup-0001", "push", push))
	r.publish(t, entry(t, "old-0001", "push", push))
	r.publish(t, entry(t, "dup-0001", "push", push))
	bad := r.publish(t, []byte(`{"version":1,"kind":"github-event","delivery":"bad-0001"}`))
	r.publish(t, entry(t, "dup-0001", "push", push))
	r.drain(t)
	for _, want := range []struct {
		delivery   string
		status     string
		deliveries int
	}{{"dup-0001", store.StatusDuplicate, 3}, {"old-0001", store.StatusDuplicate, 2}, {"bad-0001", store.StatusFailed, 1}} {
		row, err := r.st.GetEvent(ctx, want.delivery)
		if err != nil || row.Status != want.status || row.Deliveries != want.deliveries {
			t.Errorf("GetEvent(%s) = %s, %d deliveries (%v); want %s, %d", want.delivery, row.Status, row.Deliveries, err, want.status, want.deliveries)
		}
		if want.status == store.StatusFailed {
			continue
		}
		if got := forwarded(t, r.cfg)[want.delivery]; !mapsEqual(got, map[string]int{"hello": 1, "hello-mirror": 1}) {
			t.Errorf("%s queued %v; want one entry in hello and hello-mirror", want.delivery, got)
		}
	}
	if failed, _ := r.main.Failed(); len(failed) != 1 || failed[0] != bad {
		t.Errorf("failed/ holds %v; want [%s]", failed, bad)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestResume shows that handling an entry again after a crash (the same
// entry name, its decision already recorded) completes its forwarding
// without doubling it.
func TestResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	router := route.New(r.cfg, r.st, route.Options{})
	data := entry(t, "resume-1", "push", []byte(`{"ref":"refs/heads/master","after":"c3","repository":{"full_name":"Codertocat/Hello-World"}}`))
	e := &queue.Entry{Name: "00000000000000000001-1-00000000.json", Data: data}
	if err := router.Handle(ctx, e); err != nil {
		t.Fatalf("Handle(%s) = %v", e.Name, err)
	}
	// A crash before one of the publishes: take hello-mirror's entry away.
	mirror := queue.Open(r.cfg.QueuePath("hello-mirror"))
	names, _ := mirror.List()
	for _, n := range names {
		os.Remove(filepath.Join(mirror.Dir(), n))
	}
	for range 2 {
		if err := router.Handle(ctx, e); err != nil {
			t.Fatalf("Handle(%s) again = %v", e.Name, err)
		}
	}
	if got, want := forwarded(t, r.cfg)["resume-1"], map[string]int{"hello": 1, "hello-mirror": 1}; !mapsEqual(got, want) {
		t.Errorf("Handle(%s) three times, one publish lost: queued %v; want %v", e.Name, got, want)
	}
	if row, err := r.st.GetEvent(ctx, "resume-1"); err != nil || row.Status != store.StatusRouted {
		t.Errorf("GetEvent(resume-1) = %+v, %v; want routed", row, err)
	}
}

// privateRig is a rig on a cluster of its own, which the test may stop.
func privateRig(t *testing.T) (*storetest.Cluster, *rig) {
	t.Helper()
	cluster, url := storetest.Private(t)
	if _, _, err := store.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	return cluster, newRig(t, url)
}

// TestDatabaseDownOnce: without Options.Wait (run --once, replay) an
// outage is a temporary failure, so the entry stays queued.
func TestDatabaseDownOnce(t *testing.T) {
	t.Parallel()
	cluster, r := privateRig(t)
	data := entry(t, "down-1", "push", []byte(`{"ref":"refs/heads/master","after":"d4","repository":{"full_name":"Codertocat/Hello-World"}}`))
	router := route.New(r.cfg, r.st, route.Options{})
	cluster.Stop(t)
	err := router.Handle(context.Background(), &queue.Entry{Name: "00000000000000000001-1-00000000.json", Data: data})
	if !queue.IsRetry(err) {
		t.Errorf("Handle() with the database down = %v (code %d); want code 75", err, sysexits.Code(err))
	}
	cluster.Start(t)
}

// A deploy request (POST /deploy/NAME by token) is recorded and forwarded
// as it is to its deployment's queue only; one for a deployment the
// configuration no longer has is voided.
func TestDeployRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	for _, req := range []event.DeployRequest{
		{Delivery: "token-1", Deployment: "hello", Ref: "refs/heads/master"},
		{Delivery: "token-2", Deployment: "gone"},
	} {
		req.ReceivedAt = time.Now()
		data, err := req.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r.publish(t, data)
	}
	r.drain(t)
	if row, err := r.st.GetEvent(ctx, "token-1"); err != nil || row.Status != store.StatusRouted || row.Event.Event != route.EventDeployRequest ||
		row.Repository != "Codertocat/Hello-World" || row.Ref != "refs/heads/master" {
		t.Errorf("token-1 = %+v, %v; want routed, event deploy", row, err)
	}
	if row, err := r.st.GetEvent(ctx, "token-2"); err != nil || row.Status != store.StatusVoided || row.Reason != route.ReasonNotFollowed {
		t.Errorf("token-2 = %+v, %v; want voided not-followed", row, err)
	}
	q := queue.Open(r.cfg.QueuePath("hello"))
	names, _ := q.List()
	if len(names) != 1 {
		t.Fatalf("hello's queue holds %v; want the request", names)
	}
	data, _ := os.ReadFile(filepath.Join(q.Dir(), names[0]))
	if req, err := event.DecodeDeployRequest(data); err != nil || req.Delivery != "token-1" {
		t.Errorf("forwarded %s = %+v, %v", data, req, err)
	}
	for name, n := range forwarded(t, r.cfg) {
		if name != "token-1" && len(n) > 0 {
			t.Errorf("%s forwarded to %v", name, n)
		}
	}
}

// An entry the database refuses for a reason no check foresaw fails alone:
// the rest of its batch is routed. (A trigger plays the refusing database.)
func TestPoisonEntryFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
		BEGIN
			IF NEW.delivery = 'poison-1' THEN RAISE EXCEPTION 'poisoned delivery'; END IF;
			RETURN NEW;
		END $$ LANGUAGE plpgsql;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();`)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, url)
	push := []byte(`{"ref":"refs/heads/master","before":"a1","after":"b2","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"b2"}}`)
	r.publish(t, entry(t, "good-1", "push", push))
	poison := r.publish(t, entry(t, "poison-1", "push", push))
	r.publish(t, entry(t, "good-2", "push", push))
	r.drain(t)
	for _, d := range []string{"good-1", "good-2"} {
		if row, err := r.st.GetEvent(ctx, d); err != nil || row.Status != store.StatusRouted {
			t.Errorf("%s = %+v, %v; want routed", d, row, err)
		}
	}
	failed, _ := r.main.Failed()
	if len(failed) != 1 || failed[0] != poison {
		t.Errorf("failed/ holds %v; want only the poisoned entry %s", failed, poison)
	}
	if why, err := r.main.ReadFailure(poison); err != nil || !strings.Contains(why.Error, "poisoned delivery") {
		t.Errorf("its reason %+v, %v; want the database's words", why, err)
	}
}

// A deployment queue that cannot be created fails only the entries routed
// to it, each alone, with a reason naming the queue; the rest of the batch
// is routed, and the event table never says "routed" for a delivery whose
// entries are not all durable. Replayed once the queue is fixed, the entry
// is routed without doubling what its first attempt published.
func TestBrokenDeploymentQueueFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, storetest.NewMigrated(t))
	broken := r.cfg.QueuePath("hello-mirror")
	// A file where the queue's directory should be: mkdir fails, even as
	// root (for whom a permission denied cannot be staged).
	if err := os.WriteFile(broken, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	master := []byte(`{"ref":"refs/heads/master","before":"a1","after":"b2","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"b2"}}`)
	tag := func(n int) []byte {
		return fmt.Appendf(nil, `{"ref":"refs/tags/simple-%d","before":"a1","after":"c%d","repository":{"full_name":"Codertocat/Hello-World"},"head_commit":{"id":"c%d"}}`, n, n, n)
	}
	fanout := r.publish(t, entry(t, "fanout-1", "push", master))
	r.publish(t, entry(t, "tag-1", "push", tag(1)))
	r.publish(t, entry(t, "tag-2", "push", tag(2)))
	r.drain(t) // fails the test if routing stops

	failed, _ := r.main.Failed()
	if !slices.Equal(failed, []string{fanout}) {
		t.Fatalf("queues/main/failed holds %v; want only %s", failed, fanout)
	}
	if why, err := r.main.ReadFailure(fanout); err != nil || !strings.Contains(why.Error, broken) {
		t.Errorf("its reason %+v, %v; want one naming %s", why, err, broken)
	}
	if row, err := r.st.GetEvent(ctx, "fanout-1"); err != nil || row.Status != store.StatusFailed || !strings.Contains(row.Reason, broken) {
		t.Errorf("GetEvent(fanout-1) = %s %q, %v; want failed, naming %s", row.Status, row.Reason, err, broken)
	}
	for _, d := range []string{"tag-1", "tag-2"} {
		if row, err := r.st.GetEvent(ctx, d); err != nil || row.Status != store.StatusRouted {
			t.Errorf("GetEvent(%s) = %s, %v; want routed", d, row.Status, err)
		}
	}
	got := forwarded(t, r.cfg)
	for _, d := range []string{"tag-1", "tag-2"} {
		if !mapsEqual(got[d], map[string]int{"hello-tags": 1}) {
			t.Errorf("%s is in queues %v; want hello-tags once", d, got[d])
		}
	}

	// Fixed, then replayed: routed, one entry per deployment.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	router := route.New(r.cfg, r.st, route.Options{Logger: r.logger})
	if err := queue.Replay(ctx, filepath.Join(r.main.Dir(), queue.FailedDir, fanout), router.Handle); err != nil {
		t.Fatalf("Replay(%s) = %v", fanout, err)
	}
	if row, err := r.st.GetEvent(ctx, "fanout-1"); err != nil || row.Status != store.StatusRouted {
		t.Errorf("GetEvent(fanout-1) after replay = %s, %v; want routed", row.Status, err)
	}
	if got = forwarded(t, r.cfg); !mapsEqual(got["fanout-1"], map[string]int{"hello": 1, "hello-mirror": 1}) {
		t.Errorf("fanout-1 is in queues %v; want hello and hello-mirror once each", got["fanout-1"])
	}
}

// A deploy request for a ref its deployment does not follow is voided,
// whoever wrote it into queues/main (issue 17, finding 4).
func TestMatchRequestFollowsRefs(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(deployments))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		deployment, ref string
		want            string
	}{
		{"drone", "", store.StatusRouted},
		{"drone", "refs/heads/feature-x", store.StatusRouted},
		{"drone", "refs/tags/v1.2", store.StatusRouted},
		{"drone", "refs/heads/main", store.StatusVoided},
		{"drone", "refs/tags/nightly", store.StatusVoided},
		{"hello", "refs/heads/feature-unreviewed", store.StatusVoided},
	} {
		req := &event.DeployRequest{Delivery: "token-1", Deployment: tc.deployment, Ref: tc.ref, ReceivedAt: time.Now()}
		if _, d := route.MatchRequest(cfg, req); d.Status != tc.want {
			t.Errorf("MatchRequest(%s, %q) = %+v; want %s", tc.deployment, tc.ref, d, tc.want)
		}
	}
}
