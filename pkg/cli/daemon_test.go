package cli_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// daemons are the run commands of the four long-running stages.
var daemons = [][]string{{"dh-route", "run"}, {"dh-deploy", "run", "app"}, {"dh-nginx", "run"}, {"dh-cert", "run"}}

// daemon is one stage run as systemd runs it: its sd_notify messages
// arrive on its own socket, its stderr is a journald stream.
type daemon struct {
	*testenv.Daemon
	name string

	mu       sync.Mutex
	messages []string
}

func startDaemon(t *testing.T, bin, sockDir, cfg string, argv []string) *daemon {
	t.Helper()
	d := &daemon{name: argv[0]}
	sock := filepath.Join(sockDir, fmt.Sprintf("%s.%d", argv[0], time.Now().UnixNano()))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.messages = append(d.messages, string(buf[:n]))
			d.mu.Unlock()
		}
	}()
	cmd := exec.Command(filepath.Join(bin, argv[0]), append([]string{"-c", cfg}, argv[1:]...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NOTIFY_SOCKET=" + sock, "JOURNAL_STREAM=8:1234"}
	d.Daemon = testenv.StartDaemon(t, cmd)
	return d
}

// told waits until the daemon has told systemd (sd_notify) something
// containing want.
func (d *daemon) told(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	d.WaitFor(t, "sd_notify "+want, timeout, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return strings.Contains(strings.Join(d.messages, "\n"), want)
	})
}

// TestDaemonsWaitForDatabaseAndReload starts each daemon with PostgreSQL
// down, as after a host's boot: it stays up, says why it is not ready
// (one warning, STATUS=), keeps a SIGHUP for later instead of dying of it,
// stops promptly on SIGTERM, and once the database is there becomes ready
// and works. Then SIGHUP reloads its configuration, and a configuration
// that does not load is an error line (priority 3) while it goes on.
func TestDaemonsWaitForDatabaseAndReload(t *testing.T) {
	bin := buildTools(t)
	pg, url := storetest.Private(t)
	if _, _, err := store.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	pg.Stop(t)
	dir := testenv.ShortTempDir(t, "dh-life")
	cfg := filepath.Join(dir, "config.toml")
	config := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[deployments.app]
repository = "acme/app"
branches = ["main"]
path = %q
steps = [["true"]]
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), url, filepath.Join(dir, "app"))
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The queues, as the install makes them: no consumer creates its own.
	for _, q := range []string{"main", "status", "app", "nginx", "cert"} {
		if err := queue.Open(filepath.Join(dir, "queues", q)).Init(); err != nil {
			t.Fatal(err)
		}
	}

	// SIGTERM while waiting: exit 0, promptly.
	for _, argv := range daemons {
		d := startDaemon(t, bin, dir, cfg, argv)
		d.told(t, "STATUS=waiting for the database: ", 30*time.Second)
		d.Stop(t)
	}

	var ds []*daemon
	for _, argv := range daemons {
		ds = append(ds, startDaemon(t, bin, dir, cfg, argv))
	}
	for _, d := range ds {
		d.told(t, "STATUS=waiting for the database: ", 30*time.Second)
		d.Cmd.Process.Signal(syscall.SIGHUP) // kept until it runs
	}
	time.Sleep(1500 * time.Millisecond) // a few attempts
	for _, d := range ds {
		d.Running(t)
	}
	pg.Start(t)
	for _, d := range ds {
		// Ready (and saying so) while it waited; working once connected.
		d.WaitFor(t, "sd_notify STATUS= of a daemon at work", 60*time.Second, func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			last := d.messages[len(d.messages)-1]
			return strings.HasPrefix(last, "READY=1\nSTATUS=") && !strings.Contains(last, "waiting")
		})
		d.Logged(t, "<6>level=INFO msg=\"configuration reloaded\"", 10*time.Second)
		// One warning per distinct reason, never one per attempt.
		warnings := regexp.MustCompile(`(?m)^<4>level=WARN msg="waiting for the database" (.*) retry=\S+$`).FindAllStringSubmatch(d.Out.String(), -1)
		seen := map[string]bool{}
		for _, w := range warnings {
			if seen[w[1]] {
				t.Errorf("%s repeated the warning %q:\n%s", d.name, w[1], d.Out.String())
			}
			seen[w[1]] = true
		}
		if len(warnings) == 0 {
			t.Errorf("%s logged no warning while it waited:\n%s", d.name, d.Out.String())
		}
	}

	// dh-route works now: a delivery is decided and recorded.
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data, err := (&event.GitHubEvent{Delivery: "after-wait", Event: "push", ReceivedAt: time.Now(),
		Payload: []byte(`{"ref":"refs/heads/main","after":"e5","repository":{"full_name":"other/repo"}}`)}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Open(filepath.Join(dir, "queues", "main")).Publish(data); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if row, err := st.GetEvent(context.Background(), "after-wait"); err == nil && row.Status == store.StatusVoided {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dh-route did not decide the delivery after the database came back:\n%s", ds[0].Out.String())
		}
	}

	// A configuration that does not load: an error line; the daemon goes on.
	os.WriteFile(cfg, []byte(config+"brnaches = [\"x\"]\n"), 0o644)
	for _, d := range ds {
		d.Cmd.Process.Signal(syscall.SIGHUP)
	}
	for _, d := range ds {
		d.Logged(t, "<3>level=ERROR msg=\"configuration reload failed; keeping the old one\"", 10*time.Second)
		d.Stop(t)
	}
}
