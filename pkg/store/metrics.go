package store

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// Queries of the metrics (pkg/status's /metrics), each bounded: the runs
// of a deployment come newest first from runs_deployment_newest, at most
// limit of them; the deliveries are the newest limit of a range of
// events_received_at.
const (
	qRecentRunStats = `SELECT d.name, l.state, extract(epoch FROM l.finished_at - l.started_at)
		FROM unnest($1::text[]) AS d(name)
		CROSS JOIN LATERAL (SELECT state, started_at, finished_at FROM runs
			WHERE deployment = d.name ORDER BY -id LIMIT $2) AS l`
	qDeliveryCounts = `SELECT event, status, count(*) FROM (
			SELECT event, status FROM events WHERE received_at >= $1 ORDER BY received_at DESC LIMIT $2) AS e
		GROUP BY event, status ORDER BY event, status`
)

// RunStat is the state and duration of one run, for RecentRunStats.
type RunStat struct {
	Deployment string
	State      string
	Seconds    *float64 // finished - started; nil unless both are set
}

// RecentRunStats returns the state and duration of the newest limit runs
// of each of deployments, in one statement whose cost grows with
// len(deployments) and limit, never with the length of the history.
func (s *Store) RecentRunStats(ctx context.Context, deployments []string, limit int) ([]RunStat, error) {
	if len(deployments) == 0 {
		return nil, nil
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, qRecentRunStats, pq.Array(deployments), limit)
	if err != nil {
		return nil, classify(fmt.Errorf("read the run statistics: %w", err))
	}
	defer rows.Close()
	var out []RunStat
	for rows.Next() {
		var r RunStat
		if err := rows.Scan(&r.Deployment, &r.State, &r.Seconds); err != nil {
			return nil, classify(fmt.Errorf("read the run statistics: %w", err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("read the run statistics: %w", err))
	}
	return out, nil
}

// DeliveryCount is how many deliveries of one event got one status.
type DeliveryCount struct {
	Event  string
	Status string
	Count  int
}

// DeliveryCounts counts the newest limit deliveries received since, by
// event and status (the routing decision): its cost grows with limit,
// never with the traffic.
func (s *Store) DeliveryCounts(ctx context.Context, since time.Time, limit int) ([]DeliveryCount, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, qDeliveryCounts, since, limit)
	if err != nil {
		return nil, classify(fmt.Errorf("count the deliveries: %w", err))
	}
	defer rows.Close()
	var out []DeliveryCount
	for rows.Next() {
		var c DeliveryCount
		if err := rows.Scan(&c.Event, &c.Status, &c.Count); err != nil {
			return nil, classify(fmt.Errorf("count the deliveries: %w", err))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("count the deliveries: %w", err))
	}
	return out, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return classify(fmt.Errorf("ping the database: %w", err))
	}
	return nil
}
