package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Strategies of a kind "steps" deployment (Deployment.Strategy).
const (
	StrategyReleases = "releases" // build in a new release, then switch Path to it
	StrategyInPlace  = "in-place" // check out and build in Path itself
)

// Defaults of the release keys.
const (
	DefaultKeepReleases   = 5
	DefaultHealthTimeout  = 10 * time.Second
	DefaultHealthRetries  = 3
	DefaultHealthInterval = time.Second
)

// releaseDefaults fills the strategy and the release keys the file left
// out.
func (d *Deployment) releaseDefaults(defined func(key ...string) bool) {
	if d.Strategy == "" {
		d.Strategy = StrategyInPlace
		if d.Kind == KindSteps {
			d.Strategy = StrategyReleases
		}
	}
	if d.Strategy != StrategyReleases {
		return
	}
	if d.ReleasesDir == "" && filepath.IsAbs(d.Path) {
		d.ReleasesDir = d.Path + ".releases"
	}
	if d.KeepReleases == 0 && !defined("deployments", d.Name, "keep_releases") {
		d.KeepReleases = DefaultKeepReleases
	}
	if d.HealthTimeout == 0 && !defined("deployments", d.Name, "health_timeout") {
		d.HealthTimeout = DefaultHealthTimeout
	}
	if d.HealthRetries == nil {
		d.HealthRetries = new(DefaultHealthRetries)
	}
	if d.HealthInterval == 0 && !defined("deployments", d.Name, "health_interval") {
		d.HealthInterval = DefaultHealthInterval
	}
}

// Releases reports whether the deployment builds in releases and switches
// Path to them (strategy "releases").
func (d *Deployment) Releases() bool { return d.Strategy == StrategyReleases }

// MirrorDir is the local bare mirror of the repository that releases are
// made from.
func (d *Deployment) MirrorDir() string { return filepath.Join(d.ReleasesDir, "repo.git") }

// SharedDir holds the Shared paths.
func (d *Deployment) SharedDir() string { return filepath.Join(d.ReleasesDir, "shared") }

// HealthChecked reports whether the deployment has a health check.
func (d *Deployment) HealthChecked() bool { return d.HealthURL != "" || len(d.HealthCommand) > 0 }

// releaseKeys are the keys only strategy "releases" takes.
var releaseKeys = []string{"releases_dir", "keep_releases", "shared", "carry", "activate",
	"health_url", "health_command", "health_timeout", "health_retries", "health_interval"}

func (d *Deployment) validateRelease(ck *checker, key func(...string) []string) {
	switch d.Strategy {
	case StrategyInPlace:
	case StrategyReleases:
		if d.Kind != KindSteps {
			ck.add(key("strategy"), "%q is only for kind %q; kind %q deploys in place", StrategyReleases, KindSteps, d.Kind)
			return
		}
	default:
		ck.add(key("strategy"), "must be %q or %q, not %q", StrategyReleases, StrategyInPlace, d.Strategy)
		return
	}
	if !d.Releases() {
		if k := d.setReleaseKey(); k != "" {
			ck.add(key(k), "only for strategy %q", StrategyReleases)
		}
		return
	}
	// Without releases_dir, path is invalid and said so.
	if d.ReleasesDir != "" && ck.absPath(key("releases_dir"), d.ReleasesDir) {
		switch c := filepath.Clean(d.ReleasesDir); {
		case c != d.ReleasesDir:
			ck.add(key("releases_dir"), "must be clean")
			ck.hint(fmt.Sprintf("write %q", c))
		case d.Path != "" && (c == d.Path || inside(c, d.Path) || inside(d.Path, c)):
			ck.add(key("releases_dir"), "must not be path, nor inside it or hold it")
		}
	}
	if d.KeepReleases < 1 {
		ck.add(key("keep_releases"), "must be at least 1")
	}
	seen := map[string]string{}
	for _, list := range []struct {
		name  string
		paths []string
	}{{"shared", d.Shared}, {"carry", d.Carry}} {
		for i, p := range list.paths {
			sub := fmt.Sprintf("[%d]", i)
			if why := badReleasePath(p); why != "" {
				ck.addSub(key(list.name), sub, "%q %s", p, why)
				ck.hint(`write a path inside the release, such as "storage" or "public/uploads"`)
				continue
			}
			for q, in := range seen {
				if q == p || inside(q, p) || inside(p, q) {
					ck.addSub(key(list.name), sub, "%q overlaps %q of %s", p, q, in)
				}
			}
			seen[p] = list.name
		}
	}
	for i, a := range d.Activate {
		ck.argv(key("activate"), fmt.Sprintf("[%d]", i), a)
	}
	if d.HealthURL != "" {
		u, err := url.Parse(d.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || hasControl(d.HealthURL) {
			ck.add(key("health_url"), "%q is not an http or https URL", d.HealthURL)
		}
		if len(d.HealthCommand) > 0 {
			ck.add(key("health_command"), "set health_url or health_command, not both")
		}
	}
	if len(d.HealthCommand) > 0 {
		ck.argv(key("health_command"), "", d.HealthCommand)
	}
	ck.positive(key("health_timeout"), d.HealthTimeout)
	ck.positive(key("health_interval"), d.HealthInterval)
	if *d.HealthRetries < 0 {
		ck.add(key("health_retries"), "must not be negative")
	}
}

// setReleaseKey returns the first key of releaseKeys the deployment sets,
// or "".
func (d *Deployment) setReleaseKey() string {
	set := []bool{d.ReleasesDir != "", d.KeepReleases != 0, d.Shared != nil, d.Carry != nil, d.Activate != nil,
		d.HealthURL != "", d.HealthCommand != nil, d.HealthTimeout != 0, d.HealthRetries != nil, d.HealthInterval != 0}
	if i := slices.Index(set, true); i >= 0 {
		return releaseKeys[i]
	}
	return ""
}

// badReleasePath says what is wrong with a shared or carry path, or "".
func badReleasePath(p string) string {
	switch {
	case p == "" || hasControl(p):
		return "is empty or has control characters"
	case !filepath.IsLocal(p) || filepath.Clean(p) != p || p == ".":
		return "must be a clean relative path inside the release"
	case p == ".git" || strings.HasPrefix(p, ".git/"):
		return "is git's"
	}
	return ""
}

// inside reports whether p is strictly below dir.
func inside(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
