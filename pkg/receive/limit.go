package receive

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Failed token attempts are limited per source: at most tokenFailures in
// a tokenWindow that starts with a source's first failure; beyond that
// the source gets 429 with Retry-After until the window ends, whatever
// the token. A source is an address, or its /64 for IPv6 (one host
// usually holds a whole /64). One log line starts a burst and one says
// when it is limited; the guesses themselves are not logged one by one.
const (
	tokenFailures = 10
	tokenWindow   = time.Minute
	// maxSources bounds the sources remembered; past it (after dropping
	// ended windows) every new source shares one window.
	maxSources = 4096
)

// failLimit counts failed token attempts by source.
type failLimit struct {
	mu      sync.Mutex
	sources map[netip.Prefix]*window
}

type window struct {
	start time.Time
	n     int
}

func source(a netip.Addr) netip.Prefix {
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits) // the zero address (a unix peer) gives the zero prefix
	return p
}

// wait returns how long the source must wait before its next attempt, or
// 0 if it may try now.
func (l *failLimit) wait(a netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.sources[source(a)]
	if w == nil && len(l.sources) >= maxSources {
		w = l.sources[netip.Prefix{}] // counted in the shared window (fail)
	}
	if w == nil || w.n < tokenFailures || now.Sub(w.start) >= tokenWindow {
		return 0
	}
	return w.start.Add(tokenWindow).Sub(now)
}

// fail records a failed attempt of the source, logging the start of a
// burst and the moment it is limited.
func (l *failLimit) fail(a netip.Addr, now time.Time, deployment string, log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	src := source(a)
	if l.sources == nil {
		l.sources = map[netip.Prefix]*window{}
	}
	w := l.sources[src]
	if w == nil || now.Sub(w.start) >= tokenWindow {
		if w == nil && len(l.sources) >= maxSources {
			for k, old := range l.sources {
				if now.Sub(old.start) >= tokenWindow {
					delete(l.sources, k)
				}
			}
			if len(l.sources) >= maxSources {
				src = netip.Prefix{}
			}
		}
		if w = l.sources[src]; w == nil || now.Sub(w.start) >= tokenWindow {
			w = &window{start: now}
			l.sources[src] = w
			log.Warn("token refused", "client", a, "deployment", deployment,
				"note", "further failures from this source are counted, not logged, for "+tokenWindow.String())
		}
	}
	w.n++
	if w.n == tokenFailures {
		log.Warn("token attempts limited", "client", a, "source", src, "failures", w.n, "retry_after", w.start.Add(tokenWindow).Sub(now).Round(time.Second))
	}
}
