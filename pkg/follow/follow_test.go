package follow_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/follow"
)

// lineWriter hands each write to a channel, so the test sees when a
// piece arrives.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

// A real file written by another goroutine: each line arrives while the
// writer is still going, and Copy returns once the end is reported and
// the last line (written just before) is sent.
func TestCopyFollowsAGrowingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	wf, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	wf.WriteString("step 1/1: build\n")
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	var ended atomic.Bool
	out := make(lineWriter, 100)
	done := make(chan error, 1)
	go func() {
		done <- follow.Copy(context.Background(), out, rf, func(context.Context) (bool, error) { return ended.Load(), nil },
			follow.Options{Poll: 10 * time.Millisecond, Check: 10 * time.Millisecond})
	}()
	read := func(want string) {
		t.Helper()
		var got strings.Builder
		deadline := time.After(10 * time.Second)
		for got.String() != want {
			select {
			case s := <-out:
				got.WriteString(s)
			case <-deadline:
				t.Fatalf("read %q; want %q", got.String(), want)
			}
		}
	}
	read("step 1/1: build\n")
	wf.WriteString("compiling\n") // the run goes on: the line arrives before it ends
	read("compiling\n")
	wf.WriteString("done\n")
	ended.Store(true)
	read("done\n")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Copy = %v; want nil at the run's end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Copy did not return after the run ended")
	}
}

// Copy stops when its context ends, and passes on the errors of ended
// and of the writer.
func TestCopyStops(t *testing.T) {
	never := func(context.Context) (bool, error) { return false, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := follow.Copy(ctx, io.Discard, strings.NewReader("x"), never, follow.Options{Poll: time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Copy with an ending context = %v; want DeadlineExceeded", err)
	}
	boom := errors.New("database down")
	if err := follow.Copy(context.Background(), io.Discard, strings.NewReader("x"),
		func(context.Context) (bool, error) { return false, boom }, follow.Options{}); !errors.Is(err, boom) {
		t.Errorf("Copy with a failing ended = %v; want its error", err)
	}
	gone := errors.New("client gone")
	if err := follow.Copy(context.Background(), failWriter{gone}, strings.NewReader("x"), never, follow.Options{}); !errors.Is(err, gone) {
		t.Errorf("Copy to a failing writer = %v; want its error", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }
