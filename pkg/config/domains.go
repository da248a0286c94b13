package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// What an nginx deployment's sites may do beyond the site policy's
// defaults: the keys domains, serve, upstreams and unsafe_directives
// (docs/nginx.md, "Site policy").

// NeverAllowed are the directives (a "*" matches any text) that
// unsafe_directives can never allow: those that configure nginx itself,
// define what every site shares, write files as root or run code, which
// the site policy refuses, and those whose arguments it always checks
// (include, access_log, error_log, server, upstream).
var NeverAllowed = []string{
	"log_format", "load_module", "user", "pid", "env", "daemon", "master_process",
	"worker_*", "lua_*", "*_by_lua*", "perl*", "js_*", "include", "error_log", "access_log",
	"map", "geo", "split_clients", "upstream", "server", "lock_file", "ssl_engine",
	"working_directory", "debug_points", "thread_pool", "pcre_jit", "timer_resolution",
	"*_temp_path", "*_cache_path", "proxy_store", "fastcgi_store", "uwsgi_store", "scgi_store",
}

// NeverAllowedDirective reports whether name matches NeverAllowed.
func NeverAllowedDirective(name string) bool {
	for _, p := range NeverAllowed {
		switch {
		case strings.HasPrefix(p, "*") && strings.HasSuffix(p, "*"):
			if strings.Contains(name, p[1:len(p)-1]) {
				return true
			}
		case strings.HasPrefix(p, "*"):
			if strings.HasSuffix(name, p[1:]) {
				return true
			}
		case strings.HasSuffix(p, "*"):
			if strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		case p == name:
			return true
		}
	}
	return false
}

// DomainCovers reports whether the domains entry d (an exact name or
// "*.suffix") covers the host name or wildcard n: n is d, or d is
// "*.suffix" and n ends with ".suffix" (so "*.example.org" covers
// "a.example.org", "a.b.example.org" and "*.example.org", not
// "example.org"). Names are compared as written: both are lower case.
func DomainCovers(d, n string) bool {
	if d == n {
		return true
	}
	suffix, ok := strings.CutPrefix(d, "*")
	return ok && strings.HasSuffix(n, suffix)
}

// DomainsOverlap reports whether some host name falls inside both
// domains entries a and b: equal entries, an exact name under a
// wildcard, or two wildcards one of which is under the other.
func DomainsOverlap(a, b string) bool {
	return DomainCovers(a, b) || DomainCovers(b, a)
}

// OwnsName reports whether the deployment's Domains cover the host name
// or wildcard n.
func (d *Deployment) OwnsName(n string) bool {
	return slices.ContainsFunc(d.Domains, func(dom string) bool { return DomainCovers(dom, n) })
}

// NormalizeUpstream returns an upstream address in the form Upstreams
// compares: "host:port" with the host in lower case (an IPv6 address in
// brackets, an IPv4-mapped one as IPv4), or "unix:/path". It fails on
// anything else: a missing or bad port, a variable, a relative socket.
func NormalizeUpstream(s string) (string, error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || hasControl(p) || strings.ContainsAny(p, "$\\") {
			return "", fmt.Errorf("%q: a unix socket must be an absolute, clean path", s)
		}
		return s, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: not host:port", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || port != strconv.FormatUint(n, 10) {
		return "", fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("%q: no zones", s)
		}
		return net.JoinHostPort(a.Unmap().String(), port), nil
	}
	host = strings.ToLower(host)
	if host == "" || !hostRE.MatchString(host) || strings.HasPrefix(host, ".") || strings.HasPrefix(host, "-") ||
		strings.Contains(host, "..") {
		return "", fmt.Errorf("%q: bad host name", s)
	}
	return net.JoinHostPort(strings.TrimSuffix(host, "."), port), nil
}

// AllowsUpstream reports whether the normalized address (NormalizeUpstream)
// is one of the deployment's Upstreams.
func (d *Deployment) AllowsUpstream(addr string) bool {
	for _, u := range d.Upstreams {
		if n, err := NormalizeUpstream(u); err == nil && n == addr {
			return true
		}
	}
	return false
}

// validDomain is a domains entry: lower-case DNS labels, optionally after
// "*.".
func validDomain(s string) bool {
	labels := strings.Split(strings.TrimPrefix(s, "*."), ".")
	if len(s) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.ContainsFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) {
			return false
		}
	}
	return true
}

// within reports whether path p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// validateDomainOwners refuses two nginx deployments claiming an
// overlapping name.
func (c *Config) validateDomainOwners(ck *checker) {
	type claim struct{ deployment, domain string }
	var claims []claim
	for _, name := range c.DeploymentNames() {
		d := c.Deployments[name]
		if d == nil || d.Kind != KindNginx {
			continue
		}
		for i, dom := range d.Domains {
			for _, other := range claims {
				if other.deployment != name && DomainsOverlap(dom, other.domain) {
					ck.addSub(k("deployments", name, "domains"), fmt.Sprintf("[%d]", i),
						"%q overlaps %q of deployments.%s", dom, other.domain, other.deployment)
					ck.hint("each host name belongs to one nginx deployment")
				}
			}
			claims = append(claims, claim{name, dom})
		}
	}
}
