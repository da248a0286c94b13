package route

import (
	"path"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/config"
)

// Table is the routing table of one configuration: the deployments of
// each repository, sorted by name, with their branch and tag patterns
// sorted into literal names and globs once. It is built once per
// configuration load (New, SetConfig), so that deciding a delivery costs
// the same with one deployment or a thousand: a lookup of its repository,
// then a look at that repository's deployments only.
type Table struct {
	cfg    *config.Config
	byRepo map[string][]target // by repository in lower case
}

// target is one deployment as the table matches it.
type target struct {
	name           string
	d              *config.Deployment
	branches, tags patterns
}

// patterns are a deployment's branches or tags: names compared as they
// are, and path.Match patterns (Validate has checked them).
type patterns struct {
	names []string
	globs []string
}

func compile(ps []string) patterns {
	var c patterns
	for _, p := range ps {
		if strings.ContainsAny(p, `*?[\`) {
			c.globs = append(c.globs, p)
		} else {
			c.names = append(c.names, p)
		}
	}
	return c
}

func (c *patterns) match(name string) bool {
	if slices.Contains(c.names, name) {
		return true
	}
	for _, g := range c.globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// NewTable builds cfg's routing table.
func NewTable(cfg *config.Config) *Table {
	t := &Table{cfg: cfg, byRepo: map[string][]target{}}
	for _, name := range cfg.DeploymentNames() { // sorted: so is each repository's list
		d, ok := cfg.Deployment(name)
		if !ok {
			continue
		}
		key := strings.ToLower(d.Repository)
		t.byRepo[key] = append(t.byRepo[key], target{name: name, d: d, branches: compile(d.Branches), tags: compile(d.Tags)})
	}
	return t
}

// Config is the configuration the table was built from.
func (t *Table) Config() *config.Config { return t.cfg }
