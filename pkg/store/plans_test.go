package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// planRuns is how many runs TestQueryPlans fills in.
const planRuns = 1_000_000

// TestQueryPlans checks that no statement of store.HotQueries reads a
// whole table of the history: on a million runs, no plan (EXPLAIN
// ANALYZE) has a Seq Scan of runs, events or routes, nor an index scan
// that walks backward filtering rows out (what reading "the newest X" of
// a deployment that has none did), nor any scan of them that removes more
// than maxFiltered rows by its filter.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewMigrated(t)
	// Few deployments, each a tenth of the history, make the planner
	// believe a walk backward through all runs finds a deployment's newest
	// soon: dep0 has no runs at all (its tenth went to "never"), the
	// worst case, as is "never" for its succeeded runs.
	storetest.Fill(t, url, storetest.History{Runs: planRuns, Deployments: 10, Events: planRuns / 5})
	db := rawDB(t, url)

	some := []string{"never", "nothing"}
	for i := range 10 {
		some = append(some, storetest.DeploymentName(i))
	}
	now := time.Now().Format(time.RFC3339)
	args := map[string][]any{
		"RunsOf":           {storetest.DeliveryName(12345), "dep5"},
		"RunsOfDeliveries": {"dep5", pq.Array([]string{storetest.DeliveryName(12345), storetest.DeliveryName(12346), "new"})},
		"InsertSuperseded": {"dep1", pq.Array([]string{"new"}), pq.Array([]int64{1}), pq.Array([]string{"webhook"}),
			pq.Array([]string{"refs/heads/main"}), pq.Array([]string{""}), pq.Array([]string{"why"}), pq.Array([]string{""})},
		"RunsBefore":     {"dep0", 900_000, 20},
		"GetRun":         {"dep1", 100_001},
		"DeliveryRuns":   {storetest.DeliveryName(12345), 100},
		"GetEvent":       {storetest.DeliveryName(12345)},
		"CommitRuns":     {"dep1", "0123456789abcdef0123456789abcdef01234567"},
		"SucceededRuns":  {"never", 1000},
		"LastRuns":       {pq.Array(some), 10},
		"InterruptRuns":  {"never"},
		"LinkSuperseded": {"dep7", planRuns},
		"RoutesOf":       {storetest.DeliveryName(12345)},
		"RecentEvents":   {20},
		"Decide":         {storetest.DeliveryName(5), "routed", nil, "entry", pq.Array([]string{"dep5"})},
		"FinishRun":      {500_000, "failed", nil, nil, nil, nil},
		"InsertDecided": {pq.Array([]string{"new"}), pq.Array([]string{"push"}), pq.Array([]int64{1}),
			pq.Array([]string{"o/r"}), pq.Array([]string{"refs/heads/main"}), pq.Array([]string{"a"}),
			pq.Array([]string{"b"}), pq.Array([]string{now}), pq.Array([]string{"routed"}), pq.Array([]string{""}),
			pq.Array([]string{"dep1"})},
		"InsertRoutes":    {pq.Array([]string{storetest.DeliveryName(7)}), pq.Array([]string{"dep9"}), pq.Array([]string{"e"})},
		"InsertRun":       {"new", "dep1", 1, "webhook", nil, nil, nil, "running", nil, nil, nil, nil, nil, nil},
		"RecordDelivery":  {storetest.DeliveryName(5), "push", nil, nil, nil, nil, nil, now},
		"RecordFailure":   {"new", "push", nil, nil, nil, nil, nil, now, "bad"},
		"StartWaitingRun": {500_000, "webhook", nil, nil, nil, nil, nil, nil, nil, nil, nil},
		"WaitRun":         {"new", "dep1", 1, "webhook", nil, nil, "waiting", nil},
		// The rows are up to an hour old: half of them are due.
		"PruneEvents": {1800, 1000},
		"PruneRoutes": {1800, 1000},
		"PruneRuns":   {1800, 1000, 5, time.Time{}},
		// The metrics: the newest 100 runs of each deployment.
		"RecentRunStats": {pq.Array(some), 100},
		"DeliveryCounts": {time.Now().Add(-24 * time.Hour), 10_000},
	}
	for _, q := range store.HotQueries {
		t.Run(q.Name, func(t *testing.T) {
			a, ok := args[q.Name]
			if !ok {
				t.Fatalf("no arguments for %s: add a row to TestQueryPlans' args", q.Name)
			}
			// ANALYZE runs the statement: in a transaction rolled back,
			// so that writes change nothing.
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var out []byte
			if err := tx.QueryRowContext(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+q.SQL, a...).Scan(&out); err != nil {
				t.Fatalf("EXPLAIN %s: %v", q.Name, err)
			}
			var plans []struct{ Plan plan }
			if err := json.Unmarshal(out, &plans); err != nil {
				t.Fatal(err)
			}
			if bad := plans[0].Plan.scans(); len(bad) > 0 {
				t.Errorf("%s reads the history:\n  %s\n%s", q.Name, strings.Join(bad, "\n  "), out)
			}
		})
	}
}

// maxFiltered is how many rows a scan of the history may read and throw
// away, over all its loops (the plans of the old queries threw away 10,000
// to 110,000).
const maxFiltered = 1000

// plan is a node of EXPLAIN (ANALYZE, FORMAT JSON)'s output.
type plan struct {
	NodeType  string `json:"Node Type"`
	Removed   int64  `json:"Rows Removed by Filter"`
	Loops     int64  `json:"Actual Loops"`
	Relation  string `json:"Relation Name"`
	Index     string `json:"Index Name"`
	Direction string `json:"Scan Direction"`
	Filter    string `json:"Filter"`
	Plans     []plan `json:"Plans"`
}

// scans describes the nodes of p that read runs, events or routes
// without an index that leads them to the rows wanted.
func (p plan) scans() []string {
	var bad []string
	switch p.Relation {
	case "runs", "events", "routes":
		switch {
		case p.NodeType == "Seq Scan":
			bad = append(bad, fmt.Sprintf("Seq Scan on %s", p.Relation))
		case strings.HasPrefix(p.NodeType, "Index") && p.Direction == "Backward" && p.Filter != "":
			bad = append(bad, fmt.Sprintf("%s Backward using %s on %s, Filter: %s", p.NodeType, p.Index, p.Relation, p.Filter))
		case p.Removed*max(p.Loops, 1) > maxFiltered:
			bad = append(bad, fmt.Sprintf("%s using %s on %s removes %d rows by its filter (%s)", p.NodeType, p.Index,
				p.Relation, p.Removed*max(p.Loops, 1), p.Filter))
		}
	}
	for _, c := range p.Plans {
		bad = append(bad, c.scans()...)
	}
	return bad
}
