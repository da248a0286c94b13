// Package hosttest gives tests a real host: Debian 12 booted with systemd
// 252 as PID 1 in a systemd-nspawn container on a private network, as
// pkg/store/storetest gives them a PostgreSQL. Tests install into it
// (make install DESTDIR=h.Dir()), run commands inside it as root, reboot
// it and read its journal.
//
// The root file system is built once by the script mkroot (debootstrap,
// then apt in a chroot) and cached outside the clone, under
// $DH_TEST_CACHE or /var/cache/dh-deployer-test, keyed by its package
// list: a cold build takes a minute or two, later runs find it at once.
// Each host is an overlay on that cached root (its changes go to a
// directory of the test), so the cache is never written and a reboot keeps
// what the host wrote.
//
// Needs root, debootstrap and systemd-nspawn (Debian packages debootstrap
// and systemd-container; make deps installs them). A missing piece fails
// the test, never skips it.
package hosttest

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

//go:embed mkroot
var mkroot []byte

// Host is one booted (or ready to boot) container.
type Host struct {
	dir    string // the merged root, as the host sees it
	work   string // the test's directory: upper, work, merged, logs
	name   string
	nspawn *exec.Cmd
	exited chan error
	pid    int // the container's PID 1, as the host sees it
	boots  int
}

// New prepares a host from the cached root (building it if needed) without
// booting it, so that the test can install into Dir first. Everything is
// removed when the test ends; DH_HOSTTEST_KEEP=1 keeps the directory and
// prints it.
func New(t testing.TB) *Host {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatalf("hosttest boots a container: run the test as root (CI does)")
	}
	testenv.Command(t, "debootstrap")
	testenv.Command(t, "systemd-nspawn")
	root := Root(t)
	work := testenv.ShortTempDir(t, "dhhost")
	if os.Getenv("DH_HOSTTEST_KEEP") != "" {
		keep, err := os.MkdirTemp("/var/tmp", "dhhost.")
		if err != nil {
			t.Fatal(err)
		}
		work = keep
		t.Cleanup(func() { t.Logf("hosttest: kept %s", keep) })
	}
	h := &Host{work: work, dir: filepath.Join(work, "root"), name: "dhtest" + strconv.Itoa(os.Getpid()%100000)}
	for _, d := range []string{"upper", "ovl", "root"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, filepath.Join(work, "upper"), filepath.Join(work, "ovl"))
	if err := syscall.Mount("overlay", h.dir, "overlay", 0, opts); err != nil {
		t.Fatalf("mount an overlay on the cached root: %v", err)
	}
	// The host's own name resolves, as on any Debian host (sudo asks).
	hosts := "127.0.0.1\tlocalhost\n127.0.1.1\tdhtest\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if err := os.WriteFile(h.Path("/etc/hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered after ShortTempDir's removal, so it runs before it.
	t.Cleanup(func() {
		h.stop(t)
		if err := syscall.Unmount(h.dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", h.dir, err)
		}
	})
	return h
}

// Root returns the cached root file system, building it first if there is
// none for the current package list.
func Root(t testing.TB) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "mkroot")
	if err := os.WriteFile(script, mkroot, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build the container's root (pkg/hosttest/mkroot): %v\n%s", err, stderr.Bytes())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Logf("hosttest: built the container's root in %v", d.Round(time.Second))
	}
	return strings.TrimSpace(string(out))
}

// Dir is the container's root directory as the host sees it: files written
// under it appear in the container at the same path below /.
func (h *Host) Dir() string { return h.dir }

// Path is the host's path of the container's path p.
func (h *Host) Path(p string) string { return filepath.Join(h.dir, p) }

// Boot starts the container and returns once systemd says the system is
// running (or degraded: the test then sees which unit failed).
func (h *Host) Boot(t testing.TB) {
	t.Helper()
	h.boots++
	log, err := os.Create(filepath.Join(h.work, fmt.Sprintf("nspawn-%d.log", h.boots)))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(testenv.Command(t, "systemd-nspawn"), "--machine="+h.name, "-D", h.dir, "-b",
		"--private-network", "--register=no", "--keep-unit", "--console=passive")
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	h.nspawn, h.exited = cmd, make(chan error, 1)
	go func() { h.exited <- cmd.Wait() }()
	h.pid = 0
	for deadline := time.Now().Add(30 * time.Second); h.pid == 0; {
		select {
		case err := <-h.exited:
			h.exited <- err
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("systemd-nspawn exited at boot: %v\n%s", err, b)
		default:
		}
		h.pid = pid1(cmd.Process.Pid)
		if time.Now().After(deadline) {
			t.Fatalf("the container's systemd did not start within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// systemctl fails until the container's D-Bus listens: wait for it first.
	out, err := h.exec(context.Background(), 3*time.Minute,
		"until test -S /run/dbus/system_bus_socket; do sleep 0.1; done; systemctl is-system-running --wait")
	if state := strings.TrimSpace(out); err != nil && state != "degraded" {
		t.Fatalf("the container did not boot: is-system-running = %q (%v)", state, err)
	} else if state == "degraded" {
		failed, _ := h.exec(context.Background(), 10*time.Second, "systemctl --failed --no-legend")
		t.Logf("hosttest: booted degraded; failed units:\n%s", failed)
	}
}

// pid1 finds the container's init among the children of systemd-nspawn.
func pid1(nspawn int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && strings.HasSuffix(exe, "/systemd") {
			return pid
		}
	}
	return 0
}

// Reboot reboots the container the way an operator does (systemctl
// reboot) and waits for it to be up again.
func (h *Host) Reboot(t testing.TB) {
	t.Helper()
	h.exec(context.Background(), 10*time.Second, "systemctl reboot")
	h.wait(t, 2*time.Minute)
	h.Boot(t)
}

// wait waits for systemd-nspawn to exit.
func (h *Host) wait(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-h.exited:
	case <-time.After(d):
		h.nspawn.Process.Kill()
		<-h.exited
		t.Errorf("the container did not stop within %v: killed", d)
	}
	h.nspawn = nil
}

func (h *Host) stop(t testing.TB) {
	if h.nspawn == nil {
		return
	}
	if t.Failed() {
		out, _ := h.exec(context.Background(), 20*time.Second, "journalctl -b --no-pager -n 150 -p info")
		t.Logf("hosttest: the end of the container's journal:\n%s", out)
	}
	// SIGRTMIN+4 asks systemd to power off, whatever state it is in.
	syscall.Kill(h.pid, syscall.Signal(34+4))
	h.wait(t, time.Minute)
}

// Run runs the shell script as root inside the container, with a clean
// environment, and returns its output (stdout and stderr); it fails the
// test if the script fails or takes longer than two minutes.
func (h *Host) Run(t testing.TB, script string) string {
	t.Helper()
	out, err := h.Try(script)
	if err != nil {
		t.Fatalf("in the container: %s\n%v\n%s", script, err, out)
	}
	return out
}

// Try is Run without failing the test: the output and the script's error.
func (h *Host) Try(script string) (string, error) {
	return h.exec(context.Background(), 2*time.Minute, script)
}

func (h *Host) exec(ctx context.Context, d time.Duration, script string) (string, error) {
	if h.pid == 0 {
		return "", errors.New("the container is not running")
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(h.pid), "-a", "--",
		"/usr/bin/env", "-i", "PATH="+progpath.SystemPATH,
		"HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "/bin/sh", "-ec", script)
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", d, err)
	}
	return string(out), err
}

// WaitFor runs script every half second until it succeeds or d passes,
// then fails the test with what, the script and its last output.
func (h *Host) WaitFor(t testing.TB, d time.Duration, what, script string) string {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(d); ; {
		if out, err = h.Try(script); err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s\n%v\n%s", what, d, script, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
