package setup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Deployment is what `dh-deploy add` was asked.
type Deployment struct {
	Name       string
	Repository string
	Branches   []string
	Path       string
	CloneURL   string     // "" means GitHub's https URL of Repository
	Steps      [][]string // argv lists
	User       string     // "" means dh-deploy-NAME, a user of its own
	Host       string     // the webhook's public host name, for the printed URL
}

// Comment is the comment (GECOS) of the users AddDeployment creates; the
// package's purge removes the users whose comment starts with it.
const Comment = "dh-deployer deployment "

// UnitDropIn is the drop-in that makes dh-deploy@NAME run as its user.
func UnitDropIn(name string) string {
	return "/etc/systemd/system/dh-deploy@" + name + ".service.d/user.conf"
}

// AddDeployment adds a deployment end to end, as "Adding a deployment" in
// docs/operations.md does by hand: its table in the configuration, its
// user, database role, queue and log directories, checkout directory, the
// instance's user drop-in, git access checked as that user, and (on a
// systemd host) dh-route reloaded and dh-deploy@NAME enabled and started.
// cfg is the loaded configuration, whose file gets the new table.
func AddDeployment(ctx context.Context, r *Runner, cfg *config.Config, d Deployment) error {
	if err := RequireRoot("add"); err != nil {
		return err
	}
	if d.User == "" {
		d.User = config.DefaultDeployUser + "-" + d.Name
	}
	if old, ok := cfg.Deployment(d.Name); ok {
		return hint.With(sysexits.Errorf(sysexits.Config, "add: deployment %q is already in %s (repository %s)", d.Name, cfg.File, old.Repository),
			"edit its table there, or choose another name")
	}
	// The new configuration, checked by the strict loader before anything
	// on the host changes.
	table, err := d.table()
	if err != nil {
		return err
	}
	old, err := os.ReadFile(cfg.File)
	if err != nil {
		return err
	}
	text := appendTable(old, table)
	newCfg, err := config.Parse(cfg.File, text)
	if err != nil {
		return hint.With(fmt.Errorf("add: the deployment's table does not load: %w", err), "check the flags; nothing was changed")
	}
	dep, _ := newCfg.Deployment(d.Name)
	if err := d.checkPath(); err != nil {
		return err
	}
	if err := checkDropIn(d.Name, d.User); err != nil {
		return err
	}
	db, err := ReachDB(ctx, cfg.DatabaseURL, r)
	if err != nil {
		return err
	}

	if err := d.makeUser(ctx, r); err != nil {
		return err
	}
	if err := db.DeployRole(ctx, d.User); err != nil {
		return err
	}
	if _, err := r.Run(ctx, nil, Locate().ACLScript, "deployment", d.Name, d.User); err != nil {
		return fmt.Errorf("queue and log directories of %s: %w", d.Name, err)
	}
	r.Say("queue %s and run logs, consumed by %s", newCfg.QueuePath(d.Name), d.User)
	if err := d.makePath(); err != nil {
		return err
	}
	if err := CloneAccess(ctx, r, d.User, dep.FetchURL(), true); err != nil {
		return err
	}
	r.Say("%s can read %s", d.User, dep.FetchURL())
	if err := writeDropIn(d.Name, d.User); err != nil {
		return err
	}
	if err := replaceConfig(cfg.File, old, text); err != nil {
		return err
	}
	r.Say("added [deployments.%s] to %s", d.Name, cfg.File)
	r.Say("it serves from %s, a link to the live release in %s.releases (docs/deploy.md, \"Releases\")", d.LivePath(), d.LivePath())

	if Booted() {
		if _, err := r.Run(ctx, nil, "systemctl", "daemon-reload"); err != nil {
			return err
		}
		if _, err := r.Run(ctx, nil, "systemctl", "try-reload-or-restart", "dh-route.service"); err != nil {
			return err
		}
		if _, err := r.Run(ctx, nil, "systemctl", "enable", "--now", "dh-deploy@"+d.Name+".service"); err != nil {
			return err
		}
		r.Say("dh-route reloaded; dh-deploy@%s enabled and started", d.Name)
	} else {
		r.Say("not a systemd host: reload dh-route (kill -HUP) and start the worker as docs/operations.md says")
	}
	r.Say("")
	r.Say("Webhook: https://%s/github-webhook in https://github.com/%s/settings/hooks (content type application/json, the secret of dh-route setup)", hostOr(d.Host), dep.Repository)
	r.Say("Next: deploy now without a push:  sudo -u %s dh-deploy deploy %s", d.User, d.Name)
	r.Say("      then check the host:         dh-route doctor")
	return nil
}

// appendTable is old, one empty line and table, in a new array (old is
// compared with the file again before it is replaced).
func appendTable(old, table []byte) []byte {
	return slices.Concat(bytes.TrimRight(old, "\n"), []byte("\n\n"), table)
}

// table renders the deployment's configuration table.
func (d Deployment) table() ([]byte, error) {
	t := map[string]any{"repository": d.Repository, "branches": d.Branches, "path": d.LivePath(), "user": d.User}
	if d.CloneURL != "" {
		t["clone_url"] = d.CloneURL
	}
	if len(d.Steps) > 0 {
		t["steps"] = d.Steps
	}
	// The name as a quoted key: whatever it holds stays one key, which
	// the loader then checks.
	key, _ := json.Marshal(d.Name)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# added by dh-deploy add\n[deployments.%s]\n", key)
	if err := toml.NewEncoder(&b).Encode(t); err != nil {
		return nil, sysexits.New(sysexits.Usage, err)
	}
	return b.Bytes(), nil
}

// LivePath is the deployment's path key: DIR/current inside the
// directory --path names, which is the user's. With strategy releases
// (the default of kind steps) dh-deploy makes it a symbolic link to the
// live release, kept in DIR/current.releases: the user must be able to
// write the directory holding it, which the parent of DIR (such as
// /srv/www) is not.
func (d Deployment) LivePath() string { return filepath.Join(d.Path, "current") }

// checkPath refuses a checkout path that exists and belongs to another
// user (it would be taken over) or is not a directory.
func (d Deployment) checkPath() error {
	fi, err := os.Lstat(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return sysexits.Errorf(sysexits.Config, "add: path %s exists and is not a directory", d.Path)
	}
	owner, _ := Owner(fi)
	if owner != d.User {
		return hint.With(sysexits.Errorf(sysexits.Config, "add: path %s exists and belongs to %s, not %s: refusing to take it over", d.Path, owner, d.User),
			fmt.Sprintf("choose another --path, or give it to the deployment first: chown -R %s %s", d.User, d.Path))
	}
	return nil
}

// Owner is the names of a file's owner and group (their numbers when
// they have no name).
func Owner(fi fs.FileInfo) (owner, group string) {
	st := fi.Sys().(*syscall.Stat_t)
	owner, group = strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return owner, group
}

// makePath makes the checkout's directory, the user's.
func (d Deployment) makePath() error {
	u, err := user.Lookup(d.User)
	if err != nil {
		return err
	}
	g, err := user.LookupGroup(Group)
	if err != nil {
		return err
	}
	if err := durable.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(d.Path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return os.Chown(d.Path, uid, gid)
}

// makeUser creates the deployment's user unless it exists; an existing
// one must be in the group dh-deployer.
func (d Deployment) makeUser(ctx context.Context, r *Runner) error {
	if UserExists(d.User) {
		if !InGroup(d.User, Group) {
			return hint.With(sysexits.Errorf(sysexits.Config, "add: user %s exists and is not in the group %s", d.User, Group),
				fmt.Sprintf("usermod -aG %s %s, or choose another --user", Group, d.User))
		}
		r.Say("user %s exists: kept", d.User)
		return nil
	}
	home := "/var/lib/" + d.User
	if _, err := r.Run(ctx, nil, "useradd", "--system", "--gid", Group, "--create-home", "--home-dir", home,
		"--shell", "/usr/sbin/nologin", "--comment", Comment+d.Name, d.User); err != nil {
		return fmt.Errorf("create user %s: %w", d.User, err)
	}
	r.Say("created user %s (home %s)", d.User, home)
	return nil
}

func dropInText(usr string) string { return "[Service]\nUser=" + usr + "\n" }

// checkDropIn refuses a drop-in of dh-deploy@NAME that names another user.
func checkDropIn(name, usr string) error {
	path := UnitDropIn(name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && string(b) == dropInText(usr)) {
		return nil
	}
	if err != nil {
		return err
	}
	return hint.With(sysexits.Errorf(sysexits.Config, "add: %s exists with other content: refusing to overwrite it", path),
		"remove it if it is stale, or use --user with the user it names")
}

func writeDropIn(name, usr string) error {
	path := UnitDropIn(name)
	if err := durable.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(path, []byte(dropInText(usr)), 0o644)
}

// replaceConfig puts text in place of the configuration file, which must
// still hold old: a new file with the old one's owner and mode, renamed
// over it, the directory synced. A flock on the directory keeps two
// replacements apart; a file changed since old was read is refused (run
// again), so no change is lost.
func replaceConfig(path string, old, text []byte) error {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Dir(path), err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return queue.Retry(fmt.Errorf("%s changed while the deployment was being added: run the command again", path))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	tmp := path + ".new"
	os.Remove(tmp) // a leftover of a crashed earlier run; we hold the lock
	if err := durable.Stage(tmp, text, fi.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Chown(tmp, int(st.Uid), int(st.Gid)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, fi.Mode().Perm()); err != nil {
		os.Remove(tmp)
		return err
	}
	return durable.Rename(tmp, path)
}

var localURLRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)

// CloneAccess checks that usr can read the repository at url (git
// ls-remote as that user); a local repository is first marked
// safe.directory for the user (when markSafe), as git wants for another
// owner's.
func CloneAccess(ctx context.Context, r *Runner, usr, url string, markSafe bool) error {
	if strings.HasPrefix(url, "/") && markSafe {
		if !localURLRE.MatchString(url) {
			return sysexits.Errorf(sysexits.Config, "clone_url %q: unusual characters in a local path", url)
		}
		safe, _ := r.As(ctx, nil, usr, true, "git", "config", "--global", "--get-all", "safe.directory")
		if !strings.Contains("\n"+safe, "\n"+url+"\n") {
			if _, err := r.As(ctx, nil, usr, true, "git", "config", "--global", "--add", "safe.directory", url); err != nil {
				return fmt.Errorf("mark %s safe for %s: %w", url, usr, err)
			}
		}
	}
	if _, err := r.As(ctx, nil, usr, true, "git", "ls-remote", "--", url, "HEAD"); err != nil {
		return hint.With(sysexits.Errorf(sysexits.Unavailable, "%s cannot read %s: %v", usr, url, err),
			fmt.Sprintf("give %s access (a deploy key in ~%s/.ssh, or a public https URL), then check: sudo -u %s git ls-remote %s", usr, usr, usr, url))
	}
	return nil
}
