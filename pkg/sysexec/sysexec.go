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

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
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
	if err := c.check(name); err != nil {
		return Result{ExitCode: -1}, err
	}
	c = c.withDefaults()
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.Timeout > 0 {
		runCtx, cancel = context.WithTimeoutCause(ctx, c.Timeout, errTimeout)
	}
	defer cancel()

	p, err := start(runCtx, c)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("run %s: %w", name, err)
	}
	defer p.pipe.Close()
	waitErr := p.cmd.Wait()
	duration := time.Since(p.started)
	p.finish(c.KillGrace)
	res := p.result(duration, runCtx)
	return res, verdict(ctx, name, c, p, res, waitErr)
}

// check refuses a Cmd that cannot run: a relative program path, or a
// working directory that is not there.
func (c Cmd) check(name string) error {
	if !filepath.IsAbs(c.Path) {
		return sysexits.Errorf(sysexits.Software, "run %s: program path must be absolute", c.Path)
	}
	if c.Dir != "" {
		// With SysProcAttr set, os/exec does not check Dir itself, and a
		// missing directory would look like a missing program.
		if _, err := os.Stat(c.Dir); err != nil {
			return fmt.Errorf("run %s: %w", name, err)
		}
	}
	return nil
}

// withDefaults fills in the zero limits.
func (c Cmd) withDefaults() Cmd {
	if c.KillGrace <= 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.Env == nil {
		c.Env = []string{} // nil would inherit the caller's environment
	}
	return c
}

// process is a started command: its process group, the read end of its
// output pipe and the goroutine copying from it.
type process struct {
	cmd     *exec.Cmd
	pipe    *os.File      // the read end of the output pipe
	out     *teeWriter    // where the copying goroutine puts the output
	copied  chan struct{} // closed when the copying goroutine is done
	started time.Time

	mu     sync.Mutex
	termAt time.Time // when the group got SIGTERM; zero if it never did
}

// start starts c's program in its own process group, with its output
// going through one pipe to a goroutine that keeps it (bounded) and
// streams it. When ctx ends, the group gets SIGTERM (terminate).
func start(ctx context.Context, c Cmd) (*process, error) {
	// One pipe for stdout and stderr. Giving os/exec an *os.File (not an
	// io.Writer) makes it copy nothing itself, so Wait returns as soon as
	// the process has exited, however long its children keep the pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &process{pipe: pr, copied: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, c.Path, c.Args...)
	p.cmd.Dir = c.Dir
	p.cmd.Env = c.Env
	p.cmd.Stdin = c.Stdin
	p.cmd.Stdout = pw
	p.cmd.Stderr = pw
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.Cancel = p.terminate
	// If the leader is still there WaitDelay after SIGTERM, os/exec
	// SIGKILLs it and Wait returns; the group gets its SIGKILL in finish.
	p.cmd.WaitDelay = c.KillGrace

	err = p.cmd.Start()
	pw.Close() // only the command and its children hold the write end now
	if err != nil {
		pr.Close()
		return nil, startError(err)
	}
	p.started = time.Now()
	p.out = &teeWriter{buf: newBoundedBuffer(c.MaxOutput), stream: c.Stream}
	go func() {
		defer close(p.copied)
		io.Copy(p.out, pr) // ends at EOF (every writer gone) or at the deadline
	}()
	return p, nil
}

// terminate is the command's Cancel, on timeout or cancellation: SIGTERM
// to the whole group (the negative pid names the group, whose id is the
// leader's pid).
func (p *process) terminate() error {
	p.mu.Lock()
	p.termAt = time.Now()
	p.mu.Unlock()
	err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// terminated returns when the group got SIGTERM, or the zero time.
func (p *process) terminated() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.termAt
}

// finish runs once the leader has exited. If it was told to stop, the
// rest of its group gets what is left of the grace period to stop too (or
// to close the pipe); then whatever remains of the group gets SIGKILL.
// The group id cannot have been reused while any member is alive; once
// the group is empty the kill fails with ESRCH, which is fine. Then it
// reads what the group wrote before it died; a process outside the group
// may hold the pipe forever, so it stops reading after the grace period.
func (p *process) finish(grace time.Duration) {
	if t := p.terminated(); !t.IsZero() {
		select {
		case <-p.copied:
		case <-time.After(time.Until(t.Add(grace))):
		}
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.copied:
	case <-time.After(grace):
		p.pipe.SetReadDeadline(time.Now())
		<-p.copied
	}
}

// result is what the finished process did; runCtx is the context it ran
// under, whose cause tells a timeout.
func (p *process) result(duration time.Duration, runCtx context.Context) Result {
	res := Result{ExitCode: -1, Duration: duration}
	res.Output, res.Truncated = p.out.buf.Bytes()
	if st := p.cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
			if res.Signal == "" {
				res.Signal = fmt.Sprintf("signal %d", int(ws.Signal()))
			}
		}
	}
	res.TimedOut = !p.terminated().IsZero() && context.Cause(runCtx) == errTimeout
	return res
}

// verdict is Run's error for a finished process: nil only for an exit
// with status 0 whose output all reached Cmd.Stream.
func verdict(ctx context.Context, name string, c Cmd, p *process, res Result, waitErr error) error {
	switch {
	case res.TimedOut:
		return &ExitError{Name: name, Result: res, Timeout: c.Timeout}
	case !p.terminated().IsZero() && ctx.Err() != nil:
		return &ExitError{Name: name, Result: res, Err: ctx.Err()}
	case p.cmd.ProcessState == nil:
		return fmt.Errorf("run %s: %w", name, waitErr)
	case !p.cmd.ProcessState.Success():
		return &ExitError{Name: name, Result: res}
	case p.out.err != nil:
		return queue.Stop(fmt.Errorf("run %s: write output: %w", name, p.out.err))
	}
	return nil
}

// startError classifies an error of starting the program.
func startError(err error) error {
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

// lastLine returns the last non-blank line of output as cell.Line cuts
// it, at most 200 runes, for error messages.
func lastLine(out []byte) string {
	s := strings.TrimRightFunc(string(out), unicode.IsSpace)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return cell.Line(s, 200)
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
