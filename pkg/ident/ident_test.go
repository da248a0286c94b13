package ident

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestParseCommit(t *testing.T) {
	for _, tt := range []struct {
		sha string
		ok  bool
	}{
		{strings.Repeat("a1", 20), true},
		{strings.Repeat("0f", 32), true},
		{strings.Repeat("a", 39), false},
		{strings.Repeat("a", 41), false},
		{strings.Repeat("a", 63), false},
		{strings.Repeat("A", 40), false},
		{strings.Repeat("a", 39) + "\n", false},
		{"-" + strings.Repeat("a", 39), false},
		{" " + strings.Repeat("a", 39), false},
		{"", false},
	} {
		_, err := ParseCommit(tt.sha)
		if (err == nil) != tt.ok || err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.sha)) {
			t.Errorf("ParseCommit(%q) = %v; want ok %v (else an error naming it)", tt.sha, err, tt.ok)
		}
	}
}

func TestParseRef(t *testing.T) {
	git := testenv.Command(t, "git")
	for _, tt := range []struct {
		ref string
		ok  bool
	}{
		{"refs/heads/main", true},
		{"refs/heads/feature/new-api_2", true},
		{"refs/heads/release-1.2", true},
		{"refs/tags/v1.2.3", true},
		{"refs/heads/héllo", true},
		{"refs/heads/a.b", true},
		{"main", false},
		{"heads/main", false},
		{"refs/remotes/origin/main", false},
		{"refs/pull/1/head", false},
		{"-x", false},
		{"refs/heads/", false},
		{"refs/tags/", false},
		{"refs/heads/-x", false},
		{"refs/heads/../x", false},
		{"refs/heads/a..b", false},
		{"refs/heads/.x", false},
		{"refs/heads/a/.x", false},
		{"refs/heads/x.lock", false},
		{"refs/heads/x.lock/y", false},
		{"refs/heads/x.", false},
		{"refs/heads/x/", false},
		{"refs/heads/a//b", false},
		{"refs/heads/@", false},
		{"refs/heads/a@{1}", false},
		{"refs/heads/a b", false},
		{"refs/heads/a\tb", false},
		{"refs/heads/a\nb", false},
		{"refs/heads/a\x7fb", false},
		{"refs/heads/a~1", false},
		{"refs/heads/a^", false},
		{"refs/heads/a:b", false},
		{"refs/heads/a?", false},
		{"refs/heads/a*", false},
		{"refs/heads/a[b", false},
		{"refs/heads/a\\b", false},
		{"refs/heads/\xff", false},
		{"refs/heads/" + strings.Repeat("x", 1025), false},
	} {
		_, err := ParseRef(tt.ref)
		if (err == nil) != tt.ok || err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.ref)) {
			t.Errorf("ParseRef(%q) = %v; want ok %v (else an error naming it)", tt.ref, err, tt.ok)
		}
		// ParseRef is at least as strict as git.
		if err == nil {
			cmd := exec.Command(git, "check-ref-format", tt.ref)
			cmd.Env = []string{"LC_ALL=C"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("ParseRef(%q) = nil, but git check-ref-format refuses it: %v %s", tt.ref, err, out)
			}
		}
	}
}

func TestParseGUID(t *testing.T) {
	for s, want := range map[string]bool{
		"72d3162e-cc78-11e3-81ab-4c9367dc0958": true, "D4049330-377E-11ED-9C2E-1AE286AAB35F": true,
		"": false, "72d3162e": false, "../../etc/passwd": false, "72d3162e-cc78-11e3-81ab-4c9367dc0958\n": false,
	} {
		d, err := ParseGUID(s)
		if (err == nil) != want {
			t.Errorf("ParseGUID(%q) = %v; want ok %v", s, err, want)
		}
		if err == nil {
			if _, err := ParseDelivery(string(d)); err != nil {
				t.Errorf("ParseDelivery(%q) = %v; want every GUID a delivery", s, err)
			}
		}
	}
}

func TestParseRepository(t *testing.T) {
	for s, want := range map[string]bool{
		"octo/app": true, "Octo-1/app.go_2": true, "a/..x": true,
		"": false, "octo": false, "/app": false, "octo/": false, "./app": false, "octo/..": false,
		"o/a/b": false, "octo/a p": false, "octo/app\n": false, "-/x;": false,
	} {
		if _, err := ParseRepository(s); (err == nil) != want {
			t.Errorf("ParseRepository(%q) = %v; want ok %v", s, err, want)
		}
	}
}

func TestParseDeliveryAndName(t *testing.T) {
	for s, want := range map[string]bool{
		"hook-0123": true, "72d3162e-cc78-11e3-81ab-4c9367dc0958": true, "a:b.c_d": true,
		"": false, "-x": false, ".x": false, "a/b": false, "a b": false, strings.Repeat("a", 129): false,
	} {
		if _, err := ParseDelivery(s); (err == nil) != want {
			t.Errorf("ParseDelivery(%q) = %v; want ok %v", s, err, want)
		}
	}
	for s, want := range map[string]bool{
		"api": true, "0-x": true, strings.Repeat("a", MaxDeploymentName): true,
		"": false, "-api": false, "Api": false, "a_b": false, "a/b": false, strings.Repeat("a", MaxDeploymentName+1): false,
	} {
		if _, err := ParseDeploymentName(s); (err == nil) != want {
			t.Errorf("ParseDeploymentName(%q) = %v; want ok %v", s, err, want)
		}
	}
}

// TestParseIDsMatchPatterns checks ParseDelivery, ParseGUID and
// ParseEvent, byte loops, against the regular expressions they stand for,
// on every one-byte change of valid ids and on lengths around the limits.
func TestParseIDsMatchPatterns(t *testing.T) {
	deliveryRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	guidRE := regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	eventRE := regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	seeds := []string{"72d3162e-cc78-11e3-81ab-4c9367dc0958", "hook-0123", "pull_request_review", "a",
		strings.Repeat("e", 63), strings.Repeat("e", 64), strings.Repeat("e", 65),
		strings.Repeat("b", 127), strings.Repeat("c", 128), strings.Repeat("d", 129)}
	var all []string
	for _, s := range seeds {
		all = append(all, s, s[1:], s+"0", "-"+s)
		for i := range len(s) {
			for _, c := range []byte("\x00\n -./09:@AFGZ[_`afgz{\x7f\x80\xff") {
				all = append(all, s[:i]+string([]byte{c})+s[i+1:])
			}
		}
	}
	for _, s := range all {
		if _, err := ParseDelivery(s); (err == nil) != deliveryRE.MatchString(s) {
			t.Errorf("ParseDelivery(%q) = %v; want ok %v", s, err, deliveryRE.MatchString(s))
		}
		if _, err := ParseGUID(s); (err == nil) != guidRE.MatchString(s) {
			t.Errorf("ParseGUID(%q) = %v; want ok %v", s, err, guidRE.MatchString(s))
		}
		if _, err := ParseEvent(s); (err == nil) != eventRE.MatchString(s) {
			t.Errorf("ParseEvent(%q) = %v; want ok %v", s, err, eventRE.MatchString(s))
		}
	}
}

func TestParseEvent(t *testing.T) {
	for s, want := range map[string]bool{
		"push": true, "ping": true, "workflow_run": true, "check_suite2": true, "a" + strings.Repeat("b", 63): true,
		"": false, "Push": false, "push!": false, "_push": false, "2push": false, "push run": false,
		"push\n": false, "a" + strings.Repeat("b", 64): false,
	} {
		if _, err := ParseEvent(s); (err == nil) != want {
			t.Errorf("ParseEvent(%q) = %v; want ok %v", s, err, want)
		}
	}
}
