package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

var tools = cli.Tools

var (
	binDir   string
	buildErr error
	build    sync.Once
)

func TestMain(m *testing.M) {
	storetest.Main(m, func() {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	})
}

// buildTools builds the five real binaries, once per test binary.
func buildTools(t *testing.T) string {
	t.Helper()
	build.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "dh-tools-"); buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		for _, tool := range tools {
			args = append(args, "github.com/dh-deployer/dh-deployer/cmd/"+tool)
		}
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Every tool parses GNU-style flags, answers --help and --version, and
// exits 64 on a bad flag.
func TestToolsShareTheFrame(t *testing.T) {
	bin := buildTools(t)
	for _, tool := range tools {
		path := filepath.Join(bin, tool)
		out, err := exec.Command(path, "--help").Output()
		if exitCode(err) != 0 || !strings.HasPrefix(string(out), tool+" - ") || !strings.Contains(string(out), "--config FILE") {
			t.Errorf("%s --help = %d, %q; want 0 and the usage", tool, exitCode(err), out)
		}
		out, err = exec.Command(path, "--version").Output()
		if exitCode(err) != 0 || !strings.HasPrefix(string(out), tool+" ") {
			t.Errorf("%s --version = %d, %q; want 0 and the version", tool, exitCode(err), out)
		}
		cmd := exec.Command(path, "--no-such-flag")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		if exitCode(err) != 64 || !strings.Contains(stderr.String(), tool+": error: unknown flag: --no-such-flag") {
			t.Errorf("%s --no-such-flag = %d, %q; want 64 and a message", tool, exitCode(err), stderr.String())
		}
	}
}

// A misspelled key stops a tool with exit 78, naming the key, its line and
// the likely intended key.
func TestMisspelledConfigKey(t *testing.T) {
	bin := buildTools(t)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(cfg, []byte(`queue_dir = "/tmp/q"

[deployments.api]
repository = "ducompsoc/durhack"
brnach     = ["main"]
path       = "/var/www/api"
`), 0o644)
	cmd := exec.Command(filepath.Join(bin, "dh-route"), "-c", cfg, "migrate")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg := stderr.String()
	if exitCode(err) != 78 || !strings.Contains(msg, `"deployments.api.brnach"`) || !strings.Contains(msg, cfg+":5") ||
		!strings.Contains(msg, `hint: did you mean "branches"?`) {
		t.Errorf("dh-route -c %s migrate = %d, %q; want 78 naming the key, line 5 and a hint", cfg, exitCode(err), msg)
	}
}

// deadDatabaseConfig writes a configuration with the deployments api and
// sites whose database_url points at a socket directory with no server.
func deadDatabaseConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = "postgres:///dh?host=%s/nopg&connect_timeout=2"

[deployments.api]
repository = "ducompsoc/durhack"
branches   = ["main"]
path       = "/srv/api"
`, dir+"/queues", dir+"/state", dir)), 0o644)
	return cfg
}

// An unknown deployment gets one exit status (64) and one message from
// every command that takes a deployment, before the database is needed
// (here it is down).
func TestUnknownDeploymentEverywhere(t *testing.T) {
	bin := buildTools(t)
	cfg := deadDatabaseConfig(t)
	for _, args := range [][]string{
		{"dh-deploy", "run", "nosuch"},
		{"dh-deploy", "run", "nosuch", "--once"},
		{"dh-deploy", "history", "nosuch"},
		{"dh-deploy", "logs", "nosuch"},
		{"dh-deploy", "logs", "nosuch", "3"},
		{"dh-deploy", "rollback", "nosuch"},
		{"dh-deploy", "deploy", "nosuch"},
		{"dh-deploy", "pause", "nosuch"},
		{"dh-nginx", "history", "nosuch"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // run used to wait for the database
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, args[0]), append([]string{"-c", cfg}, args[1:]...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		want := fmt.Sprintf("%s: error: no deployment %q in %s\n%s: hint: the deployments are: api\n", args[0], "nosuch", cfg, args[0])
		if exitCode(err) != 64 || stderr.String() != want {
			t.Errorf("%s = %d, %q; want 64, %q", strings.Join(args, " "), exitCode(err), stderr.String(), want)
		}
	}
}

// TOOL COMMAND --help shows that command alone: its usage with value
// names, its flags, an example and its exit statuses; wrong arguments say
// what the command takes.
func TestCommandHelp(t *testing.T) {
	bin := buildTools(t)
	out, err := exec.Command(filepath.Join(bin, "dh-deploy"), "deploy", "--help").Output()
	help := string(out)
	for _, want := range []string{
		"Usage: dh-deploy [-c FILE] deploy NAME [--commit SHA] [--ref REF] [--force]\n",
		"--commit SHA", "\nExample:\n  dh-deploy deploy api ", "Exit status: 0 ok, 1 the run failed or was refused, 64 usage",
	} {
		if exitCode(err) != 0 || !strings.Contains(help, want) {
			t.Errorf("dh-deploy deploy --help = %d, %q; want 0 and %q", exitCode(err), help, want)
		}
	}
	for _, other := range []string{"--once", "--reason", "rollback"} {
		if strings.Contains(help, other) {
			t.Errorf("dh-deploy deploy --help shows %q, which is another command's", other)
		}
	}
	out, _ = exec.Command(filepath.Join(bin, "dh-deploy"), "pause", "--help").Output()
	if !strings.Contains(string(out), "Usage: dh-deploy [-c FILE] pause NAME|--all [--reason REASON]\n") {
		t.Errorf("dh-deploy pause --help = %q; want --all once and --reason REASON", out)
	}
	for _, tool := range tools {
		out, _ := exec.Command(filepath.Join(bin, tool), "--help").Output()
		if !strings.Contains(string(out), "Exit status: 0 ok, 1 ") {
			t.Errorf("%s --help = %q; want exit status 1 in its footer", tool, out)
		}
	}
	for _, tt := range []struct{ args, want []string }{
		{[]string{"dh-route", "run", "extra"}, []string{`dh-route: error: run takes no arguments (given "extra")`, "hint: see 'dh-route run --help'"}},
		{[]string{"dh-deploy", "deploy"}, []string{"dh-deploy: error: deploy takes NAME (given 0 arguments)", "hint: see 'dh-deploy deploy --help'"}},
		{[]string{"dh-deploy", "history", "api", "--commit", "x"}, []string{"dh-deploy: error: history does not take --commit"}},
	} {
		cmd := exec.Command(filepath.Join(bin, tt.args[0]), tt.args[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		for _, want := range tt.want {
			if exitCode(err) != 64 || !strings.Contains(stderr.String(), want) {
				t.Errorf("%s = %d, %q; want 64 and %q", strings.Join(tt.args, " "), exitCode(err), stderr.String(), want)
			}
		}
	}
}

// Each tool's manual page (TOOL --man, which make installs) renders
// without a warning from man(1), and shows every command of the tool as
// its --help lists them: its usage line, summary and example, from the
// command's own help.
func TestManPages(t *testing.T) {
	bin := buildTools(t)
	dir := t.TempDir()
	for _, tool := range tools {
		page, err := exec.Command(filepath.Join(bin, tool), "--man").Output()
		if exitCode(err) != 0 || !strings.HasPrefix(string(page), ".TH "+strings.ToUpper(tool)+" 1 ") {
			t.Errorf("%s --man = %d, %.80q; want 0 and a manual page", tool, exitCode(err), page)
			continue
		}
		file := filepath.Join(dir, tool+".1")
		if err := os.WriteFile(file, page, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, warnings := testenv.Man(t, file, 80); warnings != "" {
			t.Errorf("MANWIDTH=80 man --warnings -l %s (%s --man) warns:\n%s", file, tool, warnings)
		}
		text, _ := testenv.Man(t, file, 1000) // wide: no line broken
		help, _ := exec.Command(filepath.Join(bin, tool), "--help").Output()
		var commands int
		for line := range strings.Lines(string(help)) {
			prefix := "  " + tool + " [-c FILE] "
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			name := strings.Trim(strings.Fields(strings.TrimPrefix(line, prefix))[0], "[]")
			commands++
			out, _ := exec.Command(filepath.Join(bin, tool), name, "--help").Output()
			usage, rest, _ := strings.Cut(strings.TrimPrefix(string(out), "Usage: "), "\n\n")
			summary, _, _ := strings.Cut(rest, "\n")
			_, example, _ := strings.Cut(string(out), "\nExample:\n  ")
			example, _, _ = strings.Cut(example, "\n")
			for _, want := range []string{usage, summary, example} {
				if !strings.Contains(text, want) {
					t.Errorf("%s's manual page lacks %q of %s %s --help", tool, want, tool, name)
				}
			}
		}
		if commands < 2 {
			t.Errorf("%s --help lists %d commands; want its commands:\n%s", tool, commands, help)
		}
	}
}
