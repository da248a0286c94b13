package config

import (
	"fmt"
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

	// TimeZone is the IANA time zone the page shows its times in
	// ("Europe/London"), or "Local" for the host's. Default "UTC".
	// /status.json always gives RFC 3339 times in UTC.
	TimeZone string `toml:"time_zone"`

	// Refresh, when set, makes every page reload itself this often (an
	// HTML <meta http-equiv="refresh">, no JavaScript); ?refresh=SECONDS
	// asks for another period, ?refresh=0 for none. From MinRefresh to
	// MaxRefresh, in whole seconds. Default 0: no refresh.
	Refresh time.Duration `toml:"refresh"`
}

// The bounds of Status.Refresh and of the page's ?refresh=SECONDS.
const (
	MinRefresh = 5 * time.Second
	MaxRefresh = time.Hour
)

// CheckRefresh says what is wrong with a refresh period, or returns nil:
// 0 (none), or whole seconds from MinRefresh to MaxRefresh.
func CheckRefresh(d time.Duration) error {
	if d != 0 && (d < MinRefresh || d > MaxRefresh || d%time.Second != 0) {
		return fmt.Errorf("%v: want 0 (no refresh) or whole seconds from %v to %v", d, MinRefresh, MaxRefresh)
	}
	return nil
}

// Location is the time zone of the page: time_zone, UTC by default.
func (s *Status) Location() (*time.Location, error) {
	if s.TimeZone == "" {
		return time.UTC, nil
	}
	return zone(s.TimeZone)
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
	if _, err := s.Location(); err != nil {
		ck.add(k("status", "time_zone"), "%v", err)
		ck.hint(`use an IANA name such as "Europe/London" or "UTC" (see /usr/share/zoneinfo)`)
	}
	if err := CheckRefresh(s.Refresh); err != nil {
		ck.add(k("status", "refresh"), "%v", err)
	}
	if s.TokenFile != "" {
		ck.credentialPath(k("status", "token_file"), "", s.TokenFile)
	}
}
