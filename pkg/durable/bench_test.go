package durable_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

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
