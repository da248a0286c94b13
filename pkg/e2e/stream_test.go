package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// The kinds of delivery a stream mixes.
const (
	kindPush       = "push"       // a push of the next commit to main, which app follows
	kindUnfollowed = "unfollowed" // a push to a branch nobody follows
	kindPing       = "ping"
	kindDuplicate  = "duplicate"  // the previous delivery again at once, same GUID
	kindRedelivery = "redelivery" // an earlier accepted delivery again, same GUID
)

// A delivery is one webhook the test posts, with what became of it.
type delivery struct {
	kind    string
	guid    string
	event   string
	payload []byte
	deploys bool // a push app must deploy (or record superseded)
	commit  string

	accepted bool // got a 2xx
}

// streamStats counts the POSTs of a stream.
type streamStats struct {
	mu        sync.Mutex
	posts     int // requests sent, retries included
	ok        int // 2xx
	status5xx int
	connErr   int // no answer: refused, reset (dh-receive killed), timeout
	other     map[int]int
	gaveUp    int // deliveries never accepted
}

// A stream makes the deliveries of a test: pushes of app's commits in
// order, mixed with the other kinds.
type stream struct {
	r       *rig
	app     *repo
	rnd     *rand.Rand
	next    int // app.commits index of the next push
	all     []*delivery
	byGUID  map[string]*delivery
	stats   streamStats
	retryOf time.Duration // how long a delivery is retried until dh-receive accepts it
	sent    atomic.Int64  // deliveries sent so far (for the chaos loop)
}

func newStream(r *rig, app *repo, seed uint64) *stream {
	return &stream{r: r, app: app, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byGUID: map[string]*delivery{}, stats: streamStats{other: map[int]int{}}, retryOf: 60 * time.Second}
}

// nextDelivery picks the next delivery: mostly pushes of the next commit
// while there are commits left.
func (s *stream) nextDelivery() *delivery {
	roll := s.rnd.IntN(100)
	var accepted []*delivery
	if roll >= 70 {
		for _, d := range s.all {
			if d.accepted {
				accepted = append(accepted, d)
			}
		}
	}
	switch {
	case roll < 45 && s.next < len(s.app.commits):
		before := github.ZeroSHA
		if s.next > 0 {
			before = s.app.commits[s.next-1]
		}
		sha := s.app.commits[s.next]
		s.next++
		return s.newDelivery(kindPush, "push", s.payload("refs/heads/main", before, sha), true, sha)
	case roll < 60:
		sha := s.app.commits[s.rnd.IntN(len(s.app.commits))]
		return s.newDelivery(kindUnfollowed, "push", s.payload(fmt.Sprintf("refs/heads/feature-%d", s.rnd.IntN(5)), github.ZeroSHA, sha), false, "")
	case roll < 70 || len(accepted) == 0:
		p := fmt.Sprintf(`{"zen":"e2e","hook_id":1,"hook":{"type":"Repository","events":["push"],"config":{"url":"http://%s/github-webhook"}},"repository":{"full_name":%q}}`,
			s.r.addr, s.app.fullName)
		return s.newDelivery(kindPing, "ping", []byte(p), false, "")
	case roll < 85:
		return s.again(kindDuplicate, accepted[len(accepted)-1])
	default:
		return s.again(kindRedelivery, accepted[s.rnd.IntN(len(accepted))])
	}
}

func (s *stream) payload(ref, before, after string) []byte {
	p, err := demo.PushPayload(s.app.fullName, ref, before, after)
	if err != nil {
		panic(err)
	}
	return p
}

func (s *stream) newDelivery(kind, event string, payload []byte, deploys bool, commit string) *delivery {
	d := &delivery{kind: kind, guid: demo.NewGUID(), event: event, payload: payload, deploys: deploys, commit: commit}
	s.byGUID[d.guid] = d
	return d
}

// again is a delivery of d's GUID and payload once more, as GitHub's
// redelivery and its rare duplicates are.
func (s *stream) again(kind string, d *delivery) *delivery {
	return &delivery{kind: kind, guid: d.guid, event: d.event, payload: d.payload, deploys: d.deploys, commit: d.commit}
}

// send posts d until dh-receive accepts it (2xx), counting every 5xx and
// every request that got no answer; it gives up after retryOf. Deliveries
// are sent one at a time, in order, as GitHub sends the pushes of one
// branch, so that app's pushes reach the queue oldest first.
func (s *stream) send(ctx context.Context, d *delivery) {
	deadline := time.Now().Add(s.retryOf)
	for ctx.Err() == nil {
		status, err := s.r.post(ctx, d.event, d.guid, d.payload)
		s.stats.mu.Lock()
		s.stats.posts++
		switch {
		case err != nil:
			s.stats.connErr++
		case status >= 200 && status < 300:
			s.stats.ok++
		case status >= 500:
			s.stats.status5xx++
		default:
			s.stats.other[status]++
		}
		s.stats.mu.Unlock()
		if err == nil && status >= 200 && status < 300 {
			d.accepted = true
			s.byGUID[d.guid].accepted = true
			break
		}
		if err == nil && status < 500 {
			break // a 4xx is a bug of the test or of dh-receive: reported, not retried
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !d.accepted {
		s.stats.mu.Lock()
		s.stats.gaveUp++
		s.stats.mu.Unlock()
	}
	s.all = append(s.all, d)
	s.sent.Add(1)
}

// runInfo is a row of runs, with what explains its end: a push that
// ended in an unexpected state is reported with these, so that a failure
// of a long random run explains itself.
type runInfo struct {
	id                                  int64
	attempt                             int
	delivery, deployment, state, commit string
	previous, trigger, errMsg, note     string
	logPath, queued                     string
}

func (ri runInfo) String() string {
	s := fmt.Sprintf("run %d (attempt %d, %s, queued %s) %s of %.12s over %.12s", ri.id, ri.attempt, ri.trigger, ri.queued,
		ri.state, ri.commit, ri.previous)
	if ri.errMsg != "" {
		s += ": " + ri.errMsg
	}
	if ri.note != "" {
		s += " [note: " + ri.note + "]"
	}
	return s
}

// explain reports a delivery that ended in an unexpected state: its event
// and route rows, its runs, one line each with the tail of the run's log,
// and the runs that made each run's previous commit live.
func (s *stream) explain(t *testing.T, guid string, runs []runInfo, all map[string][]runInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var status, reason, received, decided string
	var deliveries int
	err := s.r.db.QueryRowContext(ctx, `SELECT status, coalesce(reason, ''), received_at::text, coalesce(decided_at::text, ''), deliveries
		FROM events WHERE delivery = $1`, guid).Scan(&status, &reason, &received, &decided, &deliveries)
	t.Logf("  event: %s %q received %s decided %s, %d deliveries (%v)", status, reason, received, decided, deliveries, err)
	rows, err := s.r.db.QueryContext(ctx, `SELECT deployment, entry, routed_at::text, forwards FROM routes WHERE delivery = $1`, guid)
	if err == nil {
		for rows.Next() {
			var dep, entry, at string
			var forwards int
			if rows.Scan(&dep, &entry, &at, &forwards) == nil {
				t.Logf("  route to %s: entry %s at %s, %d forwards", dep, entry, at, forwards)
			}
		}
		rows.Close()
	}
	for _, ri := range runs {
		t.Logf("  %v", ri)
		if ri.logPath != "" {
			b, err := os.ReadFile(ri.logPath)
			if err != nil {
				t.Logf("    (log %s: %v)", ri.logPath, err)
			} else {
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				for _, l := range lines[max(0, len(lines)-15):] {
					t.Logf("    | %s", l)
				}
			}
		}
		if ri.previous == "" {
			continue
		}
		for g, rs := range all {
			for _, o := range rs {
				if o.commit == ri.previous && o.state == "succeeded" {
					t.Logf("    previous %.12s was deployed by %v of delivery %s", ri.previous, o, g)
				}
			}
		}
	}
}

// drainAndCheck waits until the rig has handled everything (bounded by
// timeout), then checks the promise: every accepted delivery has one event
// row with a final decision; each accepted push of app has exactly one
// successful run or is recorded superseded, and no pair more than one
// success; no entry is left outside failed/ and nothing in failed/ lacks
// its .why. It logs the figures.
func (s *stream) drainAndCheck(t *testing.T, what string, timeout time.Duration, extra map[string]int) {
	t.Helper()
	r := s.r
	qs := r.queues("app")
	var why string
	deadline := time.Now().Add(timeout)
	for {
		why = s.pending(qs)
		if why == "" {
			break
		}
		if err := r.exited(); err != nil {
			t.Fatalf("a stage died: %v", err)
		}
		if time.Now().After(deadline) {
			t.Errorf("not drained after %v: %s", timeout, why)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events := map[string][2]string{} // guid -> status, deployments
	rows, err := r.db.QueryContext(ctx, `SELECT delivery, status, deployments FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g, st string
		var deps pq.StringArray
		if err := rows.Scan(&g, &st, &deps); err != nil {
			t.Fatal(err)
		}
		events[g] = [2]string{st, strings.Join(deps, ",")}
	}
	rows.Close()
	runs := map[string][]runInfo{} // delivery -> runs of app
	rows, err = r.db.QueryContext(ctx, `SELECT id, attempt, delivery, deployment, state, coalesce(commit_sha, ''),
		coalesce(previous_sha, ''), trigger, coalesce(error, ''), coalesce(note, ''), coalesce(log_path, ''),
		coalesce(queued_at::text, '') FROM runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	stateCount := map[string]int{}
	for rows.Next() {
		var ri runInfo
		if err := rows.Scan(&ri.id, &ri.attempt, &ri.delivery, &ri.deployment, &ri.state, &ri.commit,
			&ri.previous, &ri.trigger, &ri.errMsg, &ri.note, &ri.logPath, &ri.queued); err != nil {
			t.Fatal(err)
		}
		runs[ri.delivery] = append(runs[ri.delivery], ri)
		stateCount[ri.state]++
	}
	rows.Close()

	lost, dupRuns, superseded, deployed := 0, 0, 0, 0
	unique := 0
	for _, d := range s.byGUID {
		unique++
		if !d.accepted {
			continue
		}
		ev, ok := events[d.guid]
		switch {
		case !ok:
			lost++
			t.Errorf("%s delivery %s was accepted but has no event row", d.kind, d.guid)
			continue
		case d.event == "ping" && ev[0] != "ping",
			d.deploys && ev[0] != "routed" && ev[0] != "duplicate",
			!d.deploys && d.event == "push" && ev[0] != "voided":
			t.Errorf("%s delivery %s: event status %q; want the final decision for it", d.kind, d.guid, ev[0])
		}
		if d.deploys && !slices.Contains(strings.Split(ev[1], ","), "app") {
			t.Errorf("push %s was never routed to app (deployments %q)", d.guid, ev[1])
		}
		succeeded, sup := 0, 0
		for _, ri := range runs[d.guid] {
			switch ri.state {
			case "succeeded":
				succeeded++
				if ri.commit != d.commit {
					t.Errorf("run of %s deployed %s; want %s", d.guid, ri.commit, d.commit)
				}
			case "superseded":
				sup++
			}
		}
		switch {
		case !d.deploys && len(runs[d.guid]) > 0:
			t.Errorf("%s delivery %s has runs; want none:", d.kind, d.guid)
			s.explain(t, d.guid, runs[d.guid], runs)
		case !d.deploys:
		case succeeded > 1:
			dupRuns += succeeded - 1
			t.Errorf("push %s deployed %d times:", d.guid, succeeded)
			s.explain(t, d.guid, runs[d.guid], runs)
		case succeeded == 1:
			deployed++
		case sup > 0:
			superseded++
		default:
			lost++
			t.Errorf("push %s (commit %.12s) has neither a successful nor a superseded run:", d.guid, d.commit)
			s.explain(t, d.guid, runs[d.guid], runs)
		}
	}
	for g, rs := range runs {
		if _, ok := s.byGUID[g]; !ok {
			t.Errorf("runs of a delivery never sent: %s", g)
			s.explain(t, g, rs, runs)
		}
	}

	// Queues: nothing left outside failed/, nothing failed without its
	// reason (and, here, nothing failed at all: every delivery was good).
	stranded, failed, staging := 0, 0, 0
	for _, q := range qs {
		names, _ := q.List()
		stranded += len(names)
		for _, n := range names {
			t.Errorf("entry stranded in %s: %s", q.Dir(), n)
		}
		fdir := filepath.Join(q.Dir(), queue.FailedDir)
		des, _ := os.ReadDir(fdir)
		for _, de := range des {
			if !strings.HasSuffix(de.Name(), ".json") {
				continue
			}
			failed++
			why, err := os.ReadFile(filepath.Join(fdir, de.Name()+queue.WhySuffix))
			if err != nil {
				t.Errorf("%s/%s has no %s: %v", fdir, de.Name(), queue.WhySuffix, err)
			} else {
				t.Errorf("%s/%s failed: %s", fdir, de.Name(), strings.TrimSpace(string(why)))
			}
		}
		tmp, _ := os.ReadDir(filepath.Join(q.Dir(), queue.StagingDir))
		staging += len(tmp)
	}
	// The newest commit pushed is what app runs.
	if s.next > 0 {
		want := s.app.commits[s.next-1]
		if head, err := headOf(r.checkout("app")); err != nil || head != want {
			t.Errorf("app's checkout is at %q (%v); want the last commit pushed, %s", head, err, want)
		}
	}

	st := &s.stats
	kinds := map[string]int{}
	for _, d := range s.all {
		kinds[d.kind]++
	}
	var ex []string
	for k, v := range extra {
		ex = append(ex, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(ex)
	t.Logf("%s: sent %d deliveries (%d GUIDs: push %d, unfollowed %d, ping %d, duplicate %d, redelivery %d) in %d POSTs; "+
		"2xx %d, 5xx %d, no answer %d, other %v, never accepted %d; lost %d, duplicate runs %d; "+
		"pushes deployed %d, superseded %d; runs by state %v; entries stranded %d, failed %d, staging leftovers %d; %s",
		what, len(s.all), unique, kinds[kindPush], kinds[kindUnfollowed], kinds[kindPing], kinds[kindDuplicate], kinds[kindRedelivery],
		st.posts, st.ok, st.status5xx, st.connErr, st.other, st.gaveUp, lost, dupRuns, deployed, superseded, stateCount,
		stranded, failed, staging, strings.Join(ex, ", "))
	if len(st.other) > 0 {
		t.Errorf("dh-receive answered statuses other than 2xx and 5xx: %v", st.other)
	}
}

// pending says what is still being handled, or "" when the rig is idle:
// entries queued, accepted deliveries without a decided event row, pushes
// without a final run, runs not finished.
func (s *stream) pending(qs []*queue.Queue) string {
	for _, q := range qs {
		if names, err := q.List(); err == nil && len(names) > 0 {
			return fmt.Sprintf("%d entries in %s", len(names), q.Dir())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var undecided, unfinished int
	if err := s.r.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE status = 'received'`).Scan(&undecided); err != nil {
		return "database: " + err.Error()
	}
	if err := s.r.db.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE state IN ('queued', 'running')`).Scan(&unfinished); err != nil {
		return "database: " + err.Error()
	}
	if undecided+unfinished > 0 {
		return fmt.Sprintf("%d events undecided, %d runs unfinished", undecided, unfinished)
	}
	var guids []string
	for g, d := range s.byGUID {
		if d.accepted {
			guids = append(guids, g)
		}
	}
	var known int
	if err := s.r.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE delivery = ANY($1)`, pq.Array(guids)).Scan(&known); err != nil {
		return "database: " + err.Error()
	}
	if known < len(guids) {
		return fmt.Sprintf("%d of %d accepted deliveries have no event row yet", len(guids)-known, len(guids))
	}
	return ""
}

// chaos SIGKILLs a random stage of stages and restarts it, k times,
// spread over the stream's n deliveries: the i-th kill comes a random 0 to
// 200 ms after the i/(k+1)-th part of them was sent. It returns the kills
// by stage.
func chaos(r *rig, s *stream, rnd *rand.Rand, stages []string, n, k int) (map[string]int, error) {
	kills := map[string]int{}
	for i := 0; i < k; i++ {
		for s.sent.Load() < int64((i+1)*n/(k+1)) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond)
		name := stages[rnd.IntN(len(stages))]
		if err := r.restart(name); err != nil {
			return kills, fmt.Errorf("restart %s after kill %d: %w", name, i+1, err)
		}
		kills[name]++
	}
	return kills, nil
}
