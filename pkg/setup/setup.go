package setup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Options are what `dh-route setup` was asked.
type Options struct {
	Config  string // the configuration file
	Host    string // the webhook's public host name: nginx's server for it, and the printed URL
	NoStart bool   // leave the units alone (the package's postinst starts them)
}

// Setup does the database part of a new host and starts the units: the
// database (created unless it exists), the migrations, the stages' roles,
// the webhook secret (generated unless it exists, and then printed with
// what to paste into GitHub), and, on a systemd host, the units enabled
// and started. Run again, it changes nothing but the schema of a newer
// binary (an upgrade).
func Setup(ctx context.Context, r *Runner, cfg *config.Config, opts Options) error {
	if err := RequireRoot("setup"); err != nil {
		return err
	}
	if !UserExists("dh-route") || !InGroup("dh-route", Group) {
		return hint.With(sysexits.Errorf(sysexits.Config, "setup: the stage users do not exist yet"),
			"systemd-sysusers dh-deployer.conf && systemd-tmpfiles --create dh-deployer.conf (the package's postinst does it)")
	}
	if err := ConfigReadable(cfg.File); err != nil {
		return err
	}
	// A secret already there is checked before anything changes.
	path, err := SecretPath(cfg)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		if err := CheckSecret(path); err != nil {
			return err
		}
	}
	db, err := ReachDB(ctx, cfg.DatabaseURL, r)
	if err != nil {
		return err
	}
	if err := db.Create(ctx); err != nil {
		return err
	}
	if err := db.Migrate(ctx, cfg.File); err != nil {
		return err
	}
	if err := db.ApplyRoles(ctx); err != nil {
		return err
	}
	secret, made, err := Secret(cfg)
	if err != nil {
		return err
	}
	if made {
		r.Say("wrote a new webhook secret to %s", secret.Path)
		r.Say("")
		r.Say("In GitHub: the repository's Settings → Webhooks → Add webhook:")
		r.Say("  Payload URL:  https://%s/github-webhook", hostOr(opts.Host))
		r.Say("  Content type: application/json")
		r.Say("  Secret:       %s", secret.Value)
		r.Say("  Events:       Just the push event")
		r.Say("")
	} else {
		r.Say("webhook secret %s exists: kept (GitHub has it already; cat %s shows it)", secret.Path, secret.Path)
	}
	// dh-nginx's rights in /etc/nginx (docs/operations.md step 3).
	if _, err := os.Stat("/etc/nginx/conf.d"); err == nil {
		if _, err := r.Run(ctx, nil, Locate().ACLScript, "nginx"); err != nil {
			return fmt.Errorf("let dh-nginx write /etc/nginx/conf.d: %w", err)
		}
		r.Say("dh-nginx may write /etc/nginx/conf.d and /etc/nginx/snippets (ACL)")
	}
	if opts.Host != "" && !opts.NoStart {
		if err := Nginx(ctx, r, opts.Host); err != nil {
			return err
		}
	}
	if opts.NoStart || !Booted() {
		if !Booted() {
			r.Say("not a systemd host: start the stages as docs/operations.md says (Without systemd)")
		}
		return nil
	}
	units := Units
	if len(cfg.Receive.HookUsers) > 0 {
		units = append(units[:len(units):len(units)], "dh-receive-hook.socket")
	}
	if _, err := r.Run(ctx, nil, "systemctl", append([]string{"enable", "--now"}, units...)...); err != nil {
		return fmt.Errorf("start the units: %w", err)
	}
	r.Say("enabled and started %v", units)
	// Debian's certbot.timer would renew behind dh-cert's back.
	if _, err := r.Run(ctx, nil, "systemctl", "cat", "certbot.timer"); err == nil {
		if _, err := r.Run(ctx, nil, "systemctl", "disable", "--now", "certbot.timer"); err != nil {
			return err
		}
		r.Say("disabled Debian's certbot.timer (dh-cert-renew.timer renews)")
	}
	return nil
}

func hostOr(h string) string {
	if h == "" {
		return "HOST"
	}
	return h
}

// ConfigReadable checks that the stages can read the configuration: group
// dh-deployer, mode 0640 (not writable by the group, nothing for others).
func ConfigReadable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if _, group := Owner(fi); group != Group || fi.Mode().Perm()&0o077 != 0o040 {
		return hint.With(sysexits.Errorf(sysexits.Config, "%s has mode %04o, group %s: the stages need group %s, mode 0640", path, fi.Mode().Perm(), group, Group),
			fmt.Sprintf("chgrp %s %s && chmod 0640 %s", Group, path, path))
	}
	return nil
}

// SecretFile is the webhook secret as setup found or made it.
type SecretFile struct {
	Path  string
	Value string // only when setup made it
}

// SecretPath is where the first of secret_files lives on disk: a relative
// name is the unit's credential source beside the configuration.
func SecretPath(cfg *config.Config) (string, error) {
	if len(cfg.Receive.SecretFiles) == 0 {
		return "", sysexits.Errorf(sysexits.Config, "config: [receive] secret_files is empty")
	}
	name := cfg.Receive.SecretFiles[0]
	if filepath.IsAbs(name) {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return "", sysexits.Errorf(sysexits.Config, "config: secret file %q leaves the configuration's directory", name)
	}
	return filepath.Join(filepath.Dir(cfg.File), name), nil
}

// SecretMode is the mode of the webhook secret: root's alone when systemd
// hands it to dh-receive, dh-receive's own without systemd.
const SecretMode fs.FileMode = 0o600

// Secret makes the webhook secret unless it exists (32 random bytes,
// base64, mode 0600). An existing one is checked, never replaced.
func Secret(cfg *config.Config) (SecretFile, bool, error) {
	path, err := SecretPath(cfg)
	if err != nil {
		return SecretFile{}, false, err
	}
	_, err = os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		raw := make([]byte, 32)
		rand.Read(raw)
		value := base64.StdEncoding.EncodeToString(raw)
		if err := durable.WriteFile(path, []byte(value+"\n"), SecretMode); err != nil {
			return SecretFile{}, false, err
		}
		if !Booted() {
			// No LoadCredential=: dh-receive reads the file itself.
			if u, err := user.Lookup("dh-receive"); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				if err := os.Chown(path, uid, 0); err != nil {
					return SecretFile{}, false, err
				}
			}
		}
		return SecretFile{Path: path, Value: value}, true, nil
	case err != nil:
		return SecretFile{}, false, err
	}
	if err := CheckSecret(path); err != nil {
		return SecretFile{}, false, err
	}
	return SecretFile{Path: path}, false, nil
}

// CheckSecret checks an existing secret file: regular, not readable by
// group or others, a real secret (config.ReadSecretFile).
func CheckSecret(path string) error { return CheckSecretFile("webhook secret", path, "dh-route setup") }

// CheckSecretFile checks that the secret file path (what it is, for the
// message) is a regular file readable by its owner alone, holding a
// real secret; fix is the hint when it is missing.
func CheckSecretFile(what, path, fix string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return hint.With(sysexits.Errorf(sysexits.Config, "%s %s: %v", what, path, err), fix)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return hint.With(
			sysexits.Errorf(sysexits.Config, "%s %s has mode %v: others may read it", what, path, fi.Mode()),
			"chmod 0600 "+path)
	}
	_, err = config.ReadSecretFile(path)
	return err
}
