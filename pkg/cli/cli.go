// Package cli is the shared frame of every dh-* tool: GNU-style flags
// (pflag), -h/--help, --version, a logger made for journald, a context
// cancelled by SIGINT/SIGTERM, panic recovery, and one place that turns the
// error a tool returns into a message and an exit status (ExitStatus).
//
// A tool's main is two lines:
//
//	func main() { os.Exit(cli.Main(app)) }
//
// and everything else is testable through Run with buffers.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// Ready tells the service manager that the command is ready to work
// (sd_notify READY=1, with STATUS=status; nothing without $NOTIFY_SOCKET)
// and returns the function that says it is stopping: defer
// env.Ready("routing queues/main")(). It is every daemon's one way to
// say so; a notification that fails is logged.
func (e *Env) Ready(status string) (stopping func()) {
	if err := systemd.Notify(e.Getenv, "READY=1\nSTATUS="+status); err != nil && e.Logger != nil {
		e.Logger.Warn("readiness notification failed", "err", err)
	}
	return func() { systemd.Notify(e.Getenv, "STOPPING=1") }
}

// Version is set at build time with -ldflags "-X .../pkg/cli.Version=v1.2.3";
// otherwise it comes from the module's build information.
var Version = ""

// Env is what a command sees of the world. Tests build one with buffers.
type Env struct {
	Name   string // program name, e.g. "dh-route"
	Stdin  io.Reader
	Stdout io.Writer // data
	Stderr io.Writer // logs and messages
	Getenv func(string) string
	Logger *slog.Logger
	// Config is the configuration file path: -c/--config, else $DH_CONFIG,
	// else config.DefaultPath.
	Config string
	// Flags holds the parsed flags of the command: -c, -h, --version and
	// the flags it takes (Command.Flags), no other.
	Flags *pflag.FlagSet
}

// Command is one subcommand of a tool.
type Command struct {
	Name    string // "run"
	Args    string // usage of positional arguments, e.g. "NAME"
	Summary string
	// Flags lists the names of the app's flags this command takes; any
	// other flag given with it is a usage error.
	Flags []string
	// MinArgs and MaxArgs bound the positional arguments (MaxArgs -1: any).
	MinArgs, MaxArgs int
	// Example is a typical use, printed by TOOL COMMAND --help.
	Example string
	// Fails says what exit status 1 means for this command ("the run
	// failed or was refused"); "" for the general "failed".
	Fails string
	Run   func(ctx context.Context, env *Env, args []string) error
}

// App describes a tool.
type App struct {
	Name    string
	Summary string // one line
	Doc     string // longer help, printed after the usage
	// Default is the command run when none is named ("" means one is required).
	Default  string
	Commands []*Command
	// DefineFlags registers the tool's own flags (besides -c, -h, --version).
	DefineFlags func(fs *pflag.FlagSet)
}

// Main runs the app with the process's arguments and environment and
// returns the exit status. It is meant to be wrapped in os.Exit.
func Main(app *App) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	return Run(ctx, app, env, os.Args[1:])
}

// Run parses args, runs the chosen command and reports its error on
// env.Stderr. It returns the exit status.
func Run(ctx context.Context, app *App, env *Env, args []string) (code int) {
	env.Name = app.Name
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Logger == nil {
		env.Logger = NewLogger(env.Stderr, env.Getenv)
	}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(journalWriter(env.Stderr, env.Getenv, slog.LevelError), "%s: internal error: %v\n%s", app.Name, r, debug.Stack())
			code = sysexits.Software
		}
	}()
	err := run(ctx, app, env, args)
	if err != nil && !errors.Is(err, errHelp) {
		Report(env.Stderr, env.Getenv, app.Name, err)
	}
	return ExitStatus(err)
}

// Report prints err (and its hint) the way every tool does:
//
//	dh-route: error: config: unknown key "deployments.api.brnach"
//	dh-route: hint: did you mean "branches"?
//
// Under journald (getenv("JOURNAL_STREAM") set) every line it writes
// carries the error priority, <3>, so that journalctl -p err shows it.
func Report(w io.Writer, getenv func(string) string, name string, err error) {
	w = journalWriter(w, getenv, slog.LevelError)
	fmt.Fprintf(w, "%s: error: %v\n", name, err)
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(w, "%s: hint: %s\n", name, h)
	}
}

var errHelp = errors.New("help shown")

func run(ctx context.Context, app *App, env *Env, args []string) error {
	fs := pflag.NewFlagSet(app.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	configFlag := fs.StringP("config", "c", "", "configuration `FILE` (default $DH_CONFIG or "+config.DefaultPath+")")
	help := fs.BoolP("help", "h", false, "show this help and exit")
	version := fs.Bool("version", false, "print the version and exit")
	man := fs.Bool(ManFlag, false, "print the manual page (roff) and exit")
	fs.MarkHidden(ManFlag)
	if app.DefineFlags != nil {
		app.DefineFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return usageError(app, nil, err.Error())
	}
	if *version {
		fmt.Fprintf(env.Stdout, "%s %s\n", app.Name, VersionString())
		return errHelp
	}
	if *man {
		fmt.Fprint(env.Stdout, Manual(app, fs))
		return errHelp
	}
	pos := fs.Args()
	if *help {
		if len(pos) > 0 && app.command(pos[0]) != nil {
			cmd := app.command(pos[0])
			fmt.Fprint(env.Stdout, CommandUsage(app, cmd, commandFlags(app, cmd, fs)))
		} else {
			fmt.Fprint(env.Stdout, Usage(app, fs))
		}
		return errHelp
	}
	env.Config = config.Path(*configFlag, env.Getenv)

	name := app.Default
	if len(pos) > 0 {
		if c := app.command(pos[0]); c != nil {
			name, pos = pos[0], pos[1:]
		} else if app.Default == "" || app.command(app.Default).MaxArgs == 0 {
			return usageError(app, nil, fmt.Sprintf("unknown command %q", pos[0]))
		}
	}
	if name == "" {
		return usageError(app, nil, "no command given")
	}
	cmd := app.command(name)
	cfs := commandFlags(app, cmd, fs)
	var bad []string
	fs.Visit(func(f *pflag.Flag) {
		if cfs.Lookup(f.Name) == nil {
			bad = append(bad, "--"+f.Name)
		}
	})
	if len(bad) > 0 {
		return usageError(app, cmd, fmt.Sprintf("%s does not take %s", cmd.Name, strings.Join(bad, ", ")))
	}
	if err := checkArgs(cmd, pos); err != nil {
		return usageError(app, cmd, err.Error())
	}
	env.Flags = cfs
	return cmd.Run(ctx, env, pos)
}

// commandFlags is the FlagSet of cmd: the shared -c, -h and --version and
// the flags cmd takes, holding what fs parsed (the flags are shared).
func commandFlags(app *App, cmd *Command, fs *pflag.FlagSet) *pflag.FlagSet {
	cfs := pflag.NewFlagSet(app.Name+" "+cmd.Name, pflag.ContinueOnError)
	cfs.SortFlags = false
	for _, name := range append(cmd.Flags, "config", "help", "version") {
		f := fs.Lookup(name)
		if f == nil {
			panic(fmt.Sprintf("cli: %s %s takes --%s, which the app does not define", app.Name, cmd.Name, name))
		}
		cfs.AddFlag(f)
	}
	return cfs
}

// checkArgs says, if pos is not what cmd takes, what it takes.
func checkArgs(cmd *Command, pos []string) error {
	if len(pos) >= cmd.MinArgs && (cmd.MaxArgs < 0 || len(pos) <= cmd.MaxArgs) {
		return nil
	}
	if cmd.MaxArgs == 0 {
		return fmt.Errorf("%s takes no arguments (given %q)", cmd.Name, strings.Join(pos, " "))
	}
	return fmt.Errorf("%s takes %s (given %d arguments)", cmd.Name, cmd.Args, len(pos))
}

func (app *App) command(name string) *Command {
	for _, c := range app.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// usageError is a usage error (64) with a hint to the help of cmd, or of
// the app when cmd is nil.
func usageError(app *App, cmd *Command, msg string) error {
	help := app.Name + " --help"
	if cmd != nil {
		help = app.Name + " " + cmd.Name + " --help"
	}
	return hint.With(sysexits.Errorf(sysexits.Usage, "%s", msg), "see '"+help+"'")
}

// Usage renders the help text of app.
func Usage(app *App, fs *pflag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s - %s\n\nUsage:\n", app.Name, app.Summary)
	for _, c := range app.Commands {
		fmt.Fprintf(&b, "  %-44s %s\n", usageLine(app, c, fs), c.Summary)
	}
	fmt.Fprintf(&b, "\nFlags:\n%s", fs.FlagUsages())
	if app.Doc != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(app.Doc))
	}
	fmt.Fprintf(&b, "\n'%s COMMAND --help' shows a command's flags, an example and its exit statuses.\n", app.Name)
	b.WriteString(exitStatuses(app.fails()))
	return b.String()
}

// fails says what exit status 1 means for the app's commands: each
// Command.Fails once, joined by "; ".
func (app *App) fails() string {
	var fails []string
	for _, c := range app.Commands {
		if c.Fails != "" && !slices.Contains(fails, c.Fails) {
			fails = append(fails, c.Fails)
		}
	}
	return strings.Join(fails, "; ")
}

// CommandUsage renders the help text of one command: its usage line with
// value names, its summary, its flags (fs: commandFlags), an example and
// its exit statuses.
func CommandUsage(app *App, cmd *Command, fs *pflag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n\nFlags:\n%s", usageLine(app, cmd, fs), cmd.Summary, fs.FlagUsages())
	if cmd.Example != "" {
		fmt.Fprintf(&b, "\nExample:\n  %s\n", strings.ReplaceAll(strings.TrimSpace(cmd.Example), "\n", "\n  "))
	}
	b.WriteString("\n" + exitStatuses(cmd.Fails))
	return b.String()
}

// usageLine is "TOOL [-c FILE] COMMAND ARGS [--flag VALUE]...", each flag
// once (not those ARGS names already) with its value name.
func usageLine(app *App, c *Command, fs *pflag.FlagSet) string {
	line := app.Name + " [-c FILE] " + c.Name
	if c.Name == app.Default {
		line = app.Name + " [-c FILE] [" + c.Name + "]"
	}
	if c.Args != "" {
		line += " " + c.Args
	}
	for _, name := range c.Flags {
		if strings.Contains(c.Args, "--"+name) {
			continue
		}
		line += " [--" + name
		if v := valueName(fs.Lookup(name)); v != "" {
			line += " " + v
		}
		line += "]"
	}
	return line
}

// valueName is the name of f's value: the `NAME` in its usage, else its
// own name in capitals; "" for a bool.
func valueName(f *pflag.Flag) string {
	if f == nil || f.Value.Type() == "bool" {
		return ""
	}
	name, usage := pflag.UnquoteUsage(f)
	if strings.Contains(f.Usage, "`") && usage != f.Usage {
		return name
	}
	return strings.ToUpper(f.Name)
}

// exitStatuses is the help's footer; fails says what 1 means ("" for
// "failed").
func exitStatuses(fails string) string {
	if fails == "" {
		fails = "failed"
	}
	return "Exit status: 0 ok, 1 " + fails + ", 64 usage, 65 bad data, 69 program missing,\n" +
		"70 internal error, 74 I/O error, 75 temporary failure (retry), 77 permission denied,\n" +
		"78 bad configuration.\n"
}

// VersionString is the version of the running binary.
func VersionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		if rev := settings["vcs.revision"]; rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return "devel-" + rev
		}
	}
	return "devel"
}

// NewLogger returns the slog logger every tool uses: text to w, level from
// $DH_LOG_LEVEL (debug, info, warn, error). When stderr goes to journald
// ($JOURNAL_STREAM) a line has no timestamp (journald stamps lines itself)
// and starts with its syslog priority as sd-daemon(3) prefixes it: <3>
// error, <4> warning, <6> info, <7> debug. A record is always one line:
// the text handler quotes a message or value that holds a newline.
func NewLogger(w io.Writer, getenv func(string) string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(getenv("DH_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	if !underJournald(getenv) {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	pw := &prefixWriter{w: w}
	return slog.New(&journalHandler{pw: pw, Handler: slog.NewTextHandler(pw, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})})
}

// underJournald reports whether stderr is a journald stream.
func underJournald(getenv func(string) string) bool { return getenv("JOURNAL_STREAM") != "" }

// priority is the sd-daemon(3) prefix of a slog level.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>" // SD_ERR
	case l >= slog.LevelWarn:
		return "<4>" // SD_WARNING
	case l >= slog.LevelInfo:
		return "<6>" // SD_INFO
	}
	return "<7>" // SD_DEBUG
}

// journalHandler is a text handler whose lines carry their record's
// priority. Every handler derived from it (With, WithGroup) shares its
// prefixWriter, whose lock holds from choosing the prefix to writing the
// line.
type journalHandler struct {
	slog.Handler
	pw *prefixWriter
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = priority(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{Handler: h.Handler.WithAttrs(as), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{Handler: h.Handler.WithGroup(name), pw: h.pw}
}

// prefixWriter writes prefix before every line of what it is given, in
// one write per call (journald reads a stream line by line).
type prefixWriter struct {
	mu     sync.Mutex // held by journalHandler.Handle, not by Write
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for line := range bytes.Lines(b) {
		out = append(append(out, p.prefix...), line...)
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// journalWriter is w, or under journald a writer that prefixes each line
// with level's priority, for messages written outside the logger.
func journalWriter(w io.Writer, getenv func(string) string, level slog.Level) io.Writer {
	if getenv == nil || !underJournald(getenv) {
		return w
	}
	return &prefixWriter{w: w, prefix: priority(level)}
}
