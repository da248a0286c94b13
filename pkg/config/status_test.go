package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatusListen(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string // "" for valid; else part of the error
		network   string
	}{
		{"off by default", "", "", ""},
		// Issue 14, attack 5: a site's proxy_pass to a loopback port
		// published the token-less page; every TCP listener needs the token.
		{"loopback v4 without token", "[status]\nlisten = \"127.0.0.1:3401\"\n", `status.listen: "127.0.0.1:3401" is a TCP address, and status.token_file is not set`, ""},
		{"loopback v6 without token", "[status]\nlisten = \"[::1]:3401\"\n", `status.token_file is not set`, ""},
		{"localhost without token", "[status]\nlisten = \"localhost:3401\"\n", `status.token_file is not set`, ""},
		{"loopback with token", "[status]\nlisten = \"127.0.0.1:3401\"\ntoken_file = \"status-token\"\n", "", "tcp"},
		{"unix socket", "[status]\nlisten = \"/run/dh-route/status.sock\"\n", "", "unix"},
		{"public with token", "[status]\nlisten = \"0.0.0.0:3401\"\ntoken_file = \"/etc/dh-deployer/status-token\"\n", "", "tcp"},
		{"credential name", "[status]\nlisten = \"192.0.2.1:3401\"\ntoken_file = \"status-token\"\n", "", "tcp"},
		{"public without token", "[status]\nlisten = \"0.0.0.0:3401\"\n", `status.listen: "0.0.0.0:3401" is a TCP address, and status.token_file is not set`, ""},
		{"all addresses without token", "[status]\nlisten = \":3401\"\n", `status.listen: ":3401" is a TCP address`, ""},
		{"host name without token", "[status]\nlisten = \"example.org:3401\"\n", `status.token_file is not set`, ""},
		{"mapped loopback without token", "[status]\nlisten = \"[::ffff:127.0.0.1]:3401\"\n", `status.token_file is not set`, ""},
		{"no port", "[status]\nlisten = \"127.0.0.1\"\n", `status.listen: must be host:port or an absolute unix socket path`, ""},
		{"bad port", "[status]\nlisten = \"127.0.0.1:http\"\n", `status.listen: port "http" must be a number`, ""},
		{"long socket", "[status]\nlisten = \"/" + strings.Repeat("s", 110) + "\"\n", `status.listen: unix socket path longer than 107 bytes`, ""},
		{"escaping token file", "[status]\nlisten = \"127.0.0.1:3401\"\ntoken_file = \"../token\"\n", `status.token_file: must be absolute, or a name inside $CREDENTIALS_DIRECTORY`, ""},
		{"misspelt key", "[status]\nlisten = \"127.0.0.1:3401\"\ntoken = \"x\"\n", `unknown key "status.token"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			c, err := Load(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load(%q) = %v; want no error", tt.doc, err)
				}
				if network, _ := c.Status.ListenNetwork(); network != tt.network {
					t.Errorf("ListenNetwork() = %q; want %q", network, tt.network)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%q) = %v; want an error containing %q", tt.doc, err, tt.want)
			}
		})
	}
}

func TestStatusToken(t *testing.T) {
	c := Default()
	if tok, err := c.StatusToken(os.Getenv); tok != nil || err != nil {
		t.Errorf("StatusToken() without token_file = %q, %v; want nil, nil", tok, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "status-token")
	if err := os.WriteFile(file, []byte("k3BpXq9vL2mN8rT4wY7zA1cE5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Status.TokenFile = file
	tok, err := c.StatusToken(os.Getenv)
	if err != nil || string(tok) != "k3BpXq9vL2mN8rT4wY7zA1cE5" {
		t.Errorf("StatusToken() = %q, %v; want the file's token", tok, err)
	}
}

// TestStatusPageKeys checks status.time_zone and status.refresh: valid
// values load, others fail at load with the key and the fix.
func TestStatusPageKeys(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string // "" for valid; else part of the error
		zone      string // the Location's name, when valid
		refresh   time.Duration
	}{
		{"defaults", "", "", "UTC", 0},
		{"London", "[status]\ntime_zone = \"Europe/London\"\n", "", "Europe/London", 0},
		{"host's zone", "[status]\ntime_zone = \"Local\"\n", "", "Local", 0},
		{"refresh", "[status]\nrefresh = \"30s\"\n", "", "UTC", 30 * time.Second},
		{"refresh at the bounds", "[status]\nrefresh = \"1h\"\n", "", "UTC", time.Hour},
		{"unknown zone", "[status]\ntime_zone = \"Mars/Olympus\"\n", `status.time_zone: unknown time zone "Mars/Olympus"`, "", 0},
		{"zone path", "[status]\ntime_zone = \"../../etc/passwd\"\n", `status.time_zone: unknown time zone "../../etc/passwd"`, "", 0},
		{"refresh too often", "[status]\nrefresh = \"1s\"\n", `status.refresh: 1s: want 0 (no refresh) or whole seconds from 5s to 1h0m0s`, "", 0},
		{"refresh too rare", "[status]\nrefresh = \"2h\"\n", `status.refresh: 2h0m0s: want 0`, "", 0},
		{"refresh not whole seconds", "[status]\nrefresh = \"10.5s\"\n", `status.refresh: 10.5s: want 0`, "", 0},
		{"refresh negative", "[status]\nrefresh = \"-30s\"\n", `status.refresh: -30s: want 0`, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.doc))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Load(%q) = %v; want an error containing %q", tt.doc, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(%q) = %v; want no error", tt.doc, err)
			}
			loc, err := c.Status.Location()
			if err != nil || loc.String() != tt.zone || c.Status.Refresh != tt.refresh {
				t.Errorf("Load(%q): Location() = %v, %v, refresh %v; want %s, refresh %v", tt.doc, loc, err, c.Status.Refresh, tt.zone, tt.refresh)
			}
		})
	}
}

// TestCommitURL checks the commit links: built from the configured
// repository and a full SHA only, for deployments fetching from
// github.web_url's host.
func TestCommitURL(t *testing.T) {
	const sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	tests := []struct {
		name, web, repo, clone, commit, want string
	}{
		{"github.com", "https://github.com", "ducompsoc/durhack", "", sha, "https://github.com/ducompsoc/durhack/commit/" + sha},
		{"ssh clone", "https://github.com", "o/n", "git@github.com:o/n.git", sha, "https://github.com/o/n/commit/" + sha},
		{"ssh URL clone", "https://github.com", "o/n", "ssh://git@github.com/o/n.git", sha, "https://github.com/o/n/commit/" + sha},
		{"enterprise", "https://ghe.example.org/", "o/n", "https://ghe.example.org/o/n.git", sha, "https://ghe.example.org/o/n/commit/" + sha},
		{"forge under a path", "https://example.org/git", "o/n", "https://example.org/git/o/n.git", sha, "https://example.org/git/o/n/commit/" + sha},
		{"sha-256", "https://github.com", "o/n", "", sha + sha[:24], "https://github.com/o/n/commit/" + sha + sha[:24]},
		{"local clone", "https://github.com", "o/n", "/srv/git/n.git", sha, ""},
		{"another forge", "https://github.com", "o/n", "https://gitlab.example.org/o/n.git", sha, ""},
		{"enterprise base, github.com clone", "https://ghe.example.org", "o/n", "", sha, ""},
		{"short sha", "https://github.com", "o/n", "", sha[:12], ""},
		{"no commit", "https://github.com", "o/n", "", "", ""},
		{"hostile commit", "https://github.com", "o/n", "", `"><script>alert(1)</script>`, ""},
		{"commit with a path", "https://github.com", "o/n", "", "../../" + sha, ""},
		{"bad repository", "https://github.com", "o/../n", "", sha, ""},
	}
	for _, tt := range tests {
		c := Default()
		c.GitHub.WebURL = tt.web
		d := &Deployment{Repository: tt.repo, CloneURL: tt.clone}
		if got := c.CommitURL(d, tt.commit); got != tt.want {
			t.Errorf("%s: CommitURL(%q) = %q; want %q", tt.name, tt.commit, got, tt.want)
		}
	}
	for _, bad := range []string{`"ftp://github.com"`, `"https://tok@github.com"`, `"https://github.com/?a=b"`, `"github.com"`, `"https://github.com/#x"`} {
		if _, err := Load(writeConfig(t, "[github]\nweb_url = "+bad+"\n")); err == nil || !strings.Contains(err.Error(), "github.web_url: must be an http or https URL") {
			t.Errorf("Load(web_url = %s) = %v; want a github.web_url error", bad, err)
		}
	}
}
