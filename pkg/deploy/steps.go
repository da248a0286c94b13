package deploy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// passedEnv are the variables of the worker's own environment that steps
// get. Everything else (DH_DATABASE_URL, CREDENTIALS_DIRECTORY, ...) stays
// with the worker.
var passedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSH_AUTH_SOCK"}

// gitEnv are the variables git gets (pkg/gitrepo filters them again).
var gitEnv = environ("PATH", "HOME", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "http_proxy", "https_proxy",
	"no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "all_proxy", "ALL_PROXY")

// environ returns a function that reads the named variables.
func environ(names ...string) func(getenv func(string) string) []string {
	return func(getenv func(string) string) []string {
		var env []string
		for _, n := range names {
			if v := getenv(n); v != "" {
				env = append(env, n+"="+v)
			}
		}
		return env
	}
}

// StepEnv is the environment of a run's steps, in this order (a later
// entry wins): PATH (default progpath.UserPATH), HOME, USER, LOGNAME, LANG,
// LC_ALL, TZ, TMPDIR and SSH_AUTH_SOCK from the worker's environment; the
// deployment's environment table; the deployment's environment_file (its
// secrets, read now: see config.Deployment.SecretEnvironment, whose
// refusal is StepEnv's error); then DH_DEPLOYMENT, DH_REPOSITORY, DH_REF,
// DH_COMMIT, DH_PREVIOUS_COMMIT, DH_DELIVERY and DH_RUN_ID.
func StepEnv(getenv func(string) string, d *config.Deployment, r store.Run) ([]string, error) {
	secrets, err := d.SecretEnvironment()
	if err != nil {
		return nil, err
	}
	env := []string{"PATH=" + progpath.UserPATH}
	env = append(env, environ(passedEnv...)(getenv)...)
	for _, vars := range []map[string]string{d.Environment, secrets} {
		names := make([]string, 0, len(vars))
		for n := range vars {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			env = append(env, n+"="+vars[n])
		}
	}
	return append(env,
		"DH_DEPLOYMENT="+d.Name,
		"DH_REPOSITORY="+d.Repository,
		"DH_REF="+r.Ref,
		"DH_COMMIT="+r.Commit,
		"DH_PREVIOUS_COMMIT="+r.Previous,
		"DH_DELIVERY="+r.Delivery,
		fmt.Sprintf("DH_RUN_ID=%d", r.ID),
	), nil
}

// lookProgram finds a step's program: an absolute path as is, a path with
// a slash relative to the checkout, a bare name in env's PATH (the last
// PATH entry of env wins, as in the step's own environment).
func lookProgram(name, checkout string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(checkout, name)
		}
		return name, executable(name)
	}
	p, err := progpath.InPath(name, progpath.EnvPATH(env)) // relative entries skipped: they would depend on the checkout
	if err != nil {
		return "", sysexits.New(sysexits.Unavailable, err)
	}
	return p, nil
}

func executable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sysexits.Errorf(sysexits.Unavailable, "%s does not exist", path)
	case err != nil:
		return sysexits.New(sysexits.NoPerm, err)
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return sysexits.Errorf(sysexits.NoPerm, "%s is not an executable file", path)
	}
	return nil
}

// Limits of the run logs.
const (
	// MaxLogBytes caps one run's log file; output past it is dropped (the
	// journal still gets it) and one line says so.
	MaxLogBytes = 8 << 20
	// KeepLogs is how many run logs are kept per deployment; older ones are
	// deleted when a run ends.
	KeepLogs = 100
)

// runLog is a run's log file, capped at MaxLogBytes, with everything also
// copied to the worker's stderr.
type runLog struct {
	Path    string
	mu      sync.Mutex
	f       *os.File
	n       int64
	stderr  io.Writer
	dropped bool
}

func openRunLog(stateDir, deployment string, req Request, stderr io.Writer) (*runLog, error) {
	dir := config.RunLogDir(stateDir, deployment)
	// 0700: other deployments' users share the group (dh-deployer-acl
	// deployment gives dh-route, and only it, read access by ACL).
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, queue.Stop(fmt.Errorf("create log directory: %w", err))
	}
	// The delivery id's alphabet has no "/" (ident.ParseDelivery).
	name := fmt.Sprintf("%s-%s-%d.log", time.Now().UTC().Format("20060102T150405.000000000Z"), req.Delivery, req.Attempt)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("create run log: %w", err))
	}
	return &runLog{Path: path, f: f, stderr: stderr}, nil
}

// Write logs step output.
func (l *runLog) Write(p []byte) (int, error) {
	if l == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stderr.Write(p)
	if l.n+int64(len(p)) > MaxLogBytes {
		if !l.dropped {
			fmt.Fprintf(l.f, "\n[dh-deploy: log capped at %d bytes; the rest is in the journal only]\n", MaxLogBytes)
			l.dropped = true
		}
		return len(p), nil
	}
	n, err := l.f.Write(p)
	l.n += int64(n)
	if err != nil {
		return len(p), nil // a full disk must not fail the step; the journal has it
	}
	return len(p), nil
}

// Line logs one line of dh-deploy's own.
func (l *runLog) Line(format string, args ...any) {
	fmt.Fprintf(l, "[dh-deploy %s] %s\n", time.Now().UTC().Format(time.TimeOnly), fmt.Sprintf(format, args...))
}

// Close closes the file.
func (l *runLog) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// pruneLogs deletes all but the KeepLogs newest run logs of a deployment.
// Their names start with the time, so name order is age order.
func pruneLogs(stateDir, deployment string, log *slog.Logger) {
	dir := config.RunLogDir(stateDir, deployment)
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var logs []string
	for _, de := range des {
		if de.Type().IsRegular() && strings.HasSuffix(de.Name(), ".log") {
			logs = append(logs, de.Name())
		}
	}
	for _, name := range logs[:max(0, len(logs)-KeepLogs)] {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			log.Warn("cannot delete an old run log", "err", err)
		}
	}
}
