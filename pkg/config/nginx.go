package config

// Nginx is the [nginx] table: how dh-nginx installs sites and asks nginx
// to test and reload its configuration.
type Nginx struct {
	// ConfDir is where site files are installed. Default
	// "/etc/nginx/conf.d".
	ConfDir string `toml:"conf_dir"`

	// SnippetsDir is where snippet files are installed. Default
	// "/etc/nginx/snippets".
	SnippetsDir string `toml:"snippets_dir"`

	// TestCommand checks the whole configuration, as an argv list.
	// Default ["sudo", "-n", "/usr/sbin/nginx", "-t"].
	TestCommand []string `toml:"test_command"`

	// ReloadCommand makes nginx load the configuration, as an argv list.
	// Default ["sudo", "-n", "/usr/bin/systemctl", "reload", "nginx"].
	ReloadCommand []string `toml:"reload_command"`

	// CertDir is where the certificates of sites live, one directory per
	// certificate name holding fullchain.pem and privkey.pem (certbot's
	// live directory). Default "/etc/letsencrypt/live".
	CertDir string `toml:"cert_dir"`
}

func defaultNginx() Nginx {
	return Nginx{
		ConfDir:       "/etc/nginx/conf.d",
		SnippetsDir:   "/etc/nginx/snippets",
		TestCommand:   []string{"sudo", "-n", "/usr/sbin/nginx", "-t"},
		ReloadCommand: []string{"sudo", "-n", "/usr/bin/systemctl", "reload", "nginx"},
		CertDir:       "/etc/letsencrypt/live",
	}
}

func (n *Nginx) validate(ck *checker) {
	ck.absPath(k("nginx", "conf_dir"), n.ConfDir)
	ck.absPath(k("nginx", "snippets_dir"), n.SnippetsDir)
	ck.absPath(k("nginx", "cert_dir"), n.CertDir)
	for key, argv := range map[string][]string{"test_command": n.TestCommand, "reload_command": n.ReloadCommand} {
		if len(argv) == 0 || argv[0] == "" {
			ck.add(k("nginx", key), "must be a non-empty argv list")
		}
	}
}
