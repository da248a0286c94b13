// Package progpath finds the external programs that dh-deployer's tests
// and development tools drive (PostgreSQL's server programs, git, nginx,
// certbot, ...), including where Debian keeps them off $PATH. When one is
// missing, the error names the Debian package that installs it.
//
// pkg/testenv wraps it for tests; programs such as dh-demo use it directly.
package progpath

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
)

// packages maps a program to the Debian package that installs it.
var packages = map[string]string{
	"initdb":          "postgresql",
	"postgres":        "postgresql",
	"pg_ctl":          "postgresql",
	"nginx":           "nginx",
	"certbot":         "certbot",
	"sudo":            "sudo",
	"visudo":          "sudo",
	"setfacl":         "acl",
	"getfacl":         "acl",
	"git":             "git",
	"systemd-analyze": "systemd",
	"chromium":        "chromium",
	"node":            "nodejs",
	"fusermount3":     "fuse3",
	"psql":            "postgresql-client",
	"runuser":         "util-linux",
	"useradd":         "passwd",
	"lintian":         "lintian",
	"dpkg-deb":        "dpkg",
}

// goTools maps a program that tests install with go install to its
// package, for the hint.
var goTools = map[string]string{
	"pebble": "github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1",
}

// Find returns the absolute path of the program name. It searches $PATH,
// then /usr/lib/postgresql/*/bin (highest version first, since Debian keeps
// the server programs there), then /usr/sbin and /sbin, then where go
// install puts programs ($GOBIN, $GOPATH/bin, $HOME/go/bin). The error says
// how to install a missing program.
func Find(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return filepath.Abs(path)
	}
	for _, dir := range searchDirs() {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", errors.New(installHint(name))
}

// searchDirs lists the directories searched after $PATH.
func searchDirs() []string {
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int {
		return pgVersion(b) - pgVersion(a)
	})
	dirs := append(versions, "/usr/sbin", "/sbin")
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range filepath.SplitList(os.Getenv("GOPATH")) {
		if d != "" {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	return dirs
}

// pgVersion returns the major version in /usr/lib/postgresql/VERSION/bin,
// or -1 if it is not a number.
func pgVersion(dir string) int {
	v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	if err != nil {
		return -1
	}
	return v
}

func installHint(name string) string {
	if tool, ok := goTools[name]; ok {
		return fmt.Sprintf("%s not found; install it with: go install %s (or run: make deps)", name, tool)
	}
	pkg, ok := packages[name]
	if !ok {
		return fmt.Sprintf("%s not found; install the Debian package that provides it (or run: make deps)", name)
	}
	return fmt.Sprintf("%s not found; install it with: apt-get install -y %s (or run: make deps)", name, pkg)
}
