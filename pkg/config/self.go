package config

import "path/filepath"

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
	// "restart", "dh-deploy@*.service"], else ["sudo", "-n",
	// "/usr/bin/systemctl", "--no-block", "restart", "dh-deploy@*"].
	RestartSelf []string `toml:"restart_self"`
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
	if s.Restart == nil {
		s.Restart = [][]string{{"sudo", "-n", "/usr/bin/systemctl", "restart", "dh-receive", "dh-route", "dh-nginx", "dh-cert"}}
	}
	if s.RestartSelf == nil {
		s.RestartSelf = []string{"sudo", "-n", "/usr/bin/systemctl", "--no-block", "restart", "dh-deploy@*"}
	}
	ck.absPath(append(key, "install_dir"), s.InstallDir)
	if !filepath.IsLocal(s.BuildDir) {
		ck.add(append(key, "build_dir"), "must be a path inside the checkout")
	}
	for _, argv := range append(s.Restart, s.RestartSelf) {
		if len(argv) == 0 || argv[0] == "" {
			ck.add(key, "restart and restart_self must be non-empty argv lists")
			break
		}
	}
}
