package receive

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// The limiter remembers at most maxSources sources; beyond that new ones
// share one window (still limited), and ended windows make room. An IPv6
// client counts as its /64.
func TestFailLimitSources(t *testing.T) {
	var l failLimit
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	for i := range maxSources {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now, "app", log)
	}
	extra := netip.MustParseAddr("192.0.2.1")
	for range tokenFailures {
		l.fail(extra, now, "app", log)
	}
	if len(l.sources) > maxSources+1 || l.wait(extra, now) == 0 {
		t.Errorf("beyond maxSources: %d sources, wait %v; want at most %d and a wait", len(l.sources), l.wait(extra, now), maxSources+1)
	}
	l.fail(extra, now.Add(tokenWindow), "app", log)
	if len(l.sources) != 1 {
		t.Errorf("after the window: %d sources; want the ended ones dropped", len(l.sources))
	}
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	for range tokenFailures {
		l.fail(a, now, "app", log)
	}
	if l.wait(b, now) == 0 {
		t.Errorf("another address of the same /64 may still guess")
	}
}
