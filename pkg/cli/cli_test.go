package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func testApp(got *[]string) *App {
	var once bool
	return &App{
		Name: "dh-test", Summary: "a test tool", Default: "run",
		DefineFlags: func(fs *pflag.FlagSet) { fs.BoolVar(&once, "once", false, "drain and exit") },
		Commands: []*Command{
			{Name: "run", Flags: []string{"once"}, Run: func(ctx context.Context, env *Env, args []string) error {
				*got = append(*got, "run", env.Config)
				if once {
					*got = append(*got, "once")
				}
				return nil
			}},
			{Name: "replay", Args: "FILE", MinArgs: 1, MaxArgs: 1, Run: func(ctx context.Context, env *Env, args []string) error {
				*got = append(*got, "replay", args[0])
				return hint.With(sysexits.Errorf(sysexits.DataErr, "entry is bad"), "look at it")
			}},
			{Name: "boom", Run: func(ctx context.Context, env *Env, args []string) error { panic("boom") }},
			{Name: "fail", Run: func(ctx context.Context, env *Env, args []string) error { return errors.New("plain") }},
		},
	}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		env    map[string]string
		code   int
		got    string
		stdout string
		stderr string
	}{
		{args: nil, code: 0, got: "run /etc/dh-deployer/config.toml"},
		{args: []string{"--once", "-c", "/x.toml"}, code: 0, got: "run /x.toml once"},
		{args: []string{"run", "--config=/y.toml", "--once"}, code: 0, got: "run /y.toml once"},
		{args: []string{"run"}, env: map[string]string{"DH_CONFIG": "/env.toml"}, code: 0, got: "run /env.toml"},
		{args: []string{"-h"}, code: 0, stdout: "Usage:\n  dh-test [-c FILE] [run] [--once]"},
		{args: []string{"--help", "--bogus"}, code: 64, stderr: "unknown flag: --bogus"},
		{args: []string{"--version"}, code: 0, stdout: "dh-test "},
		{args: []string{"--bogus"}, code: 64, stderr: "dh-test: error: unknown flag: --bogus\ndh-test: hint: see 'dh-test --help'"},
		{args: []string{"nope"}, code: 64, stderr: `unknown command "nope"`},
		{args: []string{"replay"}, code: 64, stderr: "dh-test: error: replay takes FILE (given 0 arguments)\ndh-test: hint: see 'dh-test replay --help'"},
		{args: []string{"replay", "a", "b"}, code: 64, stderr: "replay takes FILE (given 2 arguments)"},
		{args: []string{"run", "extra"}, code: 64, stderr: `run takes no arguments (given "extra")`},
		{args: []string{"replay", "--help"}, code: 0, stdout: "Usage: dh-test [-c FILE] replay FILE\n"},
		{args: []string{"run", "-h"}, code: 0, stdout: "Usage: dh-test [-c FILE] [run] [--once]\n"},
		{args: []string{"replay", "--once", "a"}, code: 64, stderr: "replay does not take --once"},
		{args: []string{"replay", "f.json"}, code: 65, got: "replay f.json", stderr: "dh-test: error: entry is bad\ndh-test: hint: look at it\n"},
		{args: []string{"boom"}, code: 70, stderr: "dh-test: internal error: boom"},
		{args: []string{"fail"}, code: 1, stderr: "dh-test: error: plain\n"},
	} {
		var got []string
		var stdout, stderr bytes.Buffer
		env := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return tc.env[k] }}
		code := Run(context.Background(), testApp(&got), env, tc.args)
		if code != tc.code || strings.Join(got, " ") != tc.got ||
			!strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("Run(%q) = %d, ran %q, stdout %q, stderr %q; want %d, %q, %q, %q",
				tc.args, code, got, stdout.String(), stderr.String(), tc.code, tc.got, tc.stdout, tc.stderr)
		}
	}
}

func TestLoggerUnderJournald(t *testing.T) {
	for _, journald := range []bool{false, true} {
		var buf bytes.Buffer
		NewLogger(&buf, func(k string) string {
			if k == "JOURNAL_STREAM" && journald {
				return "8:1234"
			}
			return ""
		}).Info("routed", "delivery", "d1")
		if strings.Contains(buf.String(), "time=") == journald || !strings.Contains(buf.String(), `msg=routed delivery=d1`) {
			t.Errorf("journald=%v: logged %q", journald, buf.String())
		}
	}
}

// Under journald every line starts with its sd-daemon(3) priority, so that
// journalctl -p err shows the errors; a message of several lines is still
// one line; the final error report is <3>, each of its lines.
func TestJournaldPriority(t *testing.T) {
	journald := func(k string) string {
		if k == "JOURNAL_STREAM" {
			return "8:1234"
		}
		if k == "DH_LOG_LEVEL" {
			return "debug"
		}
		return ""
	}
	var buf bytes.Buffer
	log := NewLogger(&buf, journald).With("stage", "route").WithGroup("g")
	log.Error("run failed", "err", "step 2\nexit 1")
	log.Warn("database unavailable")
	log.Info("line one\nline two")
	log.Debug("rescan")
	want := []string{
		`<3>level=ERROR msg="run failed" stage=route g.err="step 2\nexit 1"`,
		`<4>level=WARN msg="database unavailable" stage=route`,
		`<6>level=INFO msg="line one\nline two" stage=route`,
		`<7>level=DEBUG msg=rescan stage=route`,
	}
	if got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged\n%s\nwant\n%s", buf.String(), strings.Join(want, "\n"))
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "f.json"}, "<3>dh-test: error: entry is bad\n<3>dh-test: hint: look at it\n"},
		{[]string{"boom"}, "<3>dh-test: internal error: boom\n<3>goroutine "},
	} {
		var got []string
		var stderr bytes.Buffer
		Run(context.Background(), testApp(&got), &Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: journald}, tc.args)
		if !strings.HasPrefix(stderr.String(), tc.want) {
			t.Errorf("Run(%q) under journald wrote %q; want it to start %q", tc.args, stderr.String(), tc.want)
		}
		for _, line := range strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "<3>") {
				t.Errorf("Run(%q) under journald wrote the line %q; want every line to start <3>", tc.args, line)
				break
			}
		}
	}
}

func TestReady(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t, "notify"), "s")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	env := &Env{Getenv: func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return sock
		}
		return ""
	}}
	stopping := env.Ready("routing queues/main")
	stopping()
	buf := make([]byte, 64)
	for _, want := range []string{"READY=1\nSTATUS=routing queues/main", "STOPPING=1"} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("service manager got %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// The manual page escapes what roff would take for its own: every '-'
// (a minus, not a hyphen), a backslash, and a line's leading dot or
// apostrophe (a request); --man is not in the help.
func TestManualEscapes(t *testing.T) {
	var got []string
	app := testApp(&got)
	app.Summary = ".TH not a macro - a\\b"
	app.Commands[1].Example = "'br not a request\ndh-test replay --once"
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), app, &Env{Stdout: &stdout, Stderr: &stderr}, []string{"--man"}); code != 0 {
		t.Fatalf("dh-test --man = %d, %s", code, stderr.String())
	}
	page := stdout.String()
	for _, want := range []string{
		"\n.SH NAME\ndh\\-test \\- \\&.TH not a macro \\- a\\eb\n",
		"\n\\&'br not a request\ndh\\-test replay \\-\\-once\n",
		"\n.B \"dh\\-test [\\-c FILE] replay FILE\"\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("dh-test --man lacks %q:\n%s", want, page)
		}
	}
	macros := map[string]bool{".TH": true, ".SH": true, ".TP": true, ".B": true, ".BR": true, ".I": true, ".PP": true,
		".IP": true, ".RS": true, ".RE": true, ".nf": true, ".fi": true, ".br": true}
	for _, line := range strings.Split(page, "\n") {
		if name, _, _ := strings.Cut(line, " "); (strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'")) && !macros[name] {
			t.Errorf("dh-test --man has the line %q, not a macro it uses", line)
		}
	}
	stdout.Reset()
	Run(context.Background(), app, &Env{Stdout: &stdout, Stderr: &stderr}, []string{"--help"})
	if strings.Contains(stdout.String(), "--man") {
		t.Errorf("dh-test --help shows the hidden --man:\n%s", stdout.String())
	}
}
