package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// Defaults of a deployment's keys.
const (
	DefaultTimeout     = 30 * time.Minute
	DefaultStepTimeout = 10 * time.Minute
)

// MaxNameLen is the longest deployment name.
const MaxNameLen = ident.MaxDeploymentName

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userRE    = regexp.MustCompile(`^[a-z_][a-z0-9_-]*\$?$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9.-]*$`)
	// targetNameRE is the shape of a [notify.targets] name.
	targetNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

// reserved are the names no deployment may take: the stages' own queues
// and the subdirectories of a queue.
var reserved = []string{MainQueue, NginxQueue, CertQueue, StatusQueue, "failed", "tmp"}

// setDefaults fills what the file left out; defined reports whether the
// file gave a key (nil: nothing was given, as for a Config built in Go).
// The top-level, [receive] and [github] defaults come from Default, which
// the file is decoded over. booted (systemd.Booted when loading a file)
// switches the defaults of root work from sudo to systemctl: see Nginx,
// Cert and Self.
func (c *Config) setDefaults(defined func(key ...string) bool, booted bool) {
	if defined == nil {
		defined = func(...string) bool { return false }
	}
	if booted {
		c.Nginx.systemdDefaults(defined)
		c.Cert.systemdDefaults(defined)
	}
	c.Notify.setDefaults(defined)
	for name, d := range c.Deployments {
		if d == nil {
			continue
		}
		d.Name = name
		if d.Notify == nil && !defined("deployments", name, "notify") {
			d.Notify = slices.Clone(c.Notify.DefaultTargets)
		}
		if d.Kind == "" {
			d.Kind = KindSteps
		}
		if d.Events == nil {
			d.Events = []string{"push"}
		}
		if d.Enabled == nil {
			d.Enabled = new(true)
		}
		if d.Coalesce == nil {
			d.Coalesce = new(true)
		}
		if d.Timeout == 0 && !defined("deployments", name, "timeout") {
			d.Timeout = DefaultTimeout
		}
		if d.StepTimeout == 0 && !defined("deployments", name, "step_timeout") {
			d.StepTimeout = DefaultStepTimeout
			if d.Timeout > 0 {
				d.StepTimeout = min(d.StepTimeout, d.Timeout)
			}
		}
		d.releaseDefaults(defined)
		if d.Kind == KindSelf {
			if d.Self == nil {
				d.Self = &Self{}
			}
			if booted {
				d.Self.systemdDefaults()
			}
			d.Self.sudoDefaults(c.DeploymentNames())
		}
	}
}

// Validate checks the whole configuration and returns every problem it
// finds, joined, a config.Error (exit 78). It does not read any file.
// Deployment defaults are applied first, as Load does.
func (c *Config) Validate() error {
	c.setDefaults(nil, false)
	problems := c.validate()
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p.err(c.File, 0)
	}
	if len(errs) == 0 {
		return nil
	}
	return joinErrors(errs)
}

// problem is one validation failure at a key.
type problem struct {
	key  []string // the key path, for the message and to find its line
	sub  string   // an index into the key's value, such as "[1]"
	msg  string
	hint string
}

func (p problem) err(file string, line int) error {
	prefix := "config: "
	if file != "" {
		prefix += where(file, line) + ": "
	}
	err := Errorf("%s%s%s: %s", prefix, toml.Key(p.key).String(), p.sub, p.msg)
	if p.hint != "" {
		err = hint.With(err, p.hint)
	}
	return err
}

// checker collects problems.
type checker struct{ problems []problem }

func (ck *checker) add(key []string, format string, args ...any) {
	ck.problems = append(ck.problems, problem{key: key, msg: fmt.Sprintf(format, args...)})
}

func (ck *checker) addSub(key []string, sub string, format string, args ...any) {
	ck.problems = append(ck.problems, problem{key: key, sub: sub, msg: fmt.Sprintf(format, args...)})
}

// hint sets the hint of the last problem added.
func (ck *checker) hint(h string) { ck.problems[len(ck.problems)-1].hint = h }

func k(parts ...string) []string { return parts }

func (c *Config) validate() []problem {
	ck := &checker{}
	ck.absPath(k("queue_dir"), c.QueueDir)
	ck.absPath(k("state_dir"), c.StateDir)
	ck.databaseURL(c.DatabaseURL)
	c.Receive.validate(ck)
	c.GitHub.validate(ck)
	c.Notify.validate(ck)
	c.Nginx.validate(ck)
	c.Cert.validate(ck)
	c.Status.validate(ck)
	c.Queues.validate(ck)
	c.Retention.validate(ck)
	paths := map[string]string{} // clean checkout path → deployment
	for _, name := range c.DeploymentNames() {
		d := c.Deployments[name]
		if d == nil {
			ck.add(k("deployments", name), "missing")
			continue
		}
		d.validate(ck, c, name)
		if other, ok := paths[d.Path]; ok && d.Path != "" {
			ck.add(k("deployments", name, "path"), "same checkout as deployments.%s", other)
		}
		paths[d.Path] = name
	}
	c.validateDomainOwners(ck)
	c.validateUsers(ck)
	return ck.problems
}

// DefaultDeployUser is the user a deployment of kind "steps" or "self"
// without a user key runs as: the one dh-deploy@.service names.
const DefaultDeployUser = "dh-deploy"

// stageUsers are the users of the stages other than dh-deploy; no nginx
// deployment may run as one of them (or as root).
var stageUsers = []string{"root", "dh-receive", "dh-route", "dh-nginx", "dh-cert"}

// RunsAs is the Unix user the deployment's worker runs as: User if set;
// else, for kind "nginx", "dh-deploy-NAME" (a user of its own); else
// DefaultDeployUser.
func (d *Deployment) RunsAs() string { return d.runsAs(d.Name) }

func (d *Deployment) runsAs(name string) string {
	switch {
	case d.User != "":
		return d.User
	case d.Kind == KindNginx:
		return DefaultDeployUser + "-" + name
	}
	return DefaultDeployUser
}

// validateUsers gives every nginx-kind deployment a user of its own: the
// user that may hand dh-nginx a commit to install (dh-nginx accepts an
// nginx-sites entry only from it) must not be one whose build steps run
// another repository's code (issue 14: a build step of a deployment
// sharing the user rewrote the nginx deployment's checkout and queued it).
func (c *Config) validateUsers(ck *checker) {
	users := map[string][]string{} // user → deployments running as it
	for _, name := range c.DeploymentNames() {
		if d := c.Deployments[name]; d != nil {
			users[d.runsAs(name)] = append(users[d.runsAs(name)], name)
		}
	}
	for _, name := range c.DeploymentNames() {
		d := c.Deployments[name]
		if d == nil || d.Kind != KindNginx {
			continue
		}
		key, user := k("deployments", name, "user"), d.runsAs(name)
		switch others := slices.DeleteFunc(slices.Clone(users[user]), func(n string) bool { return n == name }); {
		case len(user) > 32:
			ck.add(key, "required for kind %q with a name this long: the default user %q is longer than 32 bytes", KindNginx, user)
		case slices.Contains(stageUsers, user):
			ck.add(key, "%q is a dh-deployer stage's user (or root); an nginx deployment needs a user of its own", user)
		case len(others) > 0:
			ck.add(key, "%q is also the user of deployments.%s; an nginx deployment needs a user of its own",
				user, strings.Join(others, ", deployments."))
			if user == DefaultDeployUser {
				ck.hint(fmt.Sprintf("a deployment without a user key runs as %s; leave user out of the nginx deployment to get %q",
					DefaultDeployUser, DefaultDeployUser+"-"+name))
			}
		}
	}
}

// absPath checks a required absolute path.
func (ck *checker) absPath(key []string, p string) bool {
	switch {
	case p == "":
		ck.add(key, "must be set")
	case hasControl(p):
		ck.add(key, "must not contain control characters")
	case !filepath.IsAbs(p):
		ck.add(key, "must be absolute")
	default:
		return true
	}
	return false
}

// credentialPath checks a *_file key: absolute, or a plain name (see
// Config.CredentialPath).
func (ck *checker) credentialPath(key []string, sub, p string) {
	switch {
	case p == "":
		ck.addSub(key, sub, "must not be empty")
	case hasControl(p):
		ck.addSub(key, sub, "must not contain control characters")
	case !filepath.IsAbs(p) && !filepath.IsLocal(p):
		ck.addSub(key, sub, "must be absolute, or a name inside $%s or the configuration's directory", EnvCredentials)
	}
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func (ck *checker) databaseURL(s string) {
	// The URL may hold a password: messages never quote it.
	key := k("database_url")
	switch {
	case s == "":
		ck.add(key, "must be set")
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			ck.add(key, "is not a valid URL")
		} else if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			ck.add(key, "scheme must be postgres or postgresql")
		}
	case !strings.Contains(s, "="):
		ck.add(key, "must be a postgres:// URL or a key=value connection string")
	}
}

func (r *Receive) validate(ck *checker) {
	switch l := r.Listen; {
	case l == ListenSystemd:
	case strings.HasPrefix(l, "/"):
		if len(l) > 107 {
			ck.add(k("receive", "listen"), "unix socket path longer than 107 bytes")
		} else if hasControl(l) {
			ck.add(k("receive", "listen"), "must not contain control characters")
		}
	default:
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			ck.add(k("receive", "listen"), "must be host:port, an absolute unix socket path, or %q", ListenSystemd)
			break
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			ck.add(k("receive", "listen"), "port %q must be a number from 0 to 65535", port)
		}
		if !hostRE.MatchString(host) {
			if _, err := netip.ParseAddr(host); err != nil {
				ck.add(k("receive", "listen"), "bad host %q", host)
			}
		}
	}
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?# ") || hasControl(r.Path) {
		ck.add(k("receive", "path"), "must be a URL path starting with \"/\"")
	}
	for i, f := range r.SecretFiles {
		ck.credentialPath(k("receive", "secret_files"), fmt.Sprintf("[%d]", i), f)
	}
	if r.MaxBody <= 0 {
		ck.add(k("receive", "max_body"), "must be positive")
	}
	ck.positive(k("receive", "read_header_timeout"), r.ReadHeaderTimeout)
	ck.positive(k("receive", "read_timeout"), r.ReadTimeout)
	ck.positive(k("receive", "write_timeout"), r.WriteTimeout)
	ck.positive(k("receive", "shutdown_timeout"), r.ShutdownTimeout)
	ck.positive(k("receive", "max_queue_age"), r.MaxQueueAge)
	if r.MetricsTokenFile != "" {
		ck.credentialPath(k("receive", "metrics_token_file"), "", r.MetricsTokenFile)
	}
	r.validateStatus(ck)
	for i, a := range r.Allow {
		if _, err := parsePrefix(a); err != nil {
			ck.addSub(k("receive", "allow"), fmt.Sprintf("[%d]", i), "%v", err)
		}
	}
	if r.AllowFile != "" {
		ck.absPath(k("receive", "allow_file"), r.AllowFile)
	}
	for i, a := range r.TrustedProxies {
		if _, err := parsePrefix(a); err != nil && a != TrustUnix {
			ck.addSub(k("receive", "trusted_proxies"), fmt.Sprintf("[%d]", i), "%v (or %q for a unix-socket peer)", err, TrustUnix)
		}
	}
	if r.MaxInFlight < r.MaxBody {
		ck.add(k("receive", "max_in_flight"), "must be at least max_body (%d)", r.MaxBody)
	}
	if !strings.HasPrefix(r.HookSocket, "/") || len(r.HookSocket) > 107 {
		ck.add(k("receive", "hook_socket"), "must be an absolute path of at most 107 bytes")
	}
	for user, repos := range r.HookUsers {
		if !hookUserRE.MatchString(user) {
			ck.addSub(k("receive", "hook_users"), "."+user, "is not a Unix user name")
		}
		for i, repo := range repos {
			if _, err := ident.ParseRepository(repo); err != nil {
				ck.addSub(k("receive", "hook_users"), fmt.Sprintf(".%s[%d]", user, i), "%q is not owner/name", repo)
			}
		}
	}
	if r.MinFreeBytes < 0 {
		ck.add(k("receive", "min_free_bytes"), "must not be negative")
	}
}

func (ck *checker) positive(key []string, d time.Duration) {
	if d <= 0 {
		ck.add(key, "must be positive")
	}
}

func (g *GitHub) validate(ck *checker) {
	u, err := url.Parse(g.APIURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		ck.add(k("github", "api_url"), "must be an http or https URL")
	case u.User != nil:
		ck.add(k("github", "api_url"), "must not contain user information")
		ck.hint("put the token in the file named by github.token_file")
	}
	if _, err := webURL(g.WebURL); err != nil {
		ck.add(k("github", "web_url"), "%v", err)
		ck.hint(`for GitHub Enterprise: web_url = "https://HOST"`)
	}
	if g.TokenFile != "" {
		ck.credentialPath(k("github", "token_file"), "", g.TokenFile)
	}
	if strings.TrimSpace(g.StatusContext) == "" {
		ck.add(k("github", "status_context"), "must not be empty")
	}
	if g.TargetURL != "" {
		if _, err := template.New("target_url").Parse(g.TargetURL); err != nil {
			ck.add(k("github", "target_url"), "bad template: %v", err)
		}
	}
}

// argv checks one argv list (a step, an activate step, a health command).
func (ck *checker) argv(key []string, sub string, argv []string) {
	switch {
	case len(argv) == 0:
		ck.addSub(key, sub, "empty step")
	case argv[0] == "":
		ck.addSub(key, sub, "empty program name (the step's first element)")
	case slices.ContainsFunc(argv, func(a string) bool { return strings.ContainsRune(a, 0) }):
		ck.addSub(key, sub, "argument contains a NUL byte")
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for name := range m {
		keys = append(keys, name)
	}
	slices.Sort(keys)
	return keys
}

// refPattern checks one entry of branches or tags.
func (ck *checker) refPattern(key []string, i int, p, prefix string) {
	sub := fmt.Sprintf("[%d]", i)
	_, err := path.Match(p, "")
	switch {
	case p == "":
		ck.addSub(key, sub, "must not be empty")
	case strings.HasPrefix(p, "-"):
		ck.addSub(key, sub, "must not start with \"-\"")
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		ck.addSub(key, sub, "must not contain spaces or control characters")
	case strings.HasPrefix(p, "refs/"):
		ck.addSub(key, sub, "must be a name, not a ref")
		ck.hint(fmt.Sprintf("write %q", strings.TrimPrefix(p, prefix)))
	case err != nil:
		ck.addSub(key, sub, "bad pattern %q", p)
	}
}

func (ck *checker) cloneURL(key []string, s string) {
	switch {
	case strings.HasPrefix(s, "-"):
		ck.add(key, "must not start with \"-\"")
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		ck.add(key, "must not contain spaces or control characters")
	case strings.HasPrefix(s, "/"):
		// an absolute local path
	case strings.Contains(s, "://"):
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			ck.add(key, "is not a valid URL")
		}
	case strings.Contains(s, ":") && !strings.Contains(s[:strings.Index(s, ":")], "/"):
		// scp-like: [user@]host:path
	default:
		ck.add(key, "must be a URL, [user@]host:path, or an absolute path")
	}
}

// parsePrefix parses a receive.allow entry: a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// AllowedPrefixes returns the networks of Allow and of the lines of
// AllowFile (read now; blank lines and text after "#" ignored). An empty
// result means every address is allowed. Errors are classified
// config.Errors and name the file and line.
func (r *Receive) AllowedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, a := range r.Allow {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, Errorf("config: receive.allow[%d]: %v", i, err)
		}
		out = append(out, p)
	}
	if r.AllowFile == "" {
		return out, nil
	}
	data, err := readLimited(r.AllowFile, 1<<20)
	if err != nil {
		return nil, Errorf("config: read receive.allow_file: %w", err)
	}
	var errs []error
	for n, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		p, err := parsePrefix(line)
		if err != nil {
			errs = append(errs, Errorf("config: %s:%d: %v", r.AllowFile, n+1, err))
			continue
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	if len(out) == 0 {
		// An allow_file with no networks would silently allow everyone.
		return nil, Errorf("config: %s: no networks in receive.allow_file", r.AllowFile)
	}
	return out, nil
}

// TrustUnix in trusted_proxies trusts a peer on a unix socket.
const TrustUnix = "unix"

// hookUserRE is the shape of the user names hook_users accepts (those of
// useradd and dh-deployer-acl).
var hookUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// TrustedProxyPrefixes returns the networks of TrustedProxies, and whether
// it trusts unix-socket peers.
func (r *Receive) TrustedProxyPrefixes() (prefixes []netip.Prefix, unix bool, err error) {
	for i, a := range r.TrustedProxies {
		if a == TrustUnix {
			unix = true
			continue
		}
		p, err := parsePrefix(a)
		if err != nil {
			return nil, false, Errorf("config: receive.trusted_proxies[%d]: %v", i, err)
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, unix, nil
}

// ListenNetwork splits Listen into a network for net.Listen ("tcp" or
// "unix") and an address, or returns ListenSystemd and "".
func (r *Receive) ListenNetwork() (network, address string) {
	switch {
	case r.Listen == ListenSystemd:
		return ListenSystemd, ""
	case strings.HasPrefix(r.Listen, "/"):
		return "unix", r.Listen
	}
	return "tcp", r.Listen
}

// validateStatus checks the keys dh-receive reaches dh-route's status
// listener with (waiting for a run's result).
func (r *Receive) validateStatus(ck *checker) {
	if r.MaxWaiting <= 0 {
		ck.add(k("receive", "max_waiting"), "must be positive")
	}
	switch u := r.StatusURL; {
	case u == "":
	case strings.HasPrefix(u, "unix:"):
		if p := strings.TrimPrefix(u, "unix:"); !strings.HasPrefix(p, "/") || len(p) > 107 || hasControl(p) {
			ck.add(k("receive", "status_url"), "unix: must be followed by an absolute socket path of at most 107 bytes")
		}
	default:
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" || pu.Host == "" || pu.User != nil || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" {
			ck.add(k("receive", "status_url"), "%q must be http://HOST:PORT (status.listen) or unix:/PATH", redactURL(pu, u))
			break
		}
		if r.StatusTokenFile == "" {
			ck.add(k("receive", "status_url"), "%q is a TCP address, and receive.status_token_file is not set", u)
			ck.hint("the status listener wants its token on TCP: give dh-receive a copy of status.token_file")
		}
	}
	if r.StatusTokenFile != "" {
		ck.credentialPath(k("receive", "status_token_file"), "", r.StatusTokenFile)
	}
	if u := r.StatusPageURL; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" {
			ck.add(k("receive", "status_page_url"), "%q must be an http or https URL without query", redactURL(pu, u))
		}
	}
}

// redactURL is raw, parsed as u, with a password in it replaced by
// "xxxxx" (unparsed, everything up to its last "@" left out): an error
// naming a URL never shows a secret put in it.
func redactURL(u *url.URL, raw string) string {
	if u != nil {
		return u.Redacted()
	}
	if i := strings.LastIndexByte(raw, '@'); i >= 0 {
		return "xxxxx" + raw[i:]
	}
	return raw
}
