package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Nginx is the [nginx] table: how dh-nginx installs sites and asks nginx
// to test and reload its configuration.
//
// The defaults of test_command, test_output and reload_command depend on
// the host (systemd.Booted, decided when the file is loaded): under
// systemd, dh-nginx's unit sets no_new_privs, so sudo cannot work there and
// the defaults start the root unit dh-nginx-test.service and reload
// nginx.service through systemctl, which polkit allows dh-nginx
// (systemd/polkit/dh-deployer.rules). Without systemd they run sudo with
// the exact commands sudoers/dh-nginx allows. A key given in the file
// always wins.
type Nginx struct {
	// ConfDir is where site files are installed. Default
	// "/etc/nginx/conf.d".
	ConfDir string `toml:"conf_dir"`

	// SnippetsDir is where snippet files are installed. Default
	// "/etc/nginx/snippets".
	SnippetsDir string `toml:"snippets_dir"`

	// TestCommand checks the whole configuration, as an argv list.
	// Default under systemd ["systemctl", "--no-ask-password", "start",
	// "dh-nginx-test.service"], else ["sudo", "-n", "/usr/sbin/nginx",
	// "-t"].
	TestCommand []string `toml:"test_command"`

	// TestOutput is a file holding the output of the test command's last
	// run, which dh-nginx reads instead of the command's own output (the
	// root unit writes nginx -t's messages there; systemctl says only that
	// the unit failed). Empty: the command's own output. Default under
	// systemd, unless test_command is given, "/run/dh-deployer/nginx-test.log";
	// else empty.
	TestOutput string `toml:"test_output"`

	// ReloadCommand makes nginx load the configuration, as an argv list.
	// Default under systemd ["systemctl", "--no-ask-password", "reload",
	// "nginx.service"], else ["sudo", "-n", "/usr/bin/systemctl",
	// "reload", "nginx"].
	ReloadCommand []string `toml:"reload_command"`

	// CertDir is where the certificates of sites live, one directory per
	// certificate name holding fullchain.pem and privkey.pem (certbot's
	// live directory). Default "/etc/letsencrypt/live".
	CertDir string `toml:"cert_dir"`

	// LogDir holds one directory per nginx deployment, LogDir/DEPLOYMENT,
	// the only place its sites' access_log and error_log may write. The
	// operator creates each, owned by root and writable by no one else
	// (nginx's master opens log files as root). Default "/var/log/nginx".
	LogDir string `toml:"log_dir"`
}

// The systemd defaults of [nginx]: the root unit of nginx -t and its
// output file, as systemd/dh-nginx-test.service names them.
const (
	NginxTestUnit   = "dh-nginx-test.service"
	NginxTestOutput = "/run/dh-deployer/nginx-test.log"
)

func defaultNginx() Nginx {
	return Nginx{
		ConfDir:       "/etc/nginx/conf.d",
		SnippetsDir:   "/etc/nginx/snippets",
		TestCommand:   []string{"sudo", "-n", "/usr/sbin/nginx", "-t"},
		ReloadCommand: []string{"sudo", "-n", "/usr/bin/systemctl", "reload", "nginx"},
		CertDir:       "/etc/letsencrypt/live",
		LogDir:        "/var/log/nginx",
	}
}

// systemdDefaults replaces the sudo defaults by the systemd ones where the
// file gave no key.
func (n *Nginx) systemdDefaults(defined func(key ...string) bool) {
	if !defined("nginx", "test_command") {
		n.TestCommand = systemctl("start", NginxTestUnit)
		if !defined("nginx", "test_output") {
			n.TestOutput = NginxTestOutput
		}
	}
	if !defined("nginx", "reload_command") {
		n.ReloadCommand = systemctl("reload", "nginx.service")
	}
}

// systemctl is the argv of a systemctl call that never waits for a
// password: polkit either allows it or it fails.
func systemctl(verb string, units ...string) []string {
	return append([]string{"systemctl", "--no-ask-password", verb}, units...)
}

func (n *Nginx) validate(ck *checker) {
	ck.absPath(k("nginx", "conf_dir"), n.ConfDir)
	ck.absPath(k("nginx", "snippets_dir"), n.SnippetsDir)
	ck.absPath(k("nginx", "cert_dir"), n.CertDir)
	ck.absPath(k("nginx", "log_dir"), n.LogDir)
	if n.TestOutput != "" {
		ck.absPath(k("nginx", "test_output"), n.TestOutput)
	}
	for key, argv := range map[string][]string{"test_command": n.TestCommand, "reload_command": n.ReloadCommand} {
		if len(argv) == 0 || argv[0] == "" {
			ck.add(k("nginx", key), "must be a non-empty argv list")
		}
	}
}

// SiteLogDir is the directory the sites of an nginx deployment may log
// to: LogDir/DEPLOYMENT.
func (n *Nginx) SiteLogDir(deployment string) string {
	return filepath.Join(n.LogDir, deployment)
}

// CertExpiry returns the NotAfter of the certificate name in certDir
// (nginx.cert_dir): the first certificate of NAME/fullchain.pem, its leaf.
func CertExpiry(certDir, name string) (time.Time, error) {
	path := filepath.Join(certDir, name, "fullchain.pem")
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return c.NotAfter, nil
}
