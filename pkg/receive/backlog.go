package receive

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RetryAfter is the Retry-After (seconds) of the 503 answered while
// queues/main is at a limit or its file system below the floor.
const RetryAfter = 60

// admit wraps a handler that enqueues into queues/main: while the queue is
// at a limit ([queues.main] max_entries, max_bytes) or queue_dir's file
// system is below [queues] min_free_bytes (queue.Room), a POST is answered
// 503 with Retry-After before anything of it is read or written. The
// refusals are logged once a minute with their count, not one line each.
func (s *Server) admit(next http.HandlerFunc) http.HandlerFunc {
	var mu sync.Mutex
	var refused int
	var logged time.Time
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next(w, r)
			return
		}
		err := s.Queue.Room()
		if err == nil {
			next(w, r)
			return
		}
		s.metrics.refusals.Inc()
		mu.Lock()
		refused++
		if time.Since(logged) >= time.Minute {
			s.Logger.Warn("deliveries refused: queues/main is full", "refused", refused, "err", err)
			refused, logged = 0, time.Now()
		}
		mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
		fail(w, http.StatusServiceUnavailable, "the delivery queue is full; nothing was read or stored: "+err.Error())
	}
}
