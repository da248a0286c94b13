package setup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// NginxSite is the nginx server passing the webhook (and the token path)
// to dh-receive's socket, as docs/operations.md step 7 writes it by hand.
const NginxSite = "/etc/nginx/sites-available/dh-deployer"

var hostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

func nginxSite(host string) string {
	return fmt.Sprintf(`# Written by dh-route setup --host %[1]s: the webhook and the token
# path to dh-receive's socket (dh-receive.socket). Yours to change: setup
# never overwrites it.
server {
    listen 80;
    server_name %[1]s;
    location = /github-webhook {
        proxy_pass http://unix:/run/dh-receive.sock:;
        proxy_set_header X-Forwarded-For $remote_addr;
        client_max_body_size 26m;
    }
    location /deploy/ {
        proxy_pass http://unix:/run/dh-receive.sock:;
        proxy_set_header X-Forwarded-For $remote_addr;
    }
}
`, host)
}

// Nginx puts the webhook's nginx server for host in place unless one is
// there (an existing file is kept, never overwritten), enables it, tests
// nginx's configuration and reloads nginx if it runs.
func Nginx(ctx context.Context, r *Runner, host string) error {
	if !hostRE.MatchString(host) || len(host) > 253 {
		return sysexits.Errorf(sysexits.Usage, "setup: --host %q is not a host name", host)
	}
	if _, err := os.Stat("/etc/nginx/sites-enabled"); err != nil {
		return hint.With(sysexits.Errorf(sysexits.Unavailable, "setup: --host: no /etc/nginx/sites-enabled"),
			"apt-get install -y nginx, or put nginx in front by hand (docs/operations.md, step 7) and leave out --host")
	}
	_, err := os.Stat(NginxSite)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := durable.WriteFile(NginxSite, []byte(nginxSite(host)), 0o644); err != nil {
			return err
		}
		r.Say("wrote the nginx server for %s: %s", host, NginxSite)
	case err != nil:
		return err
	default:
		r.Say("%s exists: kept", NginxSite)
	}
	link := "/etc/nginx/sites-enabled/dh-deployer"
	if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink("../sites-available/dh-deployer", link); err != nil {
			return err
		}
	}
	if _, err := r.Run(ctx, nil, "nginx", "-t", "-q"); err != nil {
		return hint.With(fmt.Errorf("setup: nginx -t: %w", err), "fix the file nginx -t names, then run setup again")
	}
	if Booted() {
		if _, err := r.Run(ctx, nil, "systemctl", "try-reload-or-restart", "nginx.service"); err != nil {
			return err
		}
	}
	return nil
}
