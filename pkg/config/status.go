package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Status is the [status] table: dh-route's read-only status page
// (GET /status, /status.json and the run logs under /status/logs/).
type Status struct {
	// Listen is where dh-route run serves the status page: "host:port"
	// (TCP) or an absolute path (a unix socket, mode 0660). Empty, the
	// default, serves nothing. A TCP address that is not loopback
	// (127.0.0.0/8, ::1, "localhost") needs token_file.
	Listen string `toml:"listen"`

	// TokenFile holds the token every request must carry as
	// "Authorization: Bearer TOKEN" (a token in the query string is
	// refused); one trailing newline is ignored. A relative name is looked
	// up as Config.CredentialPath says. Optional: without it anyone who can
	// reach listen may read the page.
	TokenFile string `toml:"token_file"`
}

// ListenNetwork splits Listen into a network for net.Listen ("tcp" or
// "unix") and an address; "" and "" when the page is off.
func (s *Status) ListenNetwork() (network, address string) {
	switch {
	case s.Listen == "":
		return "", ""
	case strings.HasPrefix(s.Listen, "/"):
		return "unix", s.Listen
	}
	return "tcp", s.Listen
}

// StatusToken reads status.token_file like WebhookSecrets reads a secret.
// It returns nil and no error if no token file is configured.
func (c *Config) StatusToken(getenv func(string) string) ([]byte, error) {
	return c.optionalSecret(c.Status.TokenFile, getenv)
}

func (s *Status) validate(ck *checker) {
	key := k("status", "listen")
	switch l := s.Listen; {
	case l == "":
	case strings.HasPrefix(l, "/"):
		if len(l) > 107 {
			ck.add(key, "unix socket path longer than 107 bytes")
		} else if hasControl(l) {
			ck.add(key, "must not contain control characters")
		}
	default:
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			ck.add(key, "must be host:port or an absolute unix socket path")
			break
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			ck.add(key, "port %q must be a number from 0 to 65535", port)
		}
		if s.TokenFile == "" && !loopback(host) {
			ck.add(key, "%q is not a loopback address, and status.token_file is not set", l)
			ck.hint(`listen on "127.0.0.1:3401" (or a unix socket), or set token_file`)
		}
	}
	if s.TokenFile != "" {
		ck.credentialPath(k("status", "token_file"), "", s.TokenFile)
	}
}

// loopback reports whether host names only loopback addresses. An empty
// host (every address) and names other than localhost are not.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
