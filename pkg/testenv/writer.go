package testenv

import (
	"os"
	"sync"
	"testing"
	"time"
)

// BufferedWriter plays a build on the same disk for benchmarks: it writes
// a file of up to size bytes in dir without ever syncing it, in 1 MB
// writes, and once the file is that big overwrites it from the start, so
// that the file system keeps up to size bytes of dirty data for as long as
// it runs. It returns once the first warm bytes are written (or limit
// passed), and stops (and removes the file) when its stop function is
// called, when limit has passed, or at the test's cleanup, whichever comes
// first. A write error (a full disk) ends it early. The returned function
// reports how many bytes were written.
func BufferedWriter(tb testing.TB, dir string, size, warm int64, limit time.Duration) (stop func() int64) {
	tb.Helper()
	f, err := os.CreateTemp(dir, "buffered-writer.")
	if err != nil {
		tb.Fatal(err)
	}
	path := f.Name()
	done := make(chan struct{})
	warmed := make(chan struct{})
	var written int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer f.Close()
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i)
		}
		deadline := time.Now().Add(limit)
		var off int64
		warmDone := false
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return
			default:
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				break
			}
			written += int64(len(buf))
			if off += int64(len(buf)); off >= size {
				off = 0
			}
			if !warmDone && written >= warm {
				warmDone = true
				close(warmed)
			}
		}
		if !warmDone {
			close(warmed)
		}
	}()
	var once sync.Once
	stop = func() int64 {
		once.Do(func() {
			close(done)
			wg.Wait()
			os.Remove(path)
		})
		return written
	}
	tb.Cleanup(func() { stop() })
	<-warmed
	return stop
}
