package config

import "path/filepath"

// Cert is the [cert] table: how dh-cert runs certbot.
type Cert struct {
	// Command runs certbot, as an argv prefix to which dh-cert appends the
	// subcommand and its arguments. Default ["sudo", "-n",
	// "/usr/bin/certbot"].
	Command []string `toml:"command"`

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

func defaultCert() Cert {
	return Cert{
		Command:       []string{"sudo", "-n", "/usr/bin/certbot"},
		Authenticator: "webroot",
	}
}

func (c *Cert) validate(ck *checker) {
	if len(c.Command) == 0 || c.Command[0] == "" {
		ck.add(k("cert", "command"), "must be a non-empty argv list")
	}
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
