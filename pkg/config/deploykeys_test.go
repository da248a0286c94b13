package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleDeploymentKeys returns the keys that docs/config.example.toml
// shows in its [deployments.NAME] tables, set or commented out, in order.
func exampleDeploymentKeys(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`^(?:# )?\[([a-z0-9_.-]+)\]\s*$`)
	assign := regexp.MustCompile(`^(?:# ?)?([a-z_]+)\s*=`)
	var keys []string
	inDeployment := false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\n")
		if m := header.FindStringSubmatch(line); m != nil {
			parts := strings.Split(m[1], ".")
			inDeployment = len(parts) == 2 && parts[0] == "deployments"
			continue
		}
		if m := assign.FindStringSubmatch(line); m != nil && inDeployment && !slices.Contains(keys, m[1]) {
			keys = append(keys, m[1])
		}
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no key of a [deployments.NAME] table found", examplePath)
	}
	return keys
}

// TestDeploymentKeysChecked keeps the table of deployment checks complete:
// every key of the Deployment struct and every key that the example
// configuration shows in a deployment's table has its row (nil only for
// a key with nothing to check beyond its TOML type), and no row names a
// key that does not exist.
func TestDeploymentKeysChecked(t *testing.T) {
	var table []string
	for _, dk := range deploymentKeys {
		if slices.Contains(table, dk.name) {
			t.Errorf("deploymentKeys: %q has two rows", dk.name)
		}
		table = append(table, dk.name)
	}
	fields := keysOf(reflect.TypeFor[Deployment]())
	for _, key := range fields {
		if !slices.Contains(table, key) {
			t.Errorf("deploymentKeys: no row for key %q of Deployment", key)
		}
	}
	for _, key := range table {
		if !slices.Contains(fields, key) {
			t.Errorf("deploymentKeys: row %q is not a key of Deployment", key)
		}
	}
	for _, key := range exampleDeploymentKeys(t) {
		if !slices.Contains(table, key) {
			t.Errorf("%s: deployment key %q has no row in deploymentKeys", examplePath, key)
		}
	}
}

// TestDeploymentKeyProblemsNameTheKey checks that a problem found by a row
// of the table is reported at that row's key: the check of a key speaks
// of that key only (or of the deployment's table as a whole).
func TestDeploymentKeyProblemsNameTheKey(t *testing.T) {
	bad := map[string]string{
		"kind":              `kind = "docker"`,
		"repository":        `repository = "a/b/c"`,
		"branches":          `branches = ["refs/heads/main"]`,
		"tags":              `tags = [""]`,
		"path":              `path = "srv"`,
		"clone_url":         `clone_url = "-x"`,
		"events":            `events = ["Push!"]`,
		"steps":             `steps = [[]]`,
		"user":              `user = "Root User"`,
		"timeout":           `timeout = "-1s"`,
		"step_timeout":      `step_timeout = "-1s"`,
		"strategy":          `strategy = "blue-green"`,
		"releases_dir":      `releases_dir = "rel"`,
		"keep_releases":     `keep_releases = 0`,
		"shared":            `shared = ["/etc"]`,
		"carry":             `carry = [".git"]`,
		"activate":          `activate = [[]]`,
		"health_url":        `health_url = "ftp://x"`,
		"health_command":    `health_command = [""]`,
		"health_timeout":    `health_timeout = "-1s"`,
		"health_retries":    `health_retries = -1`,
		"health_interval":   `health_interval = "-1s"`,
		"notify":            `notify = ["nowhere"]`,
		"token_files":       `token_files = ["../t"]`,
		"windows":           `windows = ["someday"]`,
		"time_zone":         `time_zone = "Nowhere/Atlantis"`,
		"environment_file":  `environment_file = "env"`,
		"environment":       `environment = { DH_X = "1" }`,
		"sites":             `sites = [{ rule = "include", select = ["*"] }]`,
		"domains":           `domains = ["a.test"]`,
		"serve":             `serve = ["/srv/www"]`,
		"upstreams":         `upstreams = ["a.test:80"]`,
		"unsafe_directives": `unsafe_directives = ["ssi"]`,
		"self":              "[deployments.api.self]\nbuild_dir = \"bin\"",
	}
	for _, dk := range deploymentKeys {
		if dk.check == nil {
			continue
		}
		line, ok := bad[dk.name]
		if !ok {
			t.Errorf("no bad value of %q to try", dk.name)
			continue
		}
		t.Run(dk.name, func(t *testing.T) {
			path := writeConfig(t, deployment("api", line))
			_, err := Load(path)
			want := "deployments.api." + dk.name
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Load with %s = %v; want a problem at %s", line, err, want)
			}
		})
	}
}
