package durable_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
)

// BenchmarkSyncCost measures, alone and one at a time, the two syncs a
// durable entry costs on the file system of $TMPDIR: Stage (create a new
// 7 KB file, write it, fdatasync) and a rename into a directory followed
// by SyncDir. Sharing directory fsyncs (pkg/queue's group commit) can save
// at most the second per entry; the first is every entry's own.
func BenchmarkSyncCost(b *testing.B) {
	data := make([]byte, 7<<10)
	b.Run("stage", func(b *testing.B) {
		dir := b.TempDir()
		i := 0
		for b.Loop() {
			i++
			if err := durable.Stage(filepath.Join(dir, strconv.Itoa(i)), data, 0o640); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rename+syncdir", func(b *testing.B) {
		src, dst := b.TempDir(), b.TempDir()
		for i := range b.N {
			if err := durable.Stage(filepath.Join(src, strconv.Itoa(i)), data, 0o640); err != nil {
				b.Fatal(err)
			}
		}
		if err := durable.SyncDir(src); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			if err := os.Rename(filepath.Join(src, strconv.Itoa(i)), filepath.Join(dst, strconv.Itoa(i))); err != nil {
				b.Fatal(err)
			}
			if err := durable.SyncDir(dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBatchSyncs measures what a routing batch's syncs cost on the
// file system of $TMPDIR: 256 entries of 7 KB staged (each its own
// fdatasync, 64 at a time, as queue.PublishAll does) and renamed into 1
// or 4 queue directories, then each directory fsynced, the 4 one after
// the other or at once. It reports ms per batch for the entries' syncs
// and for the directories'. A directory fsync is per directory (a name is
// durable only once its own directory is synced), so 4 queues need 4; the
// question is what they cost beside the entries' own syncs.
func BenchmarkBatchSyncs(b *testing.B) {
	const entries, workers = 256, 64
	data := make([]byte, 7<<10)
	for _, c := range []struct {
		name       string
		queues     int
		concurrent bool
	}{{"queues=1", 1, false}, {"queues=4/serial", 4, false}, {"queues=4/concurrent", 4, true}} {
		b.Run(c.name, func(b *testing.B) {
			root := b.TempDir()
			dirs := make([]string, c.queues)
			for i := range dirs {
				dirs[i] = filepath.Join(root, strconv.Itoa(i))
				if err := os.MkdirAll(filepath.Join(dirs[i], ".tmp"), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			var stage, dirSync time.Duration
			for n := range b.N {
				start := time.Now()
				var wg sync.WaitGroup
				sem := make(chan struct{}, workers)
				for i := range entries {
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						tmp := filepath.Join(dirs[i%c.queues], ".tmp", fmt.Sprintf("%d-%d", n, i))
						if err := durable.Stage(tmp, data, 0o640); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				for i := range entries {
					d := dirs[i%c.queues]
					name := fmt.Sprintf("%d-%d", n, i)
					if err := durable.Link(filepath.Join(d, ".tmp", name), filepath.Join(d, name+".json")); err != nil {
						b.Fatal(err)
					}
				}
				mid := time.Now()
				for _, d := range dirs {
					if !c.concurrent {
						if err := durable.SyncDir(d); err != nil {
							b.Fatal(err)
						}
						continue
					}
					wg.Go(func() {
						if err := durable.SyncDir(d); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				stage, dirSync = stage+mid.Sub(start), dirSync+time.Since(mid)
			}
			b.ReportMetric(float64(stage.Microseconds())/1000/float64(b.N), "entry-syncs-ms/batch")
			b.ReportMetric(float64(dirSync.Microseconds())/1000/float64(b.N), "dir-syncs-ms/batch")
			b.ReportMetric(0, "ns/op")
		})
	}
}
