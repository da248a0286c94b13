package config

import (
	"path/filepath"
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
