package store

import "time"

// WithTimeout sets the per-call timeout applied to every method (tests
// only: the stages keep DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(s *Store) { s.timeout = d }
}

// HotQueries is hotQueries, for TestQueryPlans.
var HotQueries = hotQueries
