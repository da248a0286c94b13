package status_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/png" // image.Decode reads PNG
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// chromiumFlags are those this machine needs for a headless Chromium that
// makes no connection but to the page (docs/development.md).
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
	"--no-default-browser-check", "--force-device-scale-factor=1",
}

// chromium runs Debian's Chromium once with a fresh profile and returns
// its standard output. It runs in its own process group, which is killed
// when it is done (or after a minute), so no renderer or zygote survives.
func chromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+filepath.Join(home, "profile")), args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		// The browser's children are in its group: end any that remain.
		if kerr := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			t.Errorf("kill chromium's process group: %v", kerr)
		}
	}
	// Its crash handlers start sessions of their own; they are known by
	// this run's private home directory in their command line.
	killMatching(home)
	if err != nil {
		tail := stderr.Bytes()
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, tail)
	}
	return stdout.Bytes()
}

// killMatching kills the processes whose command line contains marker.
func killMatching(marker string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestChromium renders the status page of a test installation in a real
// headless Chromium: a screenshot that must be a non-blank PNG showing the
// colours of the states, and the DOM, which must hold the deployments,
// their states, a run's commit with its subject, author and link, who
// triggered it, its times in the configured zone, the refresh and a log
// link; the log link is followed.
func TestChromium(t *testing.T) {
	bin := testenv.Command(t, "chromium")
	in := statustest.New(t, "")
	cfg := *in.Config
	cfg.Status.TimeZone = "Europe/London"
	srv := httptest.NewServer(status.New(func() *config.Config { return &cfg }, in.Store,
		status.Options{Now: func() time.Time { return in.Now }})) // 127.0.0.1, a free port
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s; want 127.0.0.1", srv.URL)
	}
	url := srv.URL + "/status?refresh=600"

	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, bin, "--window-size=1280,1600", "--screenshot="+shot, url)
	checkScreenshot(t, shot)
	if keep := os.Getenv("DH_STATUS_SCREENSHOT"); keep != "" { // to look at it: DH_STATUS_SCREENSHOT=/tmp/status.png
		if data, err := os.ReadFile(shot); err != nil || os.WriteFile(keep, data, 0o644) != nil {
			t.Errorf("keep the screenshot in %s: failed", keep)
		}
	}

	dom := string(chromium(t, bin, "--dump-dom", url))
	for name, state := range statustest.Deployments {
		re := regexp.MustCompile(`<tr data-deployment="` + name + `">\s*<td><a href="#deployment-` + name + `">` + name +
			`</a></td>\s*<td><span class="state state-` + state + `" data-state="` + state + `">` + state + `</span>`)
		if !re.MatchString(dom) {
			t.Errorf("chromium's DOM: no row for %s in state %s", name, state)
		}
	}
	logURL := status.LogURL("api", in.Runs["api-ok"])
	for _, want := range []string{
		"<title>dh-deployer status</title>",
		`<code title="` + statustest.CommitOK + `">` + statustest.CommitOK[:12] + `</code>`,
		`<a class="log" href="` + logURL + `">log</a>`,
		`<tr data-queue="old">`,
		in.FailedEntry,
		"&lt;script&gt;alert(\"x\")&lt;/script&gt;", // shown as text
		`<meta http-equiv="refresh" content="600">`,
		`times in <span id="time-zone">Europe/London</span>`,
		`<td class="t">2026-11-22 09:00:30 GMT<br><span class="meta wait">queued 2026-11-22 09:00:00 GMT, waited 30s</span></td>`, // api-ok
		`<a class="commit" href="https://github.com/ducompsoc/durhack/commit/` + statustest.CommitOK + `"><code title="` + statustest.CommitOK + `">`,
		`<span class="subject">` + statustest.SubjectOK + `</span>`,
		`<span class="meta author">Alice Example &lt;alice@example.org&gt;</span>`,
		`Mallory "&lt;/td&gt;&lt;script&gt;x&lt;/script&gt;" &lt;m@example.org&gt;`, // the hostile author, as text
		`pusher=&lt;b&gt;eve&lt;/b&gt; sender="x" onmouseover="alert(1)"`,           // the hostile triggered_by, as text
		`<td class="t took">2m30s</td>`,
		`<td class="t took">2m0s so far</td>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("chromium's DOM: no %q", want)
		}
	}
	if strings.Contains(dom, "<b>") || regexp.MustCompile(`<[^>]*\sonmouseover=`).MatchString(dom) {
		t.Errorf("chromium's DOM holds an element or attribute from a run's triggered_by")
	}
	checkNoScript(t, dom)

	// The log link leads to the log, which Chromium shows as text.
	logDOM := string(chromium(t, bin, "--dump-dom", srv.URL+logURL))
	if !strings.Contains(logDOM, "ERR_PNPM build failed") {
		t.Errorf("chromium at %s: no log text in %q", logURL, logDOM)
	}
}

// checkScreenshot decodes the PNG and checks it is not blank and shows
// the badge colour of each state the installation has.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil || format != "png" {
		t.Fatalf("screenshot %s: %v (format %q); want a PNG", path, err, format)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot is %dx%d; want the 1280x1600 window", b.Dx(), b.Dy())
	}
	badges := map[string][3]uint8{ // the page's CSS
		"idle":    {0x1a, 0x7f, 0x37},
		"running": {0x09, 0x69, 0xda},
		"paused":  {0x9a, 0x67, 0x00},
		"waiting": {0x6e, 0x77, 0x81},
		"failing": {0xcf, 0x22, 0x2e},
	}
	seen := map[string]int{}
	nonWhite := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
			if c != [3]uint8{255, 255, 255} {
				nonWhite++
			}
			for name, want := range badges {
				if near(c, want) {
					seen[name]++
				}
			}
		}
	}
	if total := b.Dx() * b.Dy(); nonWhite < total/200 {
		t.Errorf("screenshot: %d of %d pixels are not white; want a rendered page", nonWhite, total)
	}
	for name := range badges {
		if seen[name] < 50 {
			t.Errorf("screenshot: %d pixels of the %q badge colour; want a %s badge", seen[name], name, name)
		}
	}
	if t.Failed() {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("dh-status-%d.png", time.Now().UnixNano()))
		if data, err := os.ReadFile(path); err == nil && os.WriteFile(keep, data, 0o644) == nil {
			t.Logf("screenshot kept at %s", keep)
		}
	}
}

func near(a, b [3]uint8) bool {
	for i := range a {
		if d := int(a[i]) - int(b[i]); d < -6 || d > 6 {
			return false
		}
	}
	return true
}
