package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

var tools = []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"}

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
