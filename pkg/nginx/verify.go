package nginx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// origin is who published an nginx-sites entry: the owner of its file.
type origin int

const (
	fromOperator   origin = iota // root: a replay or an entry written by hand
	fromDeployment               // the deployment's own user: dh-deploy's hand-off
	fromCert                     // dh-cert: the re-queue once a certificate exists
)

func (o origin) String() string {
	return [...]string{"root", "the deployment's user", "dh-cert"}[o]
}

// sender finds out who published entry e: the owner of its file, which
// must be root, the deployment's user or dh-cert's. The queue took the
// owner from the open file it read the entry from (queue.Entry.Owner), so
// owner and content belong together.
func (in *Installer) sender(e *queue.Entry, req *event.NginxSites) (origin, error) {
	d, ok := in.cfg.Deployment(req.Deployment)
	if !ok || d.Kind != config.KindNginx {
		return 0, sysexits.Errorf(sysexits.DataErr, "deployment %q is not an nginx deployment in %s", req.Deployment, in.cfg.File)
	}
	uid := strconv.Itoa(e.Owner)
	switch uid {
	case "0":
		return fromOperator, nil
	case uidOf(d.RunsAs()):
		return fromDeployment, nil
	case uidOf(in.certUser):
		return fromCert, nil
	}
	owner := uid
	if u, err := user.LookupId(uid); err == nil {
		owner = u.Username
	}
	return 0, hint.With(sysexits.Errorf(sysexits.DataErr,
		"entry %s is owned by %s, not by %s (deployment %s's user), %s or root: refused",
		e.Name, owner, d.RunsAs(), d.Name, in.certUser),
		"only the deployment's own worker (dh-deploy@"+d.Name+", running as its user) hands dh-nginx a commit; see docs/nginx.md")
}

// uidOf is the user id of name, or "" if there is no such user.
func uidOf(name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return ""
	}
	return u.Uid
}

// refuseEntry records an nginx-sites entry refused before any converge.
func (in *Installer) refuseEntry(ctx context.Context, req *event.NginxSites, why error) {
	id, err := in.st.StartNginxInstall(ctx, store.NginxInstall{Kind: store.NginxKindSites, Deployment: req.Deployment,
		Commit: req.Commit, Delivery: req.Delivery, RunID: req.RunID})
	if err == nil {
		in.finish(ctx, id, store.NginxInstall{Outcome: store.NginxFailed, Error: why.Error()})
	}
}

// verified checks that the deployment's history recorded req's commit as
// verified: a succeeded run of the deployment with that commit, or, from
// the deployment's own user, the run that sent the entry while it is
// still running (dh-deploy queues the entry after the fetch, the check
// that the commit is on its branch and the checkout, then ends the run).
func (in *Installer) verified(ctx context.Context, d *config.Deployment, req *event.NginxSites, from origin) error {
	runs, err := in.st.CommitRuns(ctx, d.Name, req.Commit)
	if err != nil {
		return err
	}
	for _, r := range runs {
		switch {
		case r.State == store.RunSucceeded:
			return nil
		case r.State == store.RunRunning && from == fromDeployment && r.ID == req.RunID:
			return nil
		}
	}
	return sysexits.Errorf(sysexits.DataErr, "commit %s is not one deployment %s verified: no succeeded run of it in the history (entry from %s): refused",
		req.Commit, d.Name, from)
}

// errChanged is wrapped in the error of files that changed between the
// configuration test and the reload.
var errChanged = errors.New("installed files changed after the configuration test")

// hashFiles returns the SHA-256 of each file, "" for one that does not
// exist.
func hashFiles(paths []string) (map[string]string, error) {
	sums := make(map[string]string, len(paths))
	for _, p := range paths {
		data, err := readInstalled(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sums[p] = ""
		case err != nil:
			return nil, err
		default:
			sums[p] = digest(data)
		}
	}
	return sums, nil
}

// readInstalled reads an installed file, which must be a regular file.
func readInstalled(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if errors.Is(err, syscall.ELOOP) {
			return nil, sysexits.Errorf(sysexits.DataErr, "%s is not a regular file", p)
		}
		return nil, ioFailure(fmt.Errorf("read %s: %w", p, err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, sysexits.Errorf(sysexits.DataErr, "%s is not a regular file", p)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("read %s: %w", p, err))
	}
	return data, nil
}

// test runs the test command and returns the hashes of the files as it
// tested them: taken before it ran, and checked again after it (a file
// changed meanwhile is errChanged).
func (in *Installer) test(ctx context.Context, paths []string) (map[string]string, string, error) {
	before, err := hashFiles(paths)
	if err != nil {
		return nil, err.Error(), err
	}
	if out, err := in.command(ctx, "test", in.cfg.Nginx.TestCommand); err != nil {
		return nil, out, err
	}
	if err := in.unchanged(before); err != nil {
		return nil, err.Error(), err
	}
	return before, "", nil
}

// unchanged checks that the files still have the hashes they were
// tested with.
func (in *Installer) unchanged(tested map[string]string) error {
	now, err := hashFiles(slices.Collect(maps.Keys(tested)))
	if err != nil {
		return err
	}
	return changedFrom(now, tested)
}

// changedFrom is errChanged naming the files whose hash in now is not
// the one in want.
func changedFrom(now, want map[string]string) error {
	var changed []string
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if now[p] != want[p] {
			changed = append(changed, p)
		}
	}
	if changed == nil {
		return nil
	}
	return sysexits.New(sysexits.DataErr, fmt.Errorf("%w: %s", errChanged, strings.Join(changed, ", ")))
}

// wanted is the hash of every file of j as apply leaves it ("" for one it
// removes).
func wanted(j *journal) map[string]string {
	w := make(map[string]string, len(j.Changes))
	for _, c := range j.Changes {
		w[c.Path] = ""
		if !c.Remove {
			w[c.Path] = digest(c.data)
		}
	}
	return w
}

// drift compares the files of a manifest with what is installed and
// says, for each that differs, how.
func drift(files map[string]string) (map[string]string, error) {
	now, err := hashFiles(slices.Collect(maps.Keys(files)))
	if err != nil {
		return nil, err
	}
	d := map[string]string{}
	for p, want := range files {
		switch got := now[p]; {
		case got == want:
		case got == "":
			d[p] = "removed since dh-nginx installed it"
		default:
			d[p] = fmt.Sprintf("changed since dh-nginx installed it (sha256 %.12s, installed %.12s)", got, want)
		}
	}
	return d, nil
}

// managedFiles lists the files of every deployment's manifest.
func (in *Installer) managedFiles() []string {
	manifests, _ := filepath.Glob(filepath.Join(in.stateDir(), "*.json"))
	var paths []string
	for _, f := range manifests {
		m, err := in.LoadManifest(strings.TrimSuffix(filepath.Base(f), ".json"))
		if err != nil {
			in.log.Warn("manifest unreadable; its files are not checked before the reload", "manifest", f, "err", err)
			continue
		}
		paths = append(paths, slices.Collect(maps.Keys(m.Files))...)
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}
