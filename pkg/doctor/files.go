package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/setup"
)

func configChecks(ctx context.Context, h *Host) []Result {
	f := h.Cfg.File
	return []Result{ok("load", f+" loads (strict)"),
		fromErr("mode", f+" group "+setup.Group+", mode 0640", setup.ConfigReadable(f), "dh-route setup")}
}

// lines reads the non-comment lines of a sysusers.d or tmpfiles.d file,
// split into fields.
func lines(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.Fields(l))
	}
	return out, sc.Err()
}

func (h *Host) usersFix() string {
	if h.Booted {
		return "systemd-sysusers dh-deployer.conf"
	}
	return h.Installed.ACLScript + " users"
}

func (h *Host) dirsFix() string {
	if h.Booted {
		return "systemd-tmpfiles --create dh-deployer.conf"
	}
	return h.Installed.ACLScript + " queues"
}

// userChecks: every user, group and membership of the sysusers file.
func userChecks(ctx context.Context, h *Host) []Result {
	ls, err := lines(h.Installed.Sysusers)
	if err != nil {
		return []Result{fail("sysusers", err.Error(), reinstall)}
	}
	var rs []Result
	for _, l := range ls {
		switch {
		case l[0] == "g" && len(l) > 1:
			if _, err := user.LookupGroup(l[1]); err != nil {
				rs = append(rs, fail("group "+l[1], "missing", h.usersFix()))
			} else {
				rs = append(rs, ok("group "+l[1], "exists"))
			}
		case l[0] == "u" && len(l) > 1:
			if !setup.UserExists(l[1]) {
				rs = append(rs, fail("user "+l[1], "missing", h.usersFix()))
			} else {
				rs = append(rs, ok("user "+l[1], "exists"))
			}
		case l[0] == "m" && len(l) > 2:
			if !setup.InGroup(l[1], l[2]) {
				rs = append(rs, fail("user "+l[1], "not in the group "+l[2], h.usersFix()))
			}
		}
	}
	return rs
}

// mode is a file's permission bits with setuid, setgid and sticky, as
// tmpfiles.d writes them.
func mode(fi fs.FileInfo) uint32 {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// dirChecks: every directory of the tmpfiles file with its owner, group,
// mode and ACL entries; and queue_dir on a durable file system.
func dirChecks(ctx context.Context, h *Host) []Result {
	ls, err := lines(h.Installed.Tmpfiles)
	if err != nil {
		return []Result{fail("tmpfiles", err.Error(), reinstall)}
	}
	// With an ACL, a directory's group mode bits are the ACL's mask,
	// which the ACL entries check.
	hasACL := map[string]bool{}
	for _, l := range ls {
		if len(l) >= 2 && strings.HasPrefix(l[0], "a") {
			hasACL[l[1]] = true
		}
	}
	var rs []Result
	byPath := map[string]int{} // index of the path's result
	for _, l := range ls {
		if len(l) < 2 {
			continue
		}
		typ, path := l[0], l[1]
		switch typ {
		case "d", "D":
			if len(l) < 5 {
				continue
			}
			byPath[path] = len(rs)
			rs = append(rs, checkDir(path, l[2], l[3], l[4], hasACL[path], h.dirsFix()))
		case "a", "a+":
			if len(l) < 7 {
				continue
			}
			i, seen := byPath[path]
			if !seen || !rs[i].OK {
				continue // the directory's own line says what is wrong
			}
			if missing, err := missingACL(ctx, h, path, l[6]); err != nil {
				rs[i] = fail(path, "ACL: "+err.Error(), h.dirsFix())
			} else if len(missing) > 0 {
				rs[i] = fail(path, "ACL lacks "+strings.Join(missing, ","), h.dirsFix())
			} else {
				rs[i].Detail += ", ACL"
			}
		}
	}
	err = durable.CheckFS(h.Cfg.QueueDir)
	rs = append(rs, fromErr("durable", h.Cfg.QueueDir+" is on a disk (not tmpfs/ramfs)", err,
		"put queue_dir on a disk file system in "+h.Cfg.File))
	return rs
}

func checkDir(path, wantMode, wantOwner, wantGroup string, acl bool, fix string) Result {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(path, "missing", fix)
	}
	if err != nil {
		return fail(path, err.Error(), fix)
	}
	if !fi.IsDir() {
		return fail(path, "not a directory", fix)
	}
	owner, group := setup.Owner(fi)
	var problems []string
	if wantOwner != "-" && owner != wantOwner {
		problems = append(problems, fmt.Sprintf("owner %s, want %s", owner, wantOwner))
	}
	if wantGroup != "-" && group != wantGroup {
		problems = append(problems, fmt.Sprintf("group %s, want %s", group, wantGroup))
	}
	ignore := uint32(0)
	if acl {
		ignore = 0o070
	}
	if m, err := strconv.ParseUint(strings.TrimPrefix(wantMode, "~"), 8, 32); err == nil && mode(fi)&^ignore != uint32(m)&^ignore {
		problems = append(problems, fmt.Sprintf("mode %04o, want %04o", mode(fi), m))
	}
	if len(problems) > 0 {
		return fail(path, strings.Join(problems, "; "), fix)
	}
	return ok(path, fmt.Sprintf("%s:%s %04o", owner, group, mode(fi)))
}

// missingACL returns the entries of acl (tmpfiles' short form) that
// getfacl does not show on path.
func missingACL(ctx context.Context, h *Host, path, acl string) ([]string, error) {
	out, err := h.Run.Run(ctx, nil, "getfacl", "--omit-header", "--absolute-names", "--", path)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.IndexAny(l, "\t#"); i >= 0 {
			l = l[:i]
		}
		have[strings.TrimSpace(l)] = true
	}
	var missing []string
	for _, e := range strings.Split(acl, ",") {
		if !have[longACL(e)] {
			missing = append(missing, e)
		}
	}
	return missing, nil
}

// longACL turns tmpfiles' "d:u:x:rx" into getfacl's "default:user:x:r-x"
// (X, execute for directories, is x: the paths checked are directories).
func longACL(e string) string {
	prefix := ""
	if s, ok := strings.CutPrefix(e, "d:"); ok {
		prefix, e = "default:", s
	}
	f := strings.Split(e, ":")
	if len(f) != 3 {
		return prefix + e
	}
	switch f[0] {
	case "u":
		f[0] = "user"
	case "g":
		f[0] = "group"
	case "m":
		f[0] = "mask"
	case "o":
		f[0] = "other"
	}
	perm := []byte("---")
	for i, c := range "rwx" {
		if strings.ContainsRune(f[2], c) || (c == 'x' && strings.ContainsRune(f[2], 'X')) {
			perm[i] = byte(c)
		}
	}
	f[2] = string(perm)
	return prefix + strings.Join(f, ":")
}

// ruleChecks: sudoers valid (visudo -c), the polkit rules in place.
func ruleChecks(ctx context.Context, h *Host) []Result {
	var rs []Result
	if _, err := h.Run.Run(ctx, nil, "visudo", "-c", "-q"); err != nil {
		rs = append(rs, fail("sudoers", "visudo -c: "+err.Error(), "visudo -c"))
	} else {
		rs = append(rs, ok("sudoers", "visudo -c passes"))
	}
	const polkit = "/etc/polkit-1/rules.d/50-dh-deployer.rules"
	if fi, err := os.Stat(polkit); err != nil || fi.Mode().Perm()&0o004 == 0 {
		rs = append(rs, fail("polkit", polkit+" missing or unreadable by polkitd", reinstall))
	} else {
		rs = append(rs, ok("polkit", polkit))
	}
	return rs
}

func secretChecks(ctx context.Context, h *Host) []Result {
	path, err := setup.SecretPath(h.Cfg)
	if err != nil {
		return []Result{fromErr("webhook", "", err, "dh-route setup")}
	}
	return append([]Result{fromErr("webhook", path+" mode 0600, a real secret", setup.CheckSecret(path), "dh-route setup")},
		notifySecretChecks(h.Cfg)...)
}

// notifySecretChecks checks the secrets of the [notify] targets: read by
// dh-route alone, so owned by dh-route (or root, when a LoadCredential=
// hands them over), mode 0600, and readable by no deployment's user.
func notifySecretChecks(cfg *config.Config) []Result {
	var rs []Result
	for _, name := range slices.Sorted(maps.Keys(cfg.Notify.Targets)) {
		t := cfg.Notify.Targets[name]
		for _, f := range [][2]string{{"url_file", t.URLFile}, {"password_file", t.PasswordFile}} {
			key, file := f[0], f[1]
			if file == "" {
				continue
			}
			check := "notify " + name + " " + key
			path, err := cfg.CredentialPath(file, func(string) string { return "" }) // beside config.toml, as LoadCredential= reads it
			if err == nil {
				err = setup.CheckSecretFile(check, path, "put the secret in "+path+", owned by dh-route, mode 0600")
			}
			if err == nil {
				err = ownedBy(path, "dh-route", "root")
			}
			rs = append(rs, fromErr(check, path+" dh-route's (or root's) alone, mode 0600", err, "chown dh-route "+path+" && chmod 0600 "+path))
		}
	}
	return rs
}

// ownedBy checks that path belongs to one of the users.
func ownedBy(path string, users ...string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	owner, _ := setup.Owner(fi)
	if !slices.Contains(users, owner) {
		return fmt.Errorf("%s belongs to %s, not to %s: a deployment's user may read it", path, owner, strings.Join(users, " or "))
	}
	return nil
}
