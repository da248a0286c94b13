// Package sysexec runs external commands the one way dh-deployer allows:
// an absolute program path and an argv list (never a shell unless the argv
// says so), an exact environment, a time limit, its own process group, and
// bounded captured output.
//
// Guarantees of Run:
//
//   - The command runs in a new process group (Setpgid). On timeout or
//     cancellation of ctx the whole group gets SIGTERM, then SIGKILL after
//     Cmd.KillGrace. When the command's own process has exited, for any
//     reason, the group gets SIGKILL anyway, so no background child it left
//     survives it holding the output pipe. (A child that moved itself to
//     another process group or session escapes this; Run stops reading its
//     output KillGrace after the command exited.) If the caller dies, the
//     command's own process gets SIGKILL (PR_SET_PDEATHSIG); its children
//     are left to the service manager's control-group kill.
//   - The environment is exactly Cmd.Env; nil means an empty environment,
//     not the caller's. Later duplicates of a name win.
//   - Output (stdout and stderr, interleaved as written, through one pipe)
//     is kept up to Cmd.MaxOutput bytes: its head and its tail, with a line
//     saying how much was cut between them. Cmd.Stream, if set, gets all of
//     it.
//   - Only a process that exits with status 0 is a success. A non-zero
//     exit, a death by signal, a timeout and a cancellation are all an
//     *ExitError carrying the Result. A program that is missing is an error
//     classified sysexits.Unavailable (69), one that may not be executed
//     sysexits.NoPerm (77).
//
// Run waits for the command; it has no shell, no PATH lookup and no
// inheritance of the caller's environment or working directory (an empty
// Dir means the caller's current directory, as in os/exec).
package sysexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Defaults of Cmd's limits.
const (
	DefaultMaxOutput = 64 << 10
	DefaultKillGrace = 5 * time.Second
)

// Cmd describes a command to run.
type Cmd struct {
	// Path is the program, an absolute path. No PATH lookup is done.
	Path string

	// Args are the arguments, argv[1:]; argv[0] is Path.
	Args []string

	// Dir is the working directory; empty means the caller's.
	Dir string

	// Env is the exact environment, as "NAME=value" entries. nil means an
	// empty environment: the caller's is never inherited.
	Env []string

	// Stdin is the standard input; nil means /dev/null.
	Stdin io.Reader

	// Timeout bounds the run; 0 means none, but callers should always set
	// one.
	Timeout time.Duration

	// MaxOutput is how many bytes of output Result.Output keeps, half from
	// the head and half from the tail; 0 means DefaultMaxOutput.
	MaxOutput int

	// Stream, if not nil, receives every byte of output as it comes,
	// unbounded: the caller bounds it (for example a log file). If a write
	// to it fails, Stream gets no more and Run returns that error once the
	// command has succeeded.
	Stream io.Writer

	// KillGrace is the time between SIGTERM and SIGKILL, and how long Run
	// waits for output once the command has exited; 0 means
	// DefaultKillGrace.
	KillGrace time.Duration
}

// Result is what a run produced.
type Result struct {
	// ExitCode is the exit status, or -1 if the process was killed by a
	// signal or never ran.
	ExitCode int

	// Signal names the signal that killed the process ("SIGKILL"), or is
	// empty.
	Signal string

	// Output is the combined stdout and stderr, bounded by Cmd.MaxOutput:
	// when Truncated, the head and the tail joined by a line
	// "\n… [N bytes omitted] …\n".
	Output []byte

	// Truncated reports whether bytes were cut from Output.
	Truncated bool

	// Duration is the time from start until the process exited.
	Duration time.Duration

	// TimedOut reports whether Cmd.Timeout ran out and the process group
	// was terminated.
	TimedOut bool
}

// ExitError is the error of a command that ran but did not succeed: it
// exited non-zero, was killed by a signal, timed out, or was cancelled.
type ExitError struct {
	Name    string // the command, for messages: Path and a subcommand
	Result  Result
	Timeout time.Duration // Cmd.Timeout, when Result.TimedOut
	Err     error         // the context's error, when cancelled
}

func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(": ")
	switch {
	case e.Result.TimedOut:
		fmt.Fprintf(&b, "timed out after %v", e.Timeout)
	case e.Err != nil:
		fmt.Fprintf(&b, "interrupted: %v", e.Err)
	case e.Result.Signal != "":
		fmt.Fprintf(&b, "killed by signal %s", e.Result.Signal)
	default:
		fmt.Fprintf(&b, "exit status %d", e.Result.ExitCode)
	}
	if line := lastLine(e.Result.Output); line != "" {
		b.WriteString(": ")
		b.WriteString(line)
	}
	return b.String()
}

// Unwrap returns the context's error when the run was cancelled.
func (e *ExitError) Unwrap() error { return e.Err }

// errTimeout is the cause of the context of a run whose Timeout ran out.
var errTimeout = errors.New("timeout")

// Run starts c, waits for it, and returns what it did. See the package
// documentation for its guarantees. The Result is valid whenever the
// command started, including with an *ExitError.
func Run(ctx context.Context, c Cmd) (Result, error) {
	name := describe(c)
	if !filepath.IsAbs(c.Path) {
		return Result{ExitCode: -1}, sysexits.Errorf(sysexits.Software, "run %s: program path must be absolute", c.Path)
	}
	if c.Dir != "" {
		// With SysProcAttr set, os/exec does not check Dir itself, and a
		// missing directory would look like a missing program.
		if _, err := os.Stat(c.Dir); err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("run %s: %w", name, err)
		}
	}
	grace := c.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.Timeout > 0 {
		runCtx, cancel = context.WithTimeoutCause(ctx, c.Timeout, errTimeout)
	}
	defer cancel()

	// One pipe for stdout and stderr. Giving os/exec an *os.File (not an
	// io.Writer) makes it copy nothing itself, so Wait returns as soon as
	// the process has exited, however long its children keep the pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("run %s: %w", name, err)
	}
	defer pr.Close()

	cmd := exec.CommandContext(runCtx, c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would inherit the caller's environment
	}
	cmd.Stdin = c.Stdin
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	// On timeout or cancellation: SIGTERM to the whole group (the negative
	// pid names the group, whose id is the leader's pid). If the leader is
	// still there after WaitDelay, os/exec SIGKILLs it and Wait returns;
	// the group gets its SIGKILL below, after Wait.
	var termMu sync.Mutex
	var termAt time.Time
	cmd.Cancel = func() error {
		termMu.Lock()
		termAt = time.Now()
		termMu.Unlock()
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = grace

	if err := cmd.Start(); err != nil {
		pw.Close()
		return Result{ExitCode: -1}, startError(name, err)
	}
	start := time.Now()
	pw.Close() // only the command and its children hold the write end now
	pgid := cmd.Process.Pid

	out := newBoundedBuffer(max)
	tee := &teeWriter{buf: out, stream: c.Stream}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(tee, pr) // ends at EOF (every writer gone) or at the deadline
	}()

	waitErr := cmd.Wait()
	res := Result{ExitCode: -1, Duration: time.Since(start)}

	// The leader has exited. If it was told to stop, give the rest of its
	// group what is left of the grace period to stop too (or to close the
	// pipe); then SIGKILL whatever remains of the group. The group id
	// cannot have been reused while any member is alive; once the group is
	// empty the kill fails with ESRCH, which is fine.
	termMu.Lock()
	t := termAt
	termMu.Unlock()
	if !t.IsZero() {
		select {
		case <-copied:
		case <-time.After(time.Until(t.Add(grace))):
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	// Read what the group wrote before it died; a process outside the
	// group may hold the pipe forever, so stop after the grace period.
	select {
	case <-copied:
	case <-time.After(grace):
		pr.SetReadDeadline(time.Now())
		<-copied
	}

	res.Output, res.Truncated = out.Bytes()
	if st := cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
			if res.Signal == "" {
				res.Signal = fmt.Sprintf("signal %d", int(ws.Signal()))
			}
		}
	}
	res.TimedOut = !t.IsZero() && context.Cause(runCtx) == errTimeout

	switch {
	case res.TimedOut:
		return res, &ExitError{Name: name, Result: res, Timeout: c.Timeout}
	case !t.IsZero() && ctx.Err() != nil:
		return res, &ExitError{Name: name, Result: res, Err: ctx.Err()}
	case cmd.ProcessState == nil:
		return res, fmt.Errorf("run %s: %w", name, waitErr)
	case !cmd.ProcessState.Success():
		return res, &ExitError{Name: name, Result: res}
	case tee.err != nil:
		return res, queue.Stop(fmt.Errorf("run %s: write output: %w", name, tee.err))
	}
	return res, nil
}

// startError classifies an error of starting the program.
func startError(name string, err error) error {
	err = fmt.Errorf("run %s: %w", name, err)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sysexits.Errorf(sysexits.Unavailable, "%w", err)
	case errors.Is(err, fs.ErrPermission):
		return sysexits.Errorf(sysexits.NoPerm, "%w", err)
	}
	return err
}

// describe names a command in messages: its path, and its first argument
// when that looks like a subcommand ("/usr/bin/git fetch").
func describe(c Cmd) string {
	if len(c.Args) > 0 && isWord(c.Args[0]) {
		return c.Path + " " + c.Args[0]
	}
	return c.Path
}

func isWord(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// lastLine returns the last non-blank line of output, printable and at
// most 200 bytes, for error messages.
func lastLine(out []byte) string {
	s := strings.TrimRightFunc(string(out), unicode.IsSpace)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 200 {
		cut := 200
		for !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// teeWriter writes to the buffer and, until it fails once, to the stream.
// Only the copying goroutine uses it until that goroutine is done.
type teeWriter struct {
	buf    *boundedBuffer
	stream io.Writer
	err    error
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.stream != nil && t.err == nil {
		if _, err := t.stream.Write(p); err != nil {
			t.err = err
		}
	}
	return len(p), nil
}

// boundedBuffer keeps the first and the last bytes written to it, at most
// max in all.
type boundedBuffer struct {
	head  []byte
	tail  []byte // a ring of the last len(tail) bytes once full
	next  int    // where the ring writes next
	full  bool   // whether the ring has wrapped
	total int64
	max   int
}

func newBoundedBuffer(max int) *boundedBuffer {
	headMax := max / 2
	return &boundedBuffer{head: make([]byte, 0, headMax), tail: make([]byte, 0, max-headMax), max: max}
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.total += int64(n)
	if room := cap(b.head) - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	tailMax := cap(b.tail)
	if len(p) >= tailMax {
		// p alone fills the ring: keep its end.
		b.tail = append(b.tail[:0], p[len(p)-tailMax:]...)
		b.next, b.full = 0, true
		return n, nil
	}
	for len(p) > 0 {
		if !b.full {
			k := min(tailMax-len(b.tail), len(p))
			b.tail = append(b.tail, p[:k]...)
			p = p[k:]
			if len(b.tail) == tailMax {
				b.full, b.next = true, 0
			}
			continue
		}
		k := copy(b.tail[b.next:], p)
		p = p[k:]
		b.next = (b.next + k) % tailMax
	}
	return n, nil
}

// Bytes returns the kept output and whether anything was omitted.
func (b *boundedBuffer) Bytes() ([]byte, bool) {
	out := append([]byte(nil), b.head...)
	var tail []byte
	if b.full {
		tail = append(append(tail, b.tail[b.next:]...), b.tail[:b.next]...)
	} else {
		tail = b.tail
	}
	omitted := b.total - int64(len(b.head)) - int64(len(tail))
	if omitted > 0 {
		out = fmt.Appendf(out, "\n… [%d bytes omitted] …\n", omitted)
	}
	return append(out, tail...), omitted > 0
}
