package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Self is the [deployments.NAME.self] table of a deployment of kind
// "self": dh-deployer deploying itself. After the checkout and the steps
// (which build the five tools into BuildDir), dh-deploy installs them
// into InstallDir (each replaced atomically: running daemons keep their
// old binary until restarted), migrates the database with the new
// dh-route, runs Restart, records the run as succeeded, and only then
// runs RestartSelf, which restarts the worker doing all this.
type Self struct {
	// BuildDir is where the steps leave the five binaries, relative to
	// the checkout. Default "bin" (what make build does).
	BuildDir string `toml:"build_dir"`

	// InstallDir is where they are installed; the deployment's user must
	// be allowed to write it. Default "/usr/local/bin".
	InstallDir string `toml:"install_dir"`

	// Migrate runs the new `dh-route migrate` (the deployment's database
	// role must then own the schema). Default true.
	Migrate *bool `toml:"migrate"`

	// Restart restarts the other stages, as argv lists run in order.
	// Default under systemd [["systemctl", "--no-ask-password", "restart",
	// "dh-receive.service", "dh-route.service", "dh-nginx.service",
	// "dh-cert.service"]] (a polkit rule allows the deployment's user:
	// dh-deployer-acl deployment NAME USER --self), else [["sudo", "-n",
	// "/usr/bin/systemctl", "restart", "dh-receive", "dh-route",
	// "dh-nginx", "dh-cert"]].
	Restart [][]string `toml:"restart"`

	// RestartSelf restarts the deployment workers, this one included,
	// once the run is recorded; it must not wait for the restart. Default
	// under systemd ["systemctl", "--no-ask-password", "--no-block",
	// "restart", "dh-deploy@*.service"] (polkit matches each instance
	// against the rule of dh-deployer-acl deployment NAME USER --self),
	// else ["sudo", "-n", "/usr/bin/systemctl", "--no-block", "restart",
	// "dh-deploy@A", "dh-deploy@B", ...] naming every configured
	// deployment: a sudo rule allows exactly that (SudoRules), never a
	// wildcard.
	RestartSelf []string `toml:"restart_self"`
}

// sudoDefaults sets the defaults of a host without systemd: sudo with
// exact argument lists; workers are the configured deployments' names.
func (s *Self) sudoDefaults(workers []string) {
	if s.Restart == nil {
		s.Restart = [][]string{{"sudo", "-n", "/usr/bin/systemctl", "restart", "dh-receive", "dh-route", "dh-nginx", "dh-cert"}}
	}
	if s.RestartSelf == nil {
		s.RestartSelf = []string{"sudo", "-n", "/usr/bin/systemctl", "--no-block", "restart"}
		for _, w := range workers {
			s.RestartSelf = append(s.RestartSelf, "dh-deploy@"+w)
		}
	}
}

// sudoArgRE is what SudoRules lets into a sudoers rule: no space, no glob
// (*, ?, [), nothing sudoers treats specially (, : = \ ! " #).
var sudoArgRE = regexp.MustCompile(`^[A-Za-z0-9@%._/+-]+$`)

// SudoRules returns the sudoers(5) lines that let user run, as root, exactly
// the commands of this self deployment that go through sudo ("sudo", "-n",
// then an absolute program and its arguments: the defaults on a host
// without systemd), each with its whole argument list, so that sudo allows
// that argument vector and no other. dh-deployer-acl deployment NAME USER
// --self --sudo writes them to /etc/sudoers.d/dh-deploy-NAME. An argument
// a rule could not hold literally (a space, a glob character, a character
// sudoers gives a meaning) is an error: a wildcard rule is never made.
func (s *Self) SudoRules(user string) ([]string, error) {
	var rules []string
	for _, argv := range append(slices.Clone(s.Restart), s.RestartSelf) {
		if len(argv) < 3 || argv[0] != "sudo" || argv[1] != "-n" {
			continue
		}
		if !filepath.IsAbs(argv[2]) {
			return nil, fmt.Errorf("%q: sudo needs the program's absolute path", strings.Join(argv, " "))
		}
		for _, a := range argv[2:] {
			if !sudoArgRE.MatchString(a) {
				return nil, fmt.Errorf("%q: argument %q cannot be allowed exactly by a sudo rule (only letters, digits and @%%._/+-)", strings.Join(argv, " "), a)
			}
		}
		rules = append(rules, fmt.Sprintf("%s ALL = (root) NOPASSWD: %s", user, strings.Join(argv[2:], " ")))
	}
	return rules, nil
}

// systemdDefaults sets the systemd defaults of what the file left out.
func (s *Self) systemdDefaults() {
	if s.Restart == nil {
		s.Restart = [][]string{systemctl("restart", "dh-receive.service", "dh-route.service", "dh-nginx.service", "dh-cert.service")}
	}
	if s.RestartSelf == nil {
		s.RestartSelf = []string{"systemctl", "--no-ask-password", "--no-block", "restart", "dh-deploy@*.service"}
	}
}

// Migrates reports whether the self deployment migrates the database.
func (s *Self) Migrates() bool { return s.Migrate == nil || *s.Migrate }

func (s *Self) validate(ck *checker, key []string) {
	if s.BuildDir == "" {
		s.BuildDir = "bin"
	}
	if s.InstallDir == "" {
		s.InstallDir = "/usr/local/bin"
	}
	ck.absPath(append(key, "install_dir"), s.InstallDir)
	if !filepath.IsLocal(s.BuildDir) {
		ck.add(append(key, "build_dir"), "must be a path inside the checkout")
	}
	for _, argv := range append(slices.Clone(s.Restart), s.RestartSelf) {
		if len(argv) == 0 || argv[0] == "" {
			ck.add(key, "restart and restart_self must be non-empty argv lists")
			return
		}
	}
	if _, err := s.SudoRules("user"); err != nil {
		ck.add(key, "%v", err)
		ck.hint("a sudo rule must name each argument exactly, never a wildcard (docs/deploy.md, \"Kind self\")")
	}
}
