package e2e

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// chaosRig is a rig with one steps deployment "app" of e2e/app, whose
// commits (a linear history, so coalescing is legal) are all pushed
// before the stream starts, and dh-receive, dh-route and dh-deploy@app
// running. dh-nginx and dh-cert have no work in this mix (no nginx-kind
// deployment), so they are not started.
func chaosRig(t *testing.T, commits int) (*rig, *repo) {
	r := newRig(t, rigOptions{})
	app := r.newRepo("e2e/app")
	app.push(t, app.commit(t, map[string]string{"index.html": "<h1>e2e</h1>\n"}, commits))
	r.writeConfig(r.appDeployment("app", app))
	r.migrate()
	r.acl("deployment", "app")
	r.startStages([]string{"app"})
	return r, app
}

// While deliveries are posted, a chaos loop SIGKILLs a random stage
// (dh-receive, dh-route, dh-deploy@app) and restarts it. Afterwards, once
// everything drained: nothing accepted is lost, nothing deployed twice,
// nothing stranded (drainAndCheck). make test runs N=200 deliveries and
// K=8 kills; DH_E2E_FULL=1 (make chaos) the N=2000, K=30.
func TestChaos(t *testing.T) {
	n, k, seed := 200, 8, uint64(time.Now().UnixNano())
	if fullMode() {
		n, k = 2000, 30
	}
	t.Logf("N=%d deliveries, K=%d kills, seed %d", n, k, seed)
	r, app := chaosRig(t, n/2)
	s := newStream(r, app, seed)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	type result struct {
		kills map[string]int
		err   error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		kills, err := chaos(r, s, rand.New(rand.NewPCG(seed, 1)), []string{"dh-receive", "dh-route", "dh-deploy@app"}, n, k)
		done <- result{kills, err}
	}()
	// A pace that lets dh-deploy run some pushes rather than supersede
	// nearly all of them, so that kills also land in the middle of runs.
	for i := 0; i < n; i++ {
		s.send(ctx, s.nextDelivery())
		time.Sleep(40 * time.Millisecond)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Logf("sent in %v; kills %v", time.Since(start).Round(time.Millisecond), res.kills)
	drainStart := time.Now()
	s.drainAndCheck(t, "chaos", 3*time.Minute, nil)
	t.Logf("drained in %v", time.Since(drainStart).Round(time.Millisecond))
}

// The database stops in the middle of a stream of deliveries, for 30 s
// with DH_E2E_FULL=1 (make chaos), 5 s in make test; dh-receive keeps
// accepting, the other stages wait, and after it starts again everything
// catches up: nothing lost, no duplicate runs.
func TestPostgresOutage(t *testing.T) {
	outage := 5 * time.Second
	if fullMode() {
		outage = 30 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	pace := 25 * time.Millisecond
	commits := int((outage+3*time.Second)/pace) + 10
	r, app := chaosRig(t, commits)
	s := newStream(r, app, seed)
	t.Logf("outage %v, seed %d", outage, seed)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.send(ctx, s.nextDelivery())
			time.Sleep(pace)
		}
	}()
	time.Sleep(time.Second)
	stopped := time.Now()
	if err := r.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	if err := r.pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("database down for %v", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	<-sent
	drainStart := time.Now()
	s.drainAndCheck(t, "postgres outage", 2*time.Minute, nil)
	t.Logf("caught up in %v after the stream ended", time.Since(drainStart).Round(time.Millisecond))
}
