package queue

import (
	"os"
	"path/filepath"
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
}
