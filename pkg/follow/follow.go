// Package follow copies a file that is still growing, such as a running
// deployment's log, as it grows: `tail -f` that knows when to stop.
//
// Guarantees:
//
//   - Copy sends everything the file holds from where it starts, then
//     each new write as it arrives (looked for every Options.Poll while
//     nothing is new), and returns once ended reports true and the file's
//     end, at that moment, is sent: nothing written before the run ended
//     is missed.
//   - It reads through a fixed buffer, so its memory does not grow with
//     the file; it holds no inotify instance (a bounded poll), so a host
//     may follow many logs at once.
//   - It stops when ctx ends (a client gone, a signal), when a write fails
//     (the reader went away), or when ended fails: each is its error.
//
// Not supported: a file truncated or replaced while followed (a run log
// never is: it is only appended to, then pruned, and the open file stays
// readable).
package follow

import (
	"context"
	"errors"
	"io"
	"time"
)

// Defaults of Options.
const (
	DefaultPoll  = 200 * time.Millisecond
	DefaultCheck = time.Second
)

// Options tune Copy.
type Options struct {
	// Poll is how long Copy waits at the end of the file before it looks
	// again (DefaultPoll if 0).
	Poll time.Duration
	// Check is how often Copy asks ended while the file does not grow
	// (DefaultCheck if 0); it asks at once when it reaches the end first.
	Check time.Duration
}

// Copy copies r to w from r's current offset until ended(ctx) reports
// true and r is read to its end, following what is appended meanwhile.
func Copy(ctx context.Context, w io.Writer, r io.Reader, ended func(context.Context) (bool, error), opts Options) error {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Check <= 0 {
		opts.Check = DefaultCheck
	}
	buf := make([]byte, 32<<10)
	var lastCheck time.Time
	for {
		// Everything there now.
		if err := drain(w, r, buf); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(lastCheck) >= opts.Check {
			lastCheck = time.Now()
			done, err := ended(ctx)
			if err != nil {
				return err
			}
			if done {
				// What was written before the end was recorded.
				return drain(w, r, buf)
			}
		}
		t := time.NewTimer(opts.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// drain copies r to w until r's current end.
func drain(w io.Writer, r io.Reader, buf []byte) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case errors.Is(err, io.EOF), err == nil && n == 0:
			return nil
		case err != nil:
			return err
		}
	}
}

// Flusher returns a writer that writes to w, then calls flush (an HTTP
// response's Flush), so that a reader at the other end gets each piece as
// it comes.
func Flusher(w io.Writer, flush func() error) io.Writer { return flushWriter{w, flush} }

type flushWriter struct {
	w     io.Writer
	flush func() error
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.flush()
	}
	return n, err
}
