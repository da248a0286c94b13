package config

import "path/filepath"

// Cert is the [cert] table: how dh-cert runs certbot.
//
// dh-cert runs certbot one of two ways. Under systemd (systemd.Booted,
// decided when the file is loaded) it writes what it wants done to
// CertbotRequestFile and runs request_command, which starts the root unit
// dh-certbot.service (polkit allows dh-cert exactly that); the unit runs
// `dh-cert certbot`, which checks the request again and runs certbot with
// arguments built from this root-owned file. Without systemd, dh-cert runs
// command (sudo, whose rule allows only dh-cert's argument shapes) with the
// arguments itself. A key given in the file always wins: a file that sets
// command (and not request_command) runs certbot through it everywhere.
type Cert struct {
	// Command runs certbot, as an argv prefix to which dh-cert appends the
	// subcommand and its arguments. Used when request_command is empty.
	// Default ["sudo", "-n", "/usr/bin/certbot"].
	Command []string `toml:"command"`

	// RequestCommand, when not empty, is run (an argv list) after dh-cert
	// wrote its request to CertbotRequestFile, instead of Command; it must
	// run `dh-cert certbot` as root and fail when certbot fails. Default
	// under systemd, unless command is given, ["systemctl",
	// "--no-ask-password", "start", "dh-certbot.service"]; else empty.
	RequestCommand []string `toml:"request_command"`

	// RequestOutput is the file where request_command's run leaves
	// certbot's output (dh-certbot.service's StandardOutput=), read for the
	// records. Empty: request_command's own output. Default with the
	// default request_command "/run/dh-deployer/certbot.log"; else empty.
	RequestOutput string `toml:"request_output"`

	// Certbot is the certbot program `dh-cert certbot` runs as root.
	// Default "/usr/bin/certbot".
	Certbot string `toml:"certbot"`

	// Authenticator is "webroot" (the ACME challenge files go to Webroot,
	// which nginx serves under /.well-known/acme-challenge/) or "nginx"
	// (certbot's nginx plugin). Default "webroot".
	Authenticator string `toml:"authenticator"`

	// Webroot is the webroot authenticator's directory. Default
	// "<state_dir>/acme"; see Config.Webroot.
	Webroot string `toml:"webroot"`

	// Email is the ACME account's contact address. Optional: without it
	// certbot registers with --register-unsafely-without-email.
	Email string `toml:"email"`

	// Server is the ACME directory URL. Optional: default certbot's (Let's
	// Encrypt production).
	Server string `toml:"server"`
}

// The systemd defaults of [cert]: the root unit that runs `dh-cert
// certbot` and its output file, as systemd/dh-certbot.service names them.
const (
	CertbotUnit   = "dh-certbot.service"
	CertbotOutput = "/run/dh-deployer/certbot.log"
)

func defaultCert() Cert {
	return Cert{
		Command:       []string{"sudo", "-n", "/usr/bin/certbot"},
		Certbot:       "/usr/bin/certbot",
		Authenticator: "webroot",
	}
}

// systemdDefaults sets the systemd defaults where the file gave no key.
func (c *Cert) systemdDefaults(defined func(key ...string) bool) {
	if defined("cert", "command") || defined("cert", "request_command") {
		return
	}
	c.RequestCommand = systemctl("start", CertbotUnit)
	if !defined("cert", "request_output") {
		c.RequestOutput = CertbotOutput
	}
}

func (c *Cert) validate(ck *checker) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		ck.add(k("cert", "command"), "must be a non-empty argv list")
	}
	if len(c.RequestCommand) > 0 && c.RequestCommand[0] == "" {
		ck.add(k("cert", "request_command"), "must be empty or an argv list")
	}
	if c.RequestOutput != "" {
		ck.absPath(k("cert", "request_output"), c.RequestOutput)
	}
	ck.absPath(k("cert", "certbot"), c.Certbot)
	if c.Authenticator != "webroot" && c.Authenticator != "nginx" {
		ck.add(k("cert", "authenticator"), "must be \"webroot\" or \"nginx\", not %q", c.Authenticator)
	}
	if c.Webroot != "" {
		ck.absPath(k("cert", "webroot"), c.Webroot)
	}
}

// Webroot is the webroot authenticator's directory: cert.webroot, or
// <state_dir>/acme.
func (c *Config) Webroot() string {
	if c.Cert.Webroot != "" {
		return c.Cert.Webroot
	}
	return filepath.Join(c.StateDir, "acme")
}

// CertbotRequestFile is where dh-cert leaves its request for `dh-cert
// certbot` when cert.request_command is set: <queue_dir>/cert/.certbot-request
// (dh-cert's own directory; the dot keeps it out of the queue).
func (c *Config) CertbotRequestFile() string {
	return filepath.Join(c.QueuePath(CertQueue), ".certbot-request")
}
