package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// The queue file system is a small tmpfs. Filled up, dh-receive (as its
// user, with the shipped ACLs) answers 503 and queues nothing, not even a
// staging file; it never answers 2xx without an entry. Once space
// returns it answers 202 again, and every 202 has its entry.
func TestDiskFull(t *testing.T) {
	r := newRig(t, rigOptions{QueueTmpfs: "1m", NoDatabase: true})
	r.writeConfig("")
	r.start("dh-receive", "dh-receive", "dh-receive", "serve")
	main := queue.Open(filepath.Join(r.spool, "main"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	accepted := 0
	deliver := func(want int) {
		t.Helper()
		p := fmt.Appendf(nil, `{"zen":"e2e","hook_id":1,"repository":{"full_name":"e2e/app"},"padding":%q}`, strings.Repeat("x", 8<<10))
		status, err := r.post(ctx, "ping", demo.NewGUID(), p)
		if err != nil || status != want {
			t.Fatalf("delivery = %d, %v; want %d\n%s", status, err, want, tail(filepath.Join(r.root, "logs/dh-receive.log"), 10))
		}
		if status >= 200 && status < 300 {
			accepted++
		}
		names, err := main.List()
		if err != nil || len(names) != accepted {
			t.Fatalf("queues/main holds %d entries (%v) after %d accepted deliveries", len(names), err, accepted)
		}
		staging, _ := os.ReadDir(filepath.Join(main.Dir(), queue.StagingDir))
		if len(staging) != 0 {
			t.Errorf("queues/main/.tmp holds %d files after a %d", len(staging), status)
		}
	}
	deliver(202)

	// Fill the file system (as root: tmpfs keeps nothing back for root).
	filler := filepath.Join(r.spool, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v; want ENOSPC", err)
	}
	for i := 0; i < 5; i++ {
		deliver(503)
	}
	if err := r.exited(); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		deliver(202)
	}
	t.Logf("%d deliveries accepted, each with its entry; 5 refused with 503 while the queue file system was full", accepted)
}
