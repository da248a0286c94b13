package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// Status is the [status] table: dh-route's read-only status page
// (GET /status, /status.json and the run logs under /status/logs/).
type Status struct {
	// Listen is where dh-route run serves the status page: "host:port"
	// (TCP) or an absolute path (a unix socket, mode 0660). Empty, the
	// default, serves nothing. A TCP address, loopback included, needs
	// token_file: a site nginx proxies to a loopback port would otherwise
	// publish the page (and the run logs) to anyone. A unix socket may do
	// without: its file mode is the access control.
	Listen string `toml:"listen"`

	// TokenFile holds the token every request must carry as
	// "Authorization: Bearer TOKEN" (a token in the query string is
	// refused); one trailing newline is ignored. A relative name is looked
	// up as Config.CredentialPath says. Required for a TCP listen; optional
	// for a unix socket, which anyone who may connect to it can then read.
	TokenFile string `toml:"token_file"`

	// StallAfter is how old the oldest entry of a queue may grow while no
	// worker holds the queue's lock before /healthz (and the metric
	// dh_route_queue_stalled) reports the queue stalled: its worker
	// stopped. Default "10m".
	StallAfter time.Duration `toml:"stall_after"`
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
		_, port, err := net.SplitHostPort(l)
		if err != nil {
			ck.add(key, "must be host:port or an absolute unix socket path")
			break
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			ck.add(key, "port %q must be a number from 0 to 65535", port)
		}
		if s.TokenFile == "" {
			// Loopback is no protection: a proxy on this host (an nginx
			// site's proxy_pass) reaches it for anyone.
			ck.add(key, "%q is a TCP address, and status.token_file is not set", l)
			ck.hint(`set token_file, or listen on a unix socket ("/run/dh-route/status.sock")`)
		}
	}
	ck.positive(k("status", "stall_after"), s.StallAfter)
	if s.TokenFile != "" {
		ck.credentialPath(k("status", "token_file"), "", s.TokenFile)
	}
}
