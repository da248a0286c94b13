package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inotifyInstances counts this process's inotify file descriptors.
func inotifyInstances(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// Wake never blocks or fails: no pipe, no reader, a full pipe, or a
// regular file in the pipe's place (left as it was).
func TestWakeIsOnlyAHint(t *testing.T) {
	q := newQueue(t)
	q.Wake() // no pipe
	path := filepath.Join(q.Dir(), WakeFile)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("Wake wrote %q into a regular file", b)
	}
	os.Remove(path)
	w, err := q.newWaker()
	if err != nil {
		t.Fatalf("newWaker() = %v", err)
	}
	w.close()
	for range 100_000 / 512 { // no reader now: ENXIO
		q.Wake()
	}
	// A pipe another user made first is not the consumer's: it is not
	// read (the directory check still wakes the consumer).
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatalf("chown the pipe (the test needs root): %v", err)
	}
	w, err = q.newWaker()
	if err == nil || !strings.Contains(err.Error(), "another user") {
		t.Errorf("newWaker() with another user's pipe = %v; want an error saying so", err)
	}
	if w.pipe != nil {
		t.Errorf("newWaker() reads another user's pipe")
	}
	w.close()
}
