package deploy

// Strategy "releases" (config.StrategyReleases), the default of kind
// "steps": every run builds in a release directory of its own, and only a
// release whose steps all succeeded becomes live, by an atomic switch of
// the deployment's path, a symbolic link.
//
//	<releases_dir>/repo.git          the bare mirror of origin (Worker.repo)
//	<releases_dir>/<run>-<commit12>  a release: a git worktree of the mirror
//	<releases_dir>/shared/<p>        the shared paths, linked into each release
//	<path> -> <releases_dir>/<run>-<commit12>   the live release
//
// Guarantees:
//
//   - A run that fails before the switch (fetch, refusal, worktree, shared,
//     carry, a step) leaves path and the live release as they were: the
//     build never writes outside its own release directory (carried files
//     are copies by reflink or hard link; see carry).
//   - The switch is a new symbolic link renamed over path (rename(2)),
//     then the directory synced: at every instant path names the old or
//     the new release, never nothing or a mixture. An in-place checkout
//     (a directory) at path is exchanged with the link atomically
//     (renameat2 RENAME_EXCHANGE) and kept as the previous release: the
//     migration from strategy "in-place".
//   - If an activate step or the health check fails, path switches back
//     to the release before, its activate steps run again, and the run is
//     recorded failed ("health check failed; reverted to <commit>: …").
//   - After a successful switch, releases of succeeded runs beyond
//     keep_releases and every other release (failed builds) are deleted,
//     never the live one nor the one before it.
//   - Values from the repository never reach a path unchecked: shared and
//     carry paths are configured, and are resolved inside the release with
//     os.Root, so a symbolic link committed to the repository cannot point
//     them elsewhere.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// releaseName matches the directories of releases: the run that built it
// and its commit's first 12 hexadecimal digits.
var releaseName = regexp.MustCompile(`^([0-9]+)-([0-9a-f]{12})$`)

// ReleaseName is the name of the release run id builds of commit.
func ReleaseName(id int64, commit string) string { return fmt.Sprintf("%d-%s", id, commit[:12]) }

// live returns the live commit and, with releases, the live release's
// directory ("" if none; the path itself for an in-place checkout not yet
// migrated).
func (w *Worker) live(ctx context.Context) (commit, dir string, err error) {
	if !w.d.Releases() {
		commit, err = w.repo.Head(ctx)
		return commit, "", err
	}
	dir, err = w.liveRelease()
	if err != nil || dir == "" {
		return "", "", err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		w.log.Warn("the live release is missing; deploying as if none were live", "path", w.d.Path, "release", dir)
		return "", "", nil
	}
	commit, err = w.worktree(dir).Head(ctx)
	return commit, dir, err
}

// liveRelease returns the directory path stands for: the target of the
// symbolic link; path itself if it is an in-place checkout (to migrate);
// "" if path is missing or an empty directory. Any other path is an error
// (a directory dh-deploy did not make is never taken over).
func (w *Worker) liveRelease() (string, error) {
	p := w.d.Path
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", queue.Stop(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return "", queue.Stop(err)
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		return t, nil
	case !fi.IsDir():
		return "", notTakenOver(p, "is neither a directory nor a symbolic link")
	}
	names, err := readNames(p, 1)
	if err != nil {
		return "", queue.Stop(err)
	}
	if len(names) == 0 {
		return "", nil
	}
	if _, err := os.Lstat(filepath.Join(p, ".git")); err != nil {
		return "", notTakenOver(p, "is a directory that is not a git checkout")
	}
	return p, nil
}

func notTakenOver(p, why string) error {
	return hint.With(sysexits.Errorf(sysexits.Config, "path %s %s; dh-deploy does not take it over", p, why),
		`move it away (dh-deploy then makes path a symbolic link to the live release), or set strategy = "in-place"`)
}

func readNames(dir string, n int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(n)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

// worktree is a release (or an in-place checkout) as a git repository.
func (w *Worker) worktree(dir string) *gitrepo.Repo {
	return &gitrepo.Repo{Path: dir, Timeout: w.d.StepTimeout, Env: gitEnv(w.getenv), Logger: w.log}
}

// build makes a release of the run's commit, runs the steps in it and,
// if they all succeed, makes it live (activateRelease). live is the live
// release's directory, previous its commit.
func (r *run) build(ctx context.Context, live, previous string) (store.Run, error) {
	d := r.w.d
	dir := filepath.Join(d.ReleasesDir, ReleaseName(r.rec.ID, r.req.Commit))
	r.out.Line("preparing release %s of %s (%s)", dir, r.req.Commit, r.req.Ref)
	if err := r.prepare(ctx, dir, live); err != nil {
		return r.fail(ctx, err, nil, nil)
	}
	r.dir = dir
	r.extraEnv = []string{"DH_RELEASE_DIR=" + dir, "DH_PREVIOUS_RELEASE_DIR=" + live}
	for i, argv := range d.Steps {
		if err := r.step(ctx, i+1, argv); err != nil {
			r.out.Line("%s still serves %s; the failed release stays for inspection until the next successful switch", d.Path, orNone(live))
			return r.rec, err
		}
	}
	return r.activateRelease(ctx, dir, live, previous)
}

// prepare makes dir a release of the run's commit: a worktree of the
// mirror, the shared paths linked in, the carried paths copied from live.
func (r *run) prepare(ctx context.Context, dir, live string) error {
	w, d := r.w, r.w.d
	if err := os.RemoveAll(dir); err != nil { // left by a run killed while preparing
		return queue.Stop(err)
	}
	if err := w.repo.AddWorktree(ctx, dir, r.req.Commit); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range d.Shared {
		if err := r.linkShared(root, dir, p); err != nil {
			return fmt.Errorf("shared %q: %w", p, err)
		}
	}
	if live == "" {
		return nil
	}
	for _, p := range d.Carry {
		if err := r.carry(ctx, root, live, dir, p); err != nil {
			return fmt.Errorf("carry %q: %w", p, err)
		}
	}
	return nil
}

// linkShared makes p in the release a symbolic link to
// <releases_dir>/shared/p. A shared path that does not exist yet is made
// from the release's own p, a file or a directory (the first release
// seeds it), or else as an empty directory. What the release had at p is
// replaced by the link.
func (r *run) linkShared(root *os.Root, dir, p string) error {
	shared := filepath.Join(r.w.d.SharedDir(), p)
	if err := root.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	fi, err := root.Lstat(p)
	seed := err == nil && (fi.Mode().IsRegular() || fi.IsDir()) // never a link the repository made
	if _, err := os.Lstat(shared); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(shared), 0o755); err != nil {
			return err
		}
		if seed {
			// root.MkdirAll resolved p's parent inside the release.
			if err := os.Rename(filepath.Join(dir, p), shared); err != nil {
				return err
			}
			r.out.Line("shared %s: seeded from this release", p)
		} else if err := os.Mkdir(shared, 0o755); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := root.RemoveAll(p); err != nil {
		return err
	}
	return root.Symlink(shared, p)
}

// carry copies p from the live release into the new one, unless the new
// one has p already (from its commit): with reflinks (cp --reflink=always)
// where the file system has them, else with hard links (cp -l). A hard
// link shares the file's content with the live release: build tools that
// replace files (npm, pnpm, go) leave the live copy alone, one that
// rewrote a file in place would not.
func (r *run) carry(ctx context.Context, root *os.Root, live, dir, p string) error {
	liveRoot, err := os.OpenRoot(live)
	if err != nil {
		return err
	}
	defer liveRoot.Close()
	if _, err := liveRoot.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing to carry
	} else if err != nil {
		return err
	}
	if _, err := root.Lstat(p); err == nil {
		r.out.Line("carry %s: the release has it from its commit; not carried", p)
		return nil
	}
	if err := root.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	src, dst := filepath.Join(live, p), filepath.Join(dir, p)
	cp := func(mode string) error {
		_, err := sysexec.Run(ctx, sysexec.Cmd{Path: "/bin/cp", Args: []string{"-a", "--no-target-directory", mode, "--", src, dst},
			Timeout: r.w.d.StepTimeout, MaxOutput: 4 << 10})
		return err
	}
	how := "reflinks"
	if err := cp("--reflink=always"); err != nil {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		how = "hard links"
		if err := cp("--link"); err != nil {
			return err
		}
	}
	r.out.Line("carry %s: copied from %s by %s", p, live, how)
	return nil
}

// activateRelease switches path to dir, runs the activate steps and the
// health check, switches back to live if they fail, records the end of
// the run and prunes old releases.
func (r *run) activateRelease(ctx context.Context, dir, live, previous string) (store.Run, error) {
	w, d := r.w, r.w.d
	old, err := w.switchTo(dir, r)
	if err != nil {
		return r.fail(ctx, fmt.Errorf("switch %s to %s: %w", d.Path, dir, err), nil, nil)
	}
	if old != "" {
		live = old // the in-place checkout, moved among the releases
	}
	r.out.Line("switched %s to %s", d.Path, dir)
	r.dir = dir
	r.extraEnv = []string{"DH_RELEASE_DIR=" + dir, "DH_PREVIOUS_RELEASE_DIR=" + live}
	what := "activation"
	err = r.activate(ctx)
	if err == nil && d.HealthChecked() {
		what = "health check"
		err = r.healthCheck(ctx)
	}
	if err != nil {
		return r.revert(ctx, what, err, live, previous)
	}
	rec, err := r.finish(ctx, store.RunResult{State: store.RunSucceeded, ExitCode: intp(0)})
	w.prune(ctx, dir, live)
	return rec, err
}

// activate runs the activate steps in the release r.dir.
func (r *run) activate(ctx context.Context) error {
	env, err := r.env()
	if err != nil {
		return err
	}
	for i, argv := range r.w.d.Activate {
		if _, err := r.exec(ctx, fmt.Sprintf("activate %d", i+1), fmt.Sprintf("activate %d/%d", i+1, len(r.w.d.Activate)),
			argv, r.dir, env); err != nil {
			return err
		}
	}
	return nil
}

// healthCheck tries the health check up to 1 + health_retries times.
func (r *run) healthCheck(ctx context.Context) error {
	d := r.w.d
	tries := 1 + *d.HealthRetries
	var err error
	for i := range tries {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d.HealthInterval):
			}
		}
		if err = r.healthOnce(ctx); err == nil {
			r.out.Line("health check passed")
			return nil
		}
		r.out.Line("health check %d/%d: %v", i+1, tries, err)
	}
	return err
}

func (r *run) healthOnce(ctx context.Context) error {
	d := r.w.d
	if len(d.HealthCommand) > 0 {
		env, err := r.env()
		if err != nil {
			return err
		}
		prog, err := lookProgram(d.HealthCommand[0], r.dir, env)
		if err != nil {
			return err
		}
		_, err = sysexec.Run(ctx, sysexec.Cmd{Path: prog, Args: d.HealthCommand[1:], Dir: r.dir, Env: env,
			Timeout: d.HealthTimeout, Stream: r.out, MaxOutput: 4 << 10})
		if err != nil {
			return fmt.Errorf("%s: %w", quoteArgv(d.HealthCommand), err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.HealthURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "dh-deployer health check")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", d.HealthURL, res.Status)
	}
	return nil
}

// revert switches path back to live after a failed activation or health
// check of r.dir, runs live's activate steps again and records the run
// failed.
func (r *run) revert(ctx context.Context, what string, cause error, live, previous string) (store.Run, error) {
	w, d := r.w, r.w.d
	failed := r.dir
	var msg string
	if live == "" {
		// Nothing was live before: path goes back to not existing.
		err := durable.Remove(d.Path)
		msg = fmt.Sprintf("%s failed; nothing earlier to revert to, %s removed", what, d.Path)
		if err != nil {
			msg = fmt.Sprintf("%s failed; removing %s failed too: %v", what, d.Path, err)
		}
	} else if _, err := w.switchTo(live, r); err != nil {
		msg = fmt.Sprintf("%s failed; reverting to %s failed too: %v", what, previous, err)
	} else {
		msg = fmt.Sprintf("%s failed; reverted to %s", what, previous)
		r.out.Line("switched %s back to %s", d.Path, live)
		r.dir = live
		r.extraEnv = []string{"DH_RELEASE_DIR=" + live, "DH_PREVIOUS_RELEASE_DIR=" + failed,
			"DH_COMMIT=" + previous, "DH_PREVIOUS_COMMIT=" + r.req.Commit}
		if err := r.activate(context.WithoutCancel(ctx)); err != nil {
			msg += fmt.Sprintf(" (its activation failed: %v)", err)
		}
	}
	return r.fail(ctx, fmt.Errorf("%s: %w", msg, cause), nil, nil)
}

// switchTo makes path a symbolic link to dir, atomically: a new link
// renamed over path. An in-place checkout (a directory) at path is
// exchanged with the link (renameat2 RENAME_EXCHANGE, atomic too) and
// then moved among the releases, whose directory it returns (else "").
func (w *Worker) switchTo(dir string, r *run) (string, error) {
	p := w.d.Path
	parent := filepath.Dir(p)
	tmp := filepath.Join(parent, "."+filepath.Base(p)+".dh-deploy-switch")
	if fi, err := os.Lstat(tmp); err == nil && fi.IsDir() {
		// A migration killed between the exchange and the move: the old
		// checkout still waits here to become a release.
		if _, err := w.keepOld(tmp, r); err != nil {
			return "", err
		}
	}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Symlink(dir, tmp); err != nil {
		return "", hint.With(err, fmt.Sprintf("the deployment's user must be able to write %s, the directory holding path", parent))
	}
	fi, err := os.Lstat(p)
	if err == nil && fi.IsDir() {
		return w.migrate(tmp, r)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return "", durable.SyncDir(parent)
}

// migrate exchanges the symbolic link tmp with the directory at path
// (an in-place checkout, or an empty directory) and moves the directory
// among the releases, named after the last succeeded run of its commit.
func (w *Worker) migrate(tmp string, r *run) (string, error) {
	p := w.d.Path
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, p, unix.RENAME_EXCHANGE); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("exchange %s with the link: %w", p, err)
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return "", err
	}
	// tmp is now the old directory.
	return w.keepOld(tmp, r)
}

// keepOld moves the old in-place checkout old among the releases, named
// after the last succeeded run of its commit, and returns where; an empty
// directory is removed instead.
func (w *Worker) keepOld(old string, r *run) (string, error) {
	if names, err := readNames(old, 1); err == nil && len(names) == 0 {
		return "", os.Remove(old)
	}
	commit, _ := w.worktree(old).Head(context.Background())
	var id int64
	if commit != "" {
		runs, _ := w.st.SucceededRuns(context.Background(), w.d.Name, RollbackRuns)
		for _, run := range slices.Backward(runs) {
			if run.Commit == commit && run.ID != r.rec.ID {
				id = run.ID
				break
			}
		}
	} else {
		commit = "000000000000"
	}
	dst := filepath.Join(w.d.ReleasesDir, ReleaseName(id, commit))
	if err := os.Rename(old, dst); err != nil {
		return "", fmt.Errorf("move the in-place checkout (now %s) to %s: %w", old, dst, err)
	}
	if err := durable.SyncDir(w.d.ReleasesDir); err != nil {
		return "", err
	}
	r.out.Line("migrated: the in-place checkout of %s is now the release %s", orNone(commit), dst)
	w.log.Info("in-place checkout migrated to releases", "release", dst)
	return dst, nil
}

// prune deletes the releases beyond keep_releases (counting those of
// succeeded runs, newest first) and every release of a run that did not
// succeed, never live nor previous.
func (w *Worker) prune(ctx context.Context, live, previous string) {
	d := w.d
	names, err := readNames(d.ReleasesDir, -1)
	if err != nil {
		w.log.Warn("cannot list the releases to prune", "err", err)
		return
	}
	runs, err := w.st.SucceededRuns(ctx, d.Name, RollbackRuns)
	if err != nil {
		w.log.Warn("cannot read the runs to prune releases", "err", err)
		return
	}
	succeeded := map[int64]bool{}
	for _, run := range runs {
		succeeded[run.ID] = true
	}
	type rel struct {
		id   int64
		path string
	}
	var rels []rel
	for _, n := range names {
		if m := releaseName.FindStringSubmatch(n); m != nil {
			id, _ := strconv.ParseInt(m[1], 10, 64)
			rels = append(rels, rel{id, filepath.Join(d.ReleasesDir, n)})
		}
	}
	slices.SortFunc(rels, func(a, b rel) int { return int(b.id - a.id) })
	kept := 0
	for _, rl := range rels {
		if rl.path == live || rl.path == previous {
			kept++
			continue
		}
		if succeeded[rl.id] && kept < d.KeepReleases {
			kept++
			continue
		}
		if err := os.RemoveAll(rl.path); err != nil {
			w.log.Warn("cannot delete an old release", "release", rl.path, "err", err)
		}
	}
	if err := w.repo.PruneWorktrees(ctx); err != nil {
		w.log.Warn("git worktree prune failed", "err", err)
	}
}

// releaseOf returns the kept release of ok[i], a succeeded run, or "":
// the one it built, else one of the same commit that another of the
// succeeded runs ok built (never a failed build's).
func (w *Worker) releaseOf(ctx context.Context, ok []store.Run, i int) string {
	run := ok[i]
	dir := filepath.Join(w.d.ReleasesDir, ReleaseName(run.ID, run.Commit))
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	for j := len(ok) - 1; j >= 0; j-- {
		if ok[j].Commit != run.Commit {
			continue
		}
		dir := filepath.Join(w.d.ReleasesDir, ReleaseName(ok[j].ID, ok[j].Commit))
		if c, err := w.worktree(dir).Head(ctx); err == nil && c == run.Commit {
			return dir
		}
	}
	return ""
}

// switchBack makes a kept release live again without building it: the
// run records the switch, the activation and the health check.
func (r *run) switchBack(ctx context.Context, dir string) (store.Run, error) {
	w := r.w
	if _, err := os.Stat(dir); err != nil { // pruned meanwhile
		w.log.Info("the release is no longer kept; building it again", "release", dir)
		return r.do(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, w.d.Timeout)
	defer cancel()
	r.log = w.log.With("delivery", r.req.Delivery, "trigger", r.req.Trigger)
	previous, live, err := w.live(ctx)
	if err != nil {
		return r.rec, err
	}
	r.note = strings.TrimPrefix(r.note+"; ", "; ") + "switched to the kept release " + filepath.Base(dir) + "; no build step ran"
	if err := r.record(ctx, previous); err != nil {
		return r.rec, err
	}
	defer r.out.Close()
	r.log = r.log.With("run", r.rec.ID, "commit", r.req.Commit)
	r.status(ghstatus.Pending, fmt.Sprintf("rolling back %s", w.d.Name))
	r.out.Line("switching to the kept release %s of %s; no build step runs", dir, r.req.Commit)
	return r.activateRelease(ctx, dir, live, previous)
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
