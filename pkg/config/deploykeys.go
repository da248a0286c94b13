package config

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// deploymentKeys are the keys of a [deployments.NAME] table, in the order
// of docs/config.example.toml, each with the check of its value (nil
// where the TOML type is all there is to check). A check reports each
// problem at its key (deployments.NAME.KEY[i]) with what is wrong and,
// where it helps, a hint with the fix. TestDeploymentKeysChecked keeps
// this table, the Deployment struct and the example file in step.
var deploymentKeys = []struct {
	name  string
	check func(v deploymentCheck, key []string)
}{
	{"kind", checkKind},
	{"repository", checkRepository},
	{"branches", checkBranches},
	{"tags", checkTags},
	{"path", checkPath},
	{"clone_url", checkCloneURL},
	{"events", checkEvents},
	{"enabled", nil},
	{"steps", checkSteps},
	{"user", checkUser},
	{"timeout", checkTimeout},
	{"step_timeout", checkStepTimeout},
	{"clean_untracked", nil},
	{"strategy", checkStrategy},
	{"releases_dir", checkReleasesDir},
	{"keep_releases", checkKeepReleases},
	{"shared", checkReleasePaths},
	{"carry", checkReleasePaths},
	{"activate", checkActivate},
	{"health_url", checkHealthURL},
	{"health_command", checkHealthCommand},
	{"health_timeout", checkHealthTimeout},
	{"health_retries", checkHealthRetries},
	{"health_interval", checkHealthInterval},
	{"notify", checkNotify},
	{"token_files", checkTokenFiles},
	{"windows", checkWindows},
	{"time_zone", checkTimeZone},
	{"coalesce", nil},
	{"environment_file", checkEnvironmentFile},
	{"environment", checkEnvironment},
	{"sites", checkSites},
	{"domains", checkDomains},
	{"serve", checkServe},
	{"upstreams", checkUpstreams},
	{"unsafe_directives", checkUnsafeDirectives},
	{"self", checkSelf},
}

// deploymentCheck is what the check of a deployment's key sees: the
// deployment, its name, the whole configuration (for checks across
// deployments), and the checker collecting the problems.
type deploymentCheck struct {
	*checker
	c    *Config
	d    *Deployment
	name string
}

// key is the path of the deployment's table, or of a key in it.
func (v deploymentCheck) key(sub ...string) []string {
	return append(k("deployments", v.name), sub...)
}

// validate checks the deployment's name, then each of its keys.
func (d *Deployment) validate(ck *checker, c *Config, name string) {
	v := deploymentCheck{checker: ck, c: c, d: d, name: name}
	checkName(v)
	for _, dk := range deploymentKeys {
		if dk.check != nil {
			dk.check(v, v.key(dk.name))
		}
	}
}

func checkName(v deploymentCheck) {
	_, err := ident.ParseDeploymentName(v.name)
	switch {
	case len(v.name) > MaxNameLen:
		v.add(v.key(), "name longer than %d bytes", MaxNameLen)
	case err != nil:
		v.add(v.key(), "name must match [a-z0-9][a-z0-9-]*")
		v.hint("a deployment's name is also its queue's and its systemd instance's name")
	case slices.Contains(reserved, v.name):
		v.add(v.key(), "name %q is reserved", v.name)
		v.hint("main, nginx, cert, status, failed and tmp are queue names of their own")
	}
}

func checkKind(v deploymentCheck, key []string) {
	switch v.d.Kind {
	case KindSteps, KindNginx, KindSelf:
	default:
		v.add(key, "must be %q, %q or %q, not %q", KindSteps, KindNginx, KindSelf, v.d.Kind)
	}
}

func checkRepository(v deploymentCheck, key []string) {
	if v.d.Repository == "" {
		v.add(key, "must be set")
		v.hint(`write it as "owner/name"`)
		return
	}
	if _, err := ident.ParseRepository(v.d.Repository); err != nil {
		v.add(key, "%q is not a GitHub repository", v.d.Repository)
		v.hint(`write it as "owner/name", each part of A-Z, a-z, 0-9, "_", "." and "-"`)
	}
}

func checkBranches(v deploymentCheck, key []string) {
	for i, b := range v.d.Branches {
		v.refPattern(key, i, b, ident.BranchPrefix)
	}
	if len(v.d.Branches) == 0 && len(v.d.Tags) == 0 {
		v.add(v.key(), "follows no branch or tag")
		v.hint(`set branches = ["main"] (or tags)`)
	}
}

func checkTags(v deploymentCheck, key []string) {
	for i, t := range v.d.Tags {
		v.refPattern(key, i, t, ident.TagPrefix)
	}
}

func checkPath(v deploymentCheck, key []string) {
	p := v.d.Path
	if !v.absPath(key, p) {
		return
	}
	if p == "/" {
		v.add(key, "must not be the root directory")
	} else if c := filepath.Clean(p); c != p {
		v.add(key, "must be clean")
		v.hint(fmt.Sprintf("write %q", c))
	}
}

func checkCloneURL(v deploymentCheck, key []string) {
	if v.d.CloneURL != "" {
		v.cloneURL(key, v.d.CloneURL)
	}
}

func checkEvents(v deploymentCheck, key []string) {
	if len(v.d.Events) == 0 {
		v.add(key, "must not be empty")
	}
	for i, e := range v.d.Events {
		if _, err := ident.ParseEvent(e); err != nil {
			v.addSub(key, fmt.Sprintf("[%d]", i), "%q is not a GitHub event name", e)
		}
	}
}

func checkSteps(v deploymentCheck, key []string) {
	if v.d.Kind == KindNginx && len(v.d.Steps) > 0 {
		v.add(key, "not allowed for kind %q", KindNginx)
	}
	for i, step := range v.d.Steps {
		v.argv(key, fmt.Sprintf("[%d]", i), step)
	}
}

func checkUser(v deploymentCheck, key []string) {
	if u := v.d.User; u != "" && (len(u) > 32 || !userRE.MatchString(u)) {
		v.add(key, "not a valid Unix user name")
	}
}

func checkTimeout(v deploymentCheck, key []string) { v.positive(key, v.d.Timeout) }

func checkStepTimeout(v deploymentCheck, key []string) {
	v.positive(key, v.d.StepTimeout)
	if v.d.StepTimeout > v.d.Timeout && v.d.Timeout > 0 {
		v.add(key, "%v is longer than timeout (%v)", v.d.StepTimeout, v.d.Timeout)
	}
}

func checkStrategy(v deploymentCheck, key []string) {
	switch v.d.Strategy {
	case StrategyInPlace:
	case StrategyReleases:
		if v.d.Kind != KindSteps {
			v.add(key, "%q is only for kind %q; kind %q deploys in place", StrategyReleases, KindSteps, v.d.Kind)
		}
	default:
		v.add(key, "must be %q or %q, not %q", StrategyReleases, StrategyInPlace, v.d.Strategy)
	}
}

// releases reports whether the keys of strategy "releases" apply: the
// deployment builds releases (checkStrategy reports a strategy that is
// wrong). Under strategy "in-place", a key that is set is a problem.
func (v deploymentCheck) releases(key []string, set bool) bool {
	switch {
	case v.d.Releases() && v.d.Kind == KindSteps:
		return true
	case set && v.d.Strategy == StrategyInPlace:
		v.add(key, "only for strategy %q", StrategyReleases)
	}
	return false
}

func checkReleasesDir(v deploymentCheck, key []string) {
	dir := v.d.ReleasesDir
	// Without releases_dir, path is invalid and said so.
	if !v.releases(key, dir != "") || dir == "" || !v.absPath(key, dir) {
		return
	}
	switch c := filepath.Clean(dir); {
	case c != dir:
		v.add(key, "must be clean")
		v.hint(fmt.Sprintf("write %q", c))
	case v.d.Path != "" && (c == v.d.Path || inside(c, v.d.Path) || inside(v.d.Path, c)):
		v.add(key, "must not be path, nor inside it or hold it")
	}
}

func checkKeepReleases(v deploymentCheck, key []string) {
	if v.releases(key, v.d.KeepReleases != 0) && v.d.KeepReleases < 1 {
		v.add(key, "must be at least 1")
	}
}

// checkReleasePaths checks shared or carry: each path inside the release,
// and none overlapping another path of either list (reported at the later
// of the two, shared first).
func checkReleasePaths(v deploymentCheck, key []string) {
	list := key[len(key)-1]
	own := v.d.Shared
	if list == "carry" {
		own = v.d.Carry
	}
	if !v.releases(key, own != nil) {
		return
	}
	seen := map[string]string{}
	for _, l := range []struct {
		name  string
		paths []string
	}{{"shared", v.d.Shared}, {"carry", v.d.Carry}} {
		for i, p := range l.paths {
			sub := fmt.Sprintf("[%d]", i)
			if why := badReleasePath(p); why != "" {
				if l.name == list {
					v.addSub(key, sub, "%q %s", p, why)
					v.hint(`write a path inside the release, such as "storage" or "public/uploads"`)
				}
				continue
			}
			for q, in := range seen {
				if l.name == list && (q == p || inside(q, p) || inside(p, q)) {
					v.addSub(key, sub, "%q overlaps %q of %s", p, q, in)
				}
			}
			seen[p] = l.name
		}
	}
}

func checkActivate(v deploymentCheck, key []string) {
	if !v.releases(key, v.d.Activate != nil) {
		return
	}
	for i, a := range v.d.Activate {
		v.argv(key, fmt.Sprintf("[%d]", i), a)
	}
}

func checkHealthURL(v deploymentCheck, key []string) {
	s := v.d.HealthURL
	if !v.releases(key, s != "") || s == "" {
		return
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || hasControl(s) {
		v.add(key, "%q is not an http or https URL", s)
	}
}

func checkHealthCommand(v deploymentCheck, key []string) {
	if !v.releases(key, v.d.HealthCommand != nil) || len(v.d.HealthCommand) == 0 {
		return
	}
	if v.d.HealthURL != "" {
		v.add(key, "set health_url or health_command, not both")
	}
	v.argv(key, "", v.d.HealthCommand)
}

func checkHealthTimeout(v deploymentCheck, key []string) {
	if v.releases(key, v.d.HealthTimeout != 0) {
		v.positive(key, v.d.HealthTimeout)
	}
}

func checkHealthInterval(v deploymentCheck, key []string) {
	if v.releases(key, v.d.HealthInterval != 0) {
		v.positive(key, v.d.HealthInterval)
	}
}

func checkHealthRetries(v deploymentCheck, key []string) {
	if v.releases(key, v.d.HealthRetries != nil) && v.d.HealthRetries != nil && *v.d.HealthRetries < 0 {
		v.add(key, "must not be negative")
	}
}

func checkNotify(v deploymentCheck, key []string) {
	v.targetNames(key, v.d.Notify, v.c.Notify.Targets)
}

func checkTokenFiles(v deploymentCheck, key []string) {
	for i, f := range v.d.TokenFiles {
		v.credentialPath(key, fmt.Sprintf("[%d]", i), f)
	}
}

func checkWindows(v deploymentCheck, key []string) {
	for i, w := range v.d.Windows {
		if _, err := ParseWindow(w); err != nil {
			v.addSub(key, fmt.Sprintf("[%d]", i), "%v", err)
			v.hint(`write a window as "mon-fri 09:00-17:00"`)
		}
	}
}

func checkTimeZone(v deploymentCheck, key []string) {
	if _, err := v.d.Location(); err != nil {
		v.add(key, "%v", err)
	}
}

func checkEnvironmentFile(v deploymentCheck, key []string) {
	if v.d.EnvironmentFile != "" {
		v.absPath(key, v.d.EnvironmentFile)
	}
}

func checkEnvironment(v deploymentCheck, key []string) {
	for _, name := range sortedKeys(v.d.Environment) {
		switch key := append(slices.Clip(key), name); {
		case !envNameRE.MatchString(name):
			v.add(key, "not a valid environment variable name")
		case strings.HasPrefix(name, "DH_"):
			v.add(key, "DH_* variables are set by dh-deploy and cannot be overridden")
		case strings.ContainsRune(v.d.Environment[name], 0):
			v.add(key, "value contains a NUL byte")
		}
	}
}

func checkSites(v deploymentCheck, key []string) {
	switch {
	case v.d.Kind != KindNginx && len(v.d.Sites) > 0:
		v.add(key, "only for kind %q", KindNginx)
	case v.d.Kind == KindNginx && len(v.d.Sites) == 0:
		v.add(key, "required for kind %q", KindNginx)
		v.hint(`select every site with sites = [{ rule = "include", select = ["*"] }]`)
	}
	for i, r := range v.d.Sites {
		sub := fmt.Sprintf("[%d]", i)
		if r.Rule != "include" && r.Rule != "exclude" {
			v.addSub(key, sub, "rule must be \"include\" or \"exclude\", not %q", r.Rule)
		}
		if len(r.Select) == 0 {
			v.addSub(key, sub, "select must not be empty")
		}
		for _, s := range r.Select {
			if _, err := path.Match(s, ""); err != nil || s == "" || strings.Contains(s, "/") {
				v.addSub(key, sub, "bad site name or pattern %q in select", s)
			}
		}
	}
}

// nginxOnly reports whether a key of the site policy applies: the
// deployment is of kind "nginx". For another kind, a key that is set is a
// problem.
func (v deploymentCheck) nginxOnly(key []string, set bool) bool {
	if v.d.Kind == KindNginx {
		return true
	}
	if set {
		v.add(key, "only for kind %q", KindNginx)
	}
	return false
}

func checkDomains(v deploymentCheck, key []string) {
	if !v.nginxOnly(key, v.d.Domains != nil) {
		return
	}
	for i, dom := range v.d.Domains {
		if !validDomain(dom) {
			v.addSub(key, fmt.Sprintf("[%d]", i), "%q is not a lower-case host name or \"*.\" wildcard", dom)
		}
	}
}

func checkServe(v deploymentCheck, key []string) {
	if !v.nginxOnly(key, v.d.Serve != nil) {
		return
	}
	c := v.c
	for i, p := range v.d.Serve {
		sub := fmt.Sprintf("[%d]", i)
		switch {
		case p == "" || !filepath.IsAbs(p) || hasControl(p):
			v.addSub(key, sub, "must be an absolute path")
		case filepath.Clean(p) != p || strings.ContainsAny(p, "$\\"):
			v.addSub(key, sub, "must be clean, without \"$\" or \"\\\"")
		case p == "/":
			v.addSub(key, sub, "must not be the root directory")
		default:
			for _, own := range []string{c.StateDir, c.QueueDir, c.Nginx.ConfDir, c.Nginx.SnippetsDir, c.Nginx.CertDir, c.Nginx.LogDir, "/etc", "/root", "/home"} {
				if within(own, p) {
					v.addSub(key, sub, "holds %s", own)
				}
			}
			for _, name := range c.DeploymentNames() {
				if o := c.Deployments[name]; o != nil && o.Path != "" && o.Path != p && within(o.Path, p) {
					v.addSub(key, sub, "holds the checkout of deployments.%s", name)
				}
			}
		}
	}
}

func checkUpstreams(v deploymentCheck, key []string) {
	if !v.nginxOnly(key, v.d.Upstreams != nil) {
		return
	}
	for i, u := range v.d.Upstreams {
		if _, err := NormalizeUpstream(u); err != nil {
			v.addSub(key, fmt.Sprintf("[%d]", i), "%v", err)
			v.hint(`write "host:port" or "unix:/path/to.sock"`)
		}
	}
}

func checkUnsafeDirectives(v deploymentCheck, key []string) {
	if !v.nginxOnly(key, v.d.UnsafeDirectives != nil) {
		return
	}
	for i, name := range v.d.UnsafeDirectives {
		sub := fmt.Sprintf("[%d]", i)
		if NeverAllowedDirective(name) {
			v.addSub(key, sub, "%q can never be allowed", name)
		} else if name == "" || strings.ContainsFunc(name, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') }) {
			v.addSub(key, sub, "%q is not a directive name", name)
		}
	}
}

func checkSelf(v deploymentCheck, key []string) {
	switch v.d.Kind {
	case KindSelf:
		if v.d.Self == nil {
			v.d.Self = &Self{}
		}
		v.d.Self.validate(v.checker, key)
	default:
		if v.d.Self != nil {
			v.add(key, "only for kind %q", KindSelf)
		}
	}
}
