package queue

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Room says full at max_entries and max_bytes (counting what this handle
// published, and what another publisher left, found by a scan), again
// has room once the consumer made some (at the next rescan), and says
// full below the free-space floor.
func TestRoom(t *testing.T) {
	q := newQueue(t)
	if err := q.Room(); err != nil {
		t.Fatalf("Room() without limits = %v; want nil", err)
	}
	os.WriteFile(filepath.Join(q.Dir(), "00-by-hand.json"), []byte("{}"), 0o640)
	q.SetLimits(Limits{MaxEntries: 3})
	publish(t, q, "{}")
	if err := q.Room(); err != nil {
		t.Fatalf("Room() at 2 of 3 entries = %v; want nil", err)
	}
	publish(t, q, "{}")
	err := q.Room()
	if !errors.Is(err, ErrFull) || !IsRetry(err) || !strings.Contains(err.Error(), "3 entries waiting") {
		t.Fatalf("Room() at 3 of 3 entries = %v; want ErrFull, TempFail, naming the count", err)
	}
	os.Remove(filepath.Join(q.Dir(), "00-by-hand.json")) // the consumer took one
	if err := q.Room(); err == nil {
		t.Errorf("Room() = nil right after the consumer took one; want the estimate kept until the next rescan")
	}
	q.backlog.mu.Lock()
	q.backlog.scanned = time.Now().Add(-rescanFull)
	q.backlog.mu.Unlock()
	q.Room() // starts a rescan in the background
	for i := 0; q.Room() != nil; i++ {
		if i == 500 {
			t.Fatalf("Room() = %v 5 s after a rescan began at 2 of 3; want nil", q.Room())
		}
		time.Sleep(10 * time.Millisecond)
	}

	q.SetLimits(Limits{MaxBytes: 100})
	publish(t, q, strings.Repeat("x", 100))
	if err := q.Room(); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "bytes waiting") {
		t.Errorf("Room() over max_bytes = %v; want ErrFull naming the bytes", err)
	}
	// A streamed entry (Item.Write) counts its bytes too.
	q.SetLimits(Limits{MaxBytes: 1 << 20})
	q.Room()
	r := PublishAll([]Item{{Queue: q, Write: func(w io.Writer) error {
		_, err := w.Write(make([]byte, 1<<20))
		return err
	}}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := q.Room(); !errors.Is(err, ErrFull) {
		t.Errorf("Room() after streaming 1 MiB at max_bytes 1 MiB = %v; want ErrFull", err)
	}
	q.SetLimits(Limits{MinFreeBytes: 1 << 62})
	if err := q.Room(); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "below the floor") {
		t.Errorf("Room() below the free-space floor = %v; want ErrFull naming the floor", err)
	}
}

// The cost of the check per publish, beside no check: a queue of 10,000
// entries of 7 KB (under its limits), publishing one more 7 KB entry per
// iteration. "scan" counts the directory each time: the cost of a rescan,
// which runs in the background (every 30 s, at most every second while
// at a limit), never in a request.
func BenchmarkRoom(b *testing.B) {
	q := Open(filepath.Join(b.TempDir(), "main"))
	if err := q.Init(); err != nil {
		b.Fatal(err)
	}
	data := []byte(strings.Repeat("x", 7<<10))
	items := make([]Item, 10000)
	for i := range items {
		items[i] = Item{Queue: q, Data: data}
	}
	for _, r := range PublishAll(items) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	limits := Limits{MaxEntries: 1 << 40, MaxBytes: 1 << 50, MinFreeBytes: 1}
	for _, bc := range []struct {
		name    string
		limits  Limits
		rescan  bool
		publish bool
	}{
		{"check=none/publish", Limits{}, false, true},
		{"check=limits/publish", limits, false, true},
		{"check=limits", limits, false, false},
		{"check=limits+scan", limits, true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q.SetLimits(bc.limits)
			q.Room()
			for b.Loop() {
				if bc.rescan {
					q.backlog.mu.Lock()
					q.backlog.scanned = time.Time{}
					q.backlog.mu.Unlock()
				}
				if err := q.Room(); err != nil {
					b.Fatal(err)
				}
				if bc.publish {
					if _, err := q.Publish(data); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
