package sysexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// generous bounds how long a run that should end promptly may take on a
// shared, loaded machine. Tests assert no timing beyond it.
const generous = 10 * time.Second

func sh(script string, args ...string) Cmd {
	return Cmd{Path: "/bin/sh", Args: append([]string{"-c", script, "sh"}, args...), Timeout: time.Minute}
}

func TestRunExit(t *testing.T) {
	tests := []struct {
		name     string
		cmd      Cmd
		wantCode int
		wantOut  string
		wantErr  string // "" means success
	}{
		{"true", Cmd{Path: "/bin/true", Timeout: time.Minute}, 0, "", ""},
		{"false", Cmd{Path: "/bin/false", Timeout: time.Minute}, 1, "", "/bin/false: exit status 1"},
		{"exit 3 with output", sh("echo building; echo 'fatal: no such ref' >&2; exit 3"), 3, "building\nfatal: no such ref\n",
			"/bin/sh: exit status 3: fatal: no such ref"},
		{"subcommand named", Cmd{Path: "/usr/bin/env", Args: []string{"false"}, Timeout: time.Minute}, 1, "",
			"/usr/bin/env false: exit status 1"},
		{"stdout and stderr interleaved", sh("echo 1; echo 2 >&2; echo 3"), 0, "1\n2\n3\n", ""},
		{"arguments are argv, not shell", Cmd{Path: "/bin/echo", Args: []string{"$HOME", "a b", ";", "`id`"}, Timeout: time.Minute},
			0, "$HOME a b ; `id`\n", ""},
		{"stdin", Cmd{Path: "/bin/cat", Stdin: strings.NewReader("from stdin"), Timeout: time.Minute}, 0, "from stdin", ""},
		{"no stdin is /dev/null", Cmd{Path: "/bin/cat", Timeout: time.Minute}, 0, "", ""},
		{"dir", Cmd{Path: "/bin/pwd", Dir: "/usr/lib", Timeout: time.Minute}, 0, "/usr/lib\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), tt.cmd)
			if res.ExitCode != tt.wantCode || string(res.Output) != tt.wantOut {
				t.Errorf("Run(%q, %q) = code %d, output %q; want %d, %q", tt.cmd.Path, tt.cmd.Args, res.ExitCode, res.Output, tt.wantCode, tt.wantOut)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Run(%q, %q) = %v; want nil", tt.cmd.Path, tt.cmd.Args, err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Run(%q, %q) = %v; want *ExitError %v", tt.cmd.Path, tt.cmd.Args, err, tt.wantErr)
			}
			if ee.Result.ExitCode != tt.wantCode {
				t.Errorf("Run(%q, %q): ExitError.Result.ExitCode = %d; want %d", tt.cmd.Path, tt.cmd.Args, ee.Result.ExitCode, tt.wantCode)
			}
			if res.Signal != "" || res.TimedOut {
				t.Errorf("Run(%q, %q) = signal %q, timed out %v; want neither", tt.cmd.Path, tt.cmd.Args, res.Signal, res.TimedOut)
			}
		})
	}
}

func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	badInterp := filepath.Join(dir, "bad-interp")
	os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755)
	tests := []struct {
		name     string
		cmd      Cmd
		wantCode int
		wantErr  string
	}{
		{"relative path", Cmd{Path: "sh", Args: []string{"-c", "true"}}, sysexits.Software, "program path must be absolute"},
		{"dot path", Cmd{Path: "./bin/sh"}, sysexits.Software, "program path must be absolute"},
		{"missing program", Cmd{Path: "/nonexistent/dh-tool"}, sysexits.Unavailable, "/nonexistent/dh-tool"},
		{"missing interpreter", Cmd{Path: badInterp}, sysexits.Unavailable, badInterp},
		{"not executable", Cmd{Path: notExec}, sysexits.NoPerm, notExec},
		{"missing dir", Cmd{Path: "/bin/true", Dir: filepath.Join(dir, "nope")}, sysexits.Failure, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), tt.cmd)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run(%q) = %v; want %v", tt.cmd.Path, err, tt.wantErr)
			}
			if code := sysexits.Code(err); code != tt.wantCode {
				t.Errorf("Run(%q) = %v: exit code %d; want %d", tt.cmd.Path, err, code, tt.wantCode)
			}
			var ee *ExitError
			if errors.As(err, &ee) {
				t.Errorf("Run(%q) = %#v; want no *ExitError for a command that never ran", tt.cmd.Path, err)
			}
			if res.ExitCode != -1 {
				t.Errorf("Run(%q): ExitCode = %d; want -1", tt.cmd.Path, res.ExitCode)
			}
		})
	}
}

func TestRunOutputBounded(t *testing.T) {
	// 2000 numbered lines of 10 bytes: "line 0001\n" … "line 2000\n".
	const lines = 2000
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "line %04d\n", i)
	}
	script := `i=1; while [ $i -le ` + strconv.Itoa(lines) + ` ]; do printf 'line %04d\n' $i; i=$((i+1)); done`
	tests := []struct {
		name      string
		max       int
		truncated bool
	}{
		{"fits", want.Len(), false},
		{"default fits", 0, false},
		{"cut", 1000, true},
		{"cut small", 11, true},
		{"one byte", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stream bytes.Buffer
			c := sh(script)
			c.MaxOutput = tt.max
			c.Stream = &stream
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatalf("Run(%q) = %v; want nil", script, err)
			}
			if stream.String() != want.String() {
				t.Errorf("Run(%q): stream got %d bytes; want all %d", script, stream.Len(), want.Len())
			}
			if res.Truncated != tt.truncated {
				t.Errorf("Run(%q): Truncated = %v; want %v", script, res.Truncated, tt.truncated)
			}
			if !tt.truncated {
				if string(res.Output) != want.String() {
					t.Errorf("Run(%q): Output has %d bytes; want all %d", script, len(res.Output), want.Len())
				}
				return
			}
			head, tail := tt.max/2, tt.max-tt.max/2
			omitted := want.Len() - tt.max
			wantOut := want.String()[:head] + fmt.Sprintf("\n… [%d bytes omitted] …\n", omitted) + want.String()[want.Len()-tail:]
			if string(res.Output) != wantOut {
				t.Errorf("Run(%q): Output = %q…; want %q…", script, trunc(res.Output), trunc([]byte(wantOut)))
			}
		})
	}
}

func trunc(b []byte) string {
	if len(b) > 120 {
		return string(b[:60]) + "…" + string(b[len(b)-60:])
	}
	return string(b)
}

func TestBoundedBuffer(t *testing.T) {
	// Writes of every size, against a reference that keeps everything.
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	for _, max := range []int{1, 2, 7, 64, 1000, 4999, 5000, 6000} {
		for _, chunk := range []int{1, 3, 50, 999, 5000} {
			b := newBoundedBuffer(max)
			for p := data; len(p) > 0; {
				k := min(chunk, len(p))
				b.Write(p[:k])
				p = p[k:]
			}
			got, cut := b.Bytes()
			want := string(data)
			if len(data) > max {
				h := max / 2
				want = string(data[:h]) + fmt.Sprintf("\n… [%d bytes omitted] …\n", len(data)-max) + string(data[len(data)-(max-h):])
			}
			if string(got) != want || cut != (len(data) > max) {
				t.Errorf("boundedBuffer(max %d, writes of %d) = %q, %v; want %q", max, chunk, trunc(got), cut, trunc([]byte(want)))
			}
		}
	}
}

func TestRunEnvExact(t *testing.T) {
	t.Setenv("DH_SYSEXEC_LEAK", "leaked")
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"nil is empty", nil, nil},
		{"empty", []string{}, nil},
		{"given", []string{"A=1", "PATH=/usr/bin:/bin", "B=two words"}, []string{"A=1", "B=two words", "PATH=/usr/bin:/bin"}},
		{"later duplicate wins", []string{"A=1", "A=2"}, []string{"A=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// /usr/bin/env prints its environment; it is not the shell, which
			// would add PWD, SHLVL and the like.
			res, err := Run(context.Background(), Cmd{Path: "/usr/bin/env", Env: tt.env, Dir: "/tmp", Timeout: time.Minute})
			if err != nil {
				t.Fatalf("Run(env, %q) = %v", tt.env, err)
			}
			got := strings.Fields(strings.ReplaceAll(string(res.Output), " ", "_"))
			slices.Sort(got)
			want := slices.Clone(tt.want)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], " ", "_")
			}
			if !slices.Equal(got, want) {
				t.Errorf("Run(env, %q): environment %q; want exactly %q", tt.env, got, want)
			}
		})
	}
}

// alive reports whether pid is a process that has not died: a zombie
// (dead, waiting for its parent to reap it) counts as dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z' && s[i+2] != 'X'
}

// waitDead waits for pid to die; a SIGKILL is delivered asynchronously.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still alive %v after Run returned", pid, generous)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstPid reads the pid a script printed on its first line.
func firstPid(t *testing.T, out []byte) int {
	t.Helper()
	line, _, _ := strings.Cut(string(out), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		t.Fatalf("output %q: want a pid on the first line", out)
	}
	return pid
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		wantSignal string
	}{
		// sh dies of SIGTERM; the sleeps too.
		{"terminated", `sleep 100 & echo $!; sleep 100; wait`, "SIGTERM"},
		// Everything ignores SIGTERM: only SIGKILL after the grace ends it.
		{"term ignored", `trap '' TERM; sleep 100 & echo $!; sleep 100; wait`, "SIGKILL"},
		// sh exits on SIGTERM, the background sleep ignores it and would
		// survive with the pipe: Run kills the group after the grace.
		{"grandchild ignores term", `(trap '' TERM; exec sleep 100) & echo $!; sleep 100`, "SIGTERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sh(tt.script)
			c.Timeout = time.Second
			c.KillGrace = 500 * time.Millisecond
			start := time.Now()
			res, err := Run(context.Background(), c)
			elapsed := time.Since(start)
			if elapsed > generous {
				t.Errorf("Run(%q) with timeout 1s took %v", tt.script, elapsed)
			}
			var ee *ExitError
			if !errors.As(err, &ee) || err.Error() != "/bin/sh: timed out after 1s: "+strings.TrimSpace(string(res.Output)) {
				t.Errorf("Run(%q) = %v; want *ExitError /bin/sh: timed out after 1s: PID", tt.script, err)
			}
			if !res.TimedOut || res.ExitCode != -1 || res.Signal != tt.wantSignal {
				t.Errorf("Run(%q) = timed out %v, code %d, signal %q; want true, -1, %q", tt.script, res.TimedOut, res.ExitCode, res.Signal, tt.wantSignal)
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Run(%q) = %v; a timeout should not look like the caller's context ending", tt.script, err)
			}
			waitDead(t, firstPid(t, res.Output))
		})
	}
}

func TestRunKillsLeftoverChildren(t *testing.T) {
	// The command succeeds at once, leaving a background child that holds
	// no pipe: it still must not outlive the run.
	script := `sleep 100 >/dev/null 2>&1 & echo $!`
	res, err := Run(context.Background(), sh(script))
	if err != nil {
		t.Fatalf("Run(%q) = %v; want nil", script, err)
	}
	waitDead(t, firstPid(t, res.Output))

	// The same with a child that holds the pipe: Run does not wait for it.
	script = `sleep 100 & echo $!`
	start := time.Now()
	res, err = Run(context.Background(), sh(script))
	if err != nil || time.Since(start) > generous {
		t.Fatalf("Run(%q) = %v after %v; want nil, promptly", script, err, time.Since(start))
	}
	waitDead(t, firstPid(t, res.Output))
}

func TestRunEscapedChild(t *testing.T) {
	// A child in its own session escapes the group kill; Run stops reading
	// its output after the grace period instead of hanging.
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		t.Fatal("setsid (util-linux) is missing")
	}
	script := `/usr/bin/setsid sleep 100 & echo $!; sleep 0.2`
	c := sh(script)
	c.KillGrace = 300 * time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), c)
	if err != nil || time.Since(start) > generous {
		t.Fatalf("Run(%q) = %v after %v; want nil, promptly", script, err, time.Since(start))
	}
	pid := firstPid(t, res.Output)
	syscall.Kill(pid, syscall.SIGKILL)
}

func TestRunSignalled(t *testing.T) {
	script := `echo dying; kill -KILL $$`
	res, err := Run(context.Background(), sh(script))
	var ee *ExitError
	if !errors.As(err, &ee) || err.Error() != "/bin/sh: killed by signal SIGKILL: dying" {
		t.Fatalf("Run(%q) = %v; want *ExitError /bin/sh: killed by signal SIGKILL: dying", script, err)
	}
	if res.ExitCode != -1 || res.Signal != "SIGKILL" || res.TimedOut {
		t.Errorf("Run(%q) = code %d, signal %q, timed out %v; want -1, SIGKILL, false", script, res.ExitCode, res.Signal, res.TimedOut)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	script := `sleep 100 & echo $!; wait`
	c := sh(script)
	c.KillGrace = 500 * time.Millisecond
	start := time.Now()
	res, err := Run(ctx, c)
	if time.Since(start) > generous {
		t.Errorf("Run(%q) took %v after cancellation", script, time.Since(start))
	}
	var ee *ExitError
	if !errors.As(err, &ee) || !errors.Is(err, context.Canceled) || res.TimedOut {
		t.Fatalf("Run(%q) = %v, timed out %v; want an *ExitError wrapping context.Canceled", script, err, res.TimedOut)
	}
	if !strings.HasPrefix(err.Error(), "/bin/sh: interrupted: context canceled") {
		t.Errorf("Run(%q) = %v; want /bin/sh: interrupted: context canceled…", script, err)
	}
	waitDead(t, firstPid(t, res.Output))
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

func TestRunStreamError(t *testing.T) {
	w := &failingWriter{}
	c := sh("echo a; sleep 0.1; echo b")
	c.Stream = w
	res, err := Run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !queue.IsStop(err) {
		t.Errorf("Run with a failing stream = %v; want an I/O error", err)
	}
	if string(res.Output) != "a\nb\n" || w.n != 1 {
		t.Errorf("Run with a failing stream: output %q, %d stream writes; want %q, 1", res.Output, w.n, "a\nb\n")
	}
}

func TestLastLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"one", "one"},
		{"a\nb\n\n  \n", "b"},
		{"x\n  indented  \r\n", "indented"},
		{"bell\a and \x1b[31mred\n", "bell and [31mred"},
		{strings.Repeat("é", 250), strings.Repeat("é", 199) + "…"},
		{"bad \xff byte", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		if got := lastLine([]byte(tt.in)); got != tt.want {
			t.Errorf("lastLine(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.log")
	os.WriteFile(path, []byte("nginx: [emerg] unknown directive \"bogus\"\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"), 0o644)
	started := time.Now()
	got, err := ReadOutput(path, started, 1<<10)
	if err != nil || !strings.Contains(got, "unknown directive") {
		t.Errorf("ReadOutput = %q, %v; want the file", got, err)
	}
	if got, err := ReadOutput(path, started, 12); err != nil || got != "test failed\n" {
		t.Errorf("ReadOutput(max 12) = %q, %v; want the last 12 bytes", got, err)
	}
	if _, err := ReadOutput(path, started.Add(time.Minute), 1<<10); !errors.Is(err, ErrStaleOutput) {
		t.Errorf("ReadOutput of a file older than the run = %v; want ErrStaleOutput", err)
	}
	link := filepath.Join(dir, "link.log")
	os.Symlink(path, link)
	if got, err := ReadOutput(link, started, 1<<10); err == nil {
		t.Errorf("ReadOutput(symlink) = %q; want an error", got)
	}
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	if got, err := ReadOutput(fifo, started, 1<<10); err == nil {
		t.Errorf("ReadOutput(fifo) = %q; want an error", got)
	}
	if _, err := ReadOutput(filepath.Join(dir, "missing"), started, 1<<10); err == nil {
		t.Errorf("ReadOutput(missing) = nil; want an error")
	}
}
