package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
