// Package systemd_test checks the shipped units with systemd's own tools:
// `systemd-analyze verify` must print nothing, and the exposure that
// `systemd-analyze security --offline=yes` computes must stay within each
// unit's budget.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// budget is the highest exposure each service may have.
var budget = map[string]float64{
	"dh-receive.service":    1.3, // no PrivateUsers=: it checks who connects to the hook socket
	"dh-route.service":      1.4, // no PrivateUsers=: it checks who owns an entry; no IPAddressDeny=: it reaches GitHub's API (commit statuses)
	"dh-deploy@.service":    1.5,
	"dh-nginx.service":      1.3, // no PrivateUsers=: it checks who owns an entry
	"dh-cert.service":       1.3, // likewise
	"dh-cert-renew.service": 1.1,
	// The root oneshots the stages start through systemctl.
	"dh-nginx-test.service": 2.2,
	"dh-certbot.service":    2.3,
}

// units copies the shipped units into a directory, with ExecStart pointing
// at an executable that exists here (verify checks that it does), and an
// instance of the template.
func units(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.service")
	more, _ := filepath.Glob("*.socket")
	timers, _ := filepath.Glob("*.timer")
	files = append(append(files, more...), timers...)
	if len(files) < 10 {
		t.Fatalf("found units %v; want the 10 shipped ones", files)
	}
	dir := t.TempDir()
	bin := regexp.MustCompile(`/usr/local/bin/dh-[a-z]+`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data = bin.ReplaceAll(data, []byte(self))
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if f == "dh-deploy@.service" {
			os.WriteFile(filepath.Join(dir, "dh-deploy@api.service"), data, 0o644)
		}
	}
	return dir
}

func TestVerify(t *testing.T) {
	analyze := testenv.Command(t, "systemd-analyze")
	dir := units(t)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "dh-deploy@.service" {
			continue // a template is verified through its instance
		}
		cmd := exec.Command(analyze, "verify", filepath.Join(dir, e.Name()))
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s = %v\n%s", e.Name(), err, out)
		}
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestSecurityExposure(t *testing.T) {
	analyze := testenv.Command(t, "systemd-analyze")
	dir := units(t)
	var table strings.Builder
	table.WriteString("UNIT                    EXPOSURE  BUDGET\n")
	for unit, max := range budget {
		file := unit
		if unit == "dh-deploy@.service" {
			file = "dh-deploy@api.service"
		}
		out, _ := exec.Command(analyze, "security", "--offline=yes", filepath.Join(dir, file)).CombinedOutput()
		m := exposureRE.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s printed no exposure:\n%s", file, out)
			continue
		}
		got, _ := strconv.ParseFloat(string(m[1]), 64)
		table.WriteString(strings.TrimSpace(strings.Join([]string{padRight(unit, 24), padRight(string(m[1]), 10), strconv.FormatFloat(max, 'f', 1, 64)}, "")) + "\n")
		if got > max {
			t.Errorf("%s: exposure %.1f; want at most %.1f", unit, got, max)
		}
	}
	t.Logf("systemd-analyze security --offline=yes:\n%s", table.String())
}

func padRight(s string, n int) string { return s + strings.Repeat(" ", max(1, n-len(s))) }

// TestUnitsShape: every daemon reloads its configuration on SIGHUP
// (systemctl reload), and no unit that runs as a stage user can reach
// root through a setuid program: each sets NoNewPrivileges= and an empty
// capability bounding set (sudo cannot work there; root work goes through
// polkit and the root oneshots).
func TestUnitsShape(t *testing.T) {
	files, _ := filepath.Glob("*.service")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(data)
		has := func(line string) bool {
			return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit)
		}
		// dh-receive restarts instead, behind its socket (see its unit).
		if has("Type=notify") && !has("ExecReload=/bin/kill -HUP $MAINPID") && f != "dh-receive.service" {
			t.Errorf("%s: a daemon without ExecReload=/bin/kill -HUP $MAINPID", f)
		}
		if strings.Contains(unit, "\nUser=") {
			for _, line := range []string{"NoNewPrivileges=yes", "CapabilityBoundingSet="} {
				if !has(line) {
					t.Errorf("%s: runs as a stage user without %s", f, line)
				}
			}
		}
	}
}
