package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// maxEnvironmentFile bounds an environment_file.
const maxEnvironmentFile = 64 << 10

// SecretEnvironment reads the deployment's environment_file (nil, nil
// without one) as the process that runs the steps: the deployment's
// worker, as its own user. It refuses, with a config.Error (exit 78; or
// a permission error, 77, for a file it may not open) naming the file and the fix but
// never a value: a symbolic link, anything but a regular file, a file
// that another user owns or that its group or others may read (a secret
// every build could read is no secret), one over 64 KiB, a line that is
// not NAME=VALUE, a name that is not an environment variable's or that
// starts with DH_, a NUL byte.
func (d *Deployment) SecretEnvironment() (map[string]string, error) {
	path := d.EnvironmentFile
	if path == "" {
		return nil, nil
	}
	key := fmt.Sprintf("deployments.%s.environment_file %s", d.Name, path)
	bad := func(format string, args ...any) error {
		return errorf("%s: %s", key, fmt.Sprintf(format, args...))
	}
	// O_NOFOLLOW: the file itself, never what a link points to.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if os.IsPermission(err) {
			return nil, fmt.Errorf("%s: %w (hint: it must belong to the deployment's user, %s)", key, err, d.RunsAs())
		}
		return nil, bad("%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, bad("%v", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return nil, bad("not a regular file")
	case !ok:
		return nil, bad("cannot read its owner")
	case int(st.Uid) != os.Geteuid():
		return nil, bad("owned by uid %d, not by this worker's user (uid %d): chown %s %s", st.Uid, os.Geteuid(), d.RunsAs(), path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, bad("mode %04o lets other users read it: chmod 0600 %s", fi.Mode().Perm(), path)
	case fi.Size() > maxEnvironmentFile:
		return nil, bad("larger than %d bytes", maxEnvironmentFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxEnvironmentFile+1))
	if err != nil {
		return nil, bad("%v", err)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, bad("contains a NUL byte")
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxEnvironmentFile+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		switch {
		case !ok:
			return nil, bad("line %d is not NAME=VALUE", n)
		case !envNameRE.MatchString(name):
			return nil, bad("line %d: %q is not an environment variable name", n, name)
		case strings.HasPrefix(name, "DH_"):
			return nil, bad("line %d: DH_* variables are set by dh-deploy and cannot be overridden", n)
		}
		env[name] = value
	}
	return env, nil
}
