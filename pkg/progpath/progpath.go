// Package progpath finds external programs: the one PATH search of the
// stages (Program and InPath, with the PATHs they give their commands:
// UserPATH, SystemPATH), and Find for the programs that dh-deployer's tests and
// development tools drive (PostgreSQL's server programs, git, nginx,
// certbot, ...), including where Debian keeps them off $PATH. When one is
// missing, Find's error names the Debian package that installs it.
//
// pkg/testenv wraps Find for tests; programs such as dh-demo use it directly.
package progpath

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The PATHs the stages give the commands they run: UserPATH for what runs
// as a deployment's user (steps, git), SystemPATH for root's tools
// (certbot, nginx).
const (
	UserPATH   = "/usr/local/bin:/usr/bin:/bin"
	SystemPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Program resolves name, the first element of a configured command: an
// absolute path is taken as it is, a bare name is searched in path (a
// PATH list: InPath). A relative path with a "/" is an error: it would
// depend on the working directory.
func Program(name, path string) (string, error) {
	switch {
	case filepath.IsAbs(name):
		return name, nil
	case strings.Contains(name, "/"):
		return "", fmt.Errorf("program %q must be an absolute path or a bare name", name)
	}
	return InPath(name, path)
}

// EnvPATH returns the value of PATH in env, a list of "NAME=value"
// entries in which a later entry wins, or "".
func EnvPATH(env []string) string {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return path
}

// ErrNotFound is wrapped by InPath's error for a program in none of the
// directories.
var ErrNotFound = errors.New("not found")

// InPath returns the path of the program name (a bare name, no "/") in
// the first directory of path (a PATH list) that holds it as a regular,
// executable file. Relative directories are skipped: what they find would
// depend on the working directory.
func InPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q %w in PATH %s", name, ErrNotFound, path)
}

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
	"man":             "man-db",
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
