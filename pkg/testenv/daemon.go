package testenv

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer safe for concurrent writers and readers: the
// output of a process a test watches while it runs.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Daemon is a long-running program a test started (StartDaemon): its
// stdout and stderr go to Out, and waits fail the test as soon as it exits.
type Daemon struct {
	Cmd    *exec.Cmd
	Out    *Buffer
	exited chan error
}

// StartDaemon starts cmd with its output in Out (unless cmd sets its
// own), killed when the test ends.
func StartDaemon(t testing.TB, cmd *exec.Cmd) *Daemon {
	t.Helper()
	d := &Daemon{Cmd: cmd, Out: &Buffer{}, exited: make(chan error, 1)}
	if cmd.Stdout == nil {
		cmd.Stdout = d.Out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = d.Out
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return d
}

// WaitFor polls cond until it holds; it fails the test if the daemon exits
// or timeout passes first.
func (d *Daemon) WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("%s exited (%v) while the test waited for %s; its output:\n%s", d.Cmd.Path, err, what, d.Out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %s; its output:\n%s", d.Cmd.Path, what, timeout, d.Out.String())
		}
	}
}

// Logged waits (WaitFor) until the daemon's output contains s.
func (d *Daemon) Logged(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	d.WaitFor(t, "output "+s, timeout, func() bool { return strings.Contains(d.Out.String(), s) })
}

// Running fails the test if the daemon has exited.
func (d *Daemon) Running(t testing.TB) {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("%s exited (%v); its output:\n%s", d.Cmd.Path, err, d.Out.String())
	default:
	}
}

// Stop sends SIGTERM and wants exit status 0 within 10 s.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Errorf("%s after SIGTERM: %v; want exit 0; its output:\n%s", d.Cmd.Path, err, d.Out.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop within 10 s of SIGTERM; its output:\n%s", d.Cmd.Path, d.Out.String())
	}
}
