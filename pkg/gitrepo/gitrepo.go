// Package gitrepo brings a deployment's checkout to a verified commit with
// the real git program, run through pkg/sysexec: an argv list, never a
// shell.
//
// The checkout is an ordinary git working tree that mirrors one remote,
// origin. Its HEAD is either unborn (nothing deployed yet) or detached at
// the deployed commit; it has no local branches of its own.
// A Bare Repo is instead a bare mirror of origin (dh-deploy's releases):
// Sync fetches into it the same way, and AddWorktree makes working trees
// of it, each detached at one commit.
//
// Guarantees:
//
//   - Sync creates the checkout when its path is missing or an empty
//     directory (git init, then a fetch: a clone with nothing checked out),
//     and otherwise fetches. Before fetching it sets origin's URL to
//     Repo.URL when they differ: the configuration wins. The fetch mirrors
//     every branch of origin to refs/remotes/origin/* and every tag to
//     refs/tags/*, forced and pruned, so force-pushes, moved tags and
//     deletions are followed.
//   - Contains decides whether a commit may be deployed: only if, after
//     Sync, it is origin's branch tip or an ancestor of it, or the commit
//     origin's tag peels to. Anything else, including a commit the
//     repository does not know and a branch or tag origin does not have,
//     is a *RefError (errors.Is ErrNotOnRef), never an internal error.
//   - Refs and commit names, which come from the network, are checked
//     (pkg/ident) before they reach git; a bad one is an error
//     classified sysexits.DataErr naming it. They reach git as single argv
//     elements, after --end-of-options where git honours it, and are
//     always spelled in full ("refs/remotes/origin/main", 40 hex digits),
//     so git never guesses what they mean.
//   - Every git command runs with Repo.Timeout and ctx, in its own process
//     group, in an environment built from scratch: no terminal prompts, an
//     askpass that answers nothing, ssh in batch mode (unless the caller's
//     environment sets GIT_SSH_COMMAND), LC_ALL=C, and of the caller's
//     environment only what git needs to find programs, configuration and
//     credentials (PATH, HOME, SSH_AUTH_SOCK, the proxy variables). Git
//     does not look for a repository above the checkout's path.
//   - A failed git command is an error carrying git's own words, bounded.
//     A fetch that failed in a way that looks like network trouble (a name
//     that does not resolve, a refused or timed-out connection, a remote
//     that hung up, an HTTP 5xx) or that timed out is classified
//     a queue.Retry; other failures are not classified.
//
// Not supported: submodules (never initialised or updated; a checkout that
// has them keeps whatever is in their directories), Git LFS, shallow
// clones, and SHA-256 repositories for checkouts Sync creates (git init
// makes a SHA-1 repository; a SHA-256 checkout cloned by hand works).
//
// A Repo is not safe for concurrent use, and only one Repo (one process)
// may work on a checkout at a time: git's own locks make a second one fail
// rather than corrupt it.
package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Defaults of Repo's fields.
const (
	DefaultGit     = "/usr/bin/git"
	DefaultTimeout = 10 * time.Minute
)

// Where Sync puts origin's branches (its tags keep ident.TagPrefix).
const remotePrefix = "refs/remotes/origin/"

// fetchRefspecs mirror origin: forced ("+"), so that a force-push or a
// moved tag replaces what we had.
var fetchRefspecs = []string{"+" + ident.BranchPrefix + "*:" + remotePrefix + "*", "+" + ident.TagPrefix + "*:" + ident.TagPrefix + "*"}

// passEnv are the variables of Repo.Env that git commands get.
var passEnv = []string{
	"HOME", "SSH_AUTH_SOCK",
	"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
}

// gitConfig is given to every git command. gc and maintenance run in the
// foreground, inside the command's time limit and process group, rather
// than as a daemon that outlives it; full hexadecimal names are never
// warned about (warnings would mix into the output we parse).
var gitConfig = []string{
	"-c", "gc.autoDetach=false",
	"-c", "maintenance.autoDetach=false",
	"-c", "core.warnAmbiguousRefs=false",
	"-c", "advice.detachedHead=false",
}

// maxOutput bounds the output kept of a git command.
const maxOutput = 16 << 10

// maxMessage bounds git's words in an error message.
const maxMessage = 1000

// Repo is a deployment's checkout and where it comes from.
type Repo struct {
	// Path is the checkout: an absolute path (config.Deployment.Path).
	Path string

	// URL is origin, what Sync fetches from: any git URL or an absolute
	// local path, not starting with "-" (config.Deployment.FetchURL).
	URL string

	// Git is the git program, an absolute path; "" means DefaultGit.
	Git string

	// Timeout bounds each git command (config.Deployment.StepTimeout);
	// 0 means DefaultTimeout.
	Timeout time.Duration

	// Env is the caller's environment as "NAME=value" entries, typically
	// os.Environ(). Only PATH (default progpath.UserPATH), HOME, SSH_AUTH_SOCK,
	// GIT_SSH_COMMAND and the proxy variables are passed on to git; later
	// duplicates win.
	Env []string

	// Bare makes Path a bare mirror of origin (git init --bare) rather
	// than a checkout: it has no working tree and is never checked out;
	// AddWorktree makes working trees of it elsewhere (dh-deploy's
	// releases).
	Bare bool

	// Foreign says the checkout belongs to another user, whom the caller
	// trusts with it (dh-nginx reading a deployment's commit): git, which
	// otherwise refuses such a repository ("dubious ownership"), is told
	// on its command line that Path is safe. For reading only: never
	// Sync, Checkout or Maintain a Foreign repository.
	Foreign bool

	// origin is the URL Sync last made origin's: a Repo reused across runs
	// checks origin's configuration once, not before every fetch.
	origin string

	// Logger gets an Info line when Sync creates the checkout or changes
	// origin's URL, and a Debug line per git command. nil means no logging.
	Logger *slog.Logger
}

// ErrNotOnRef matches (errors.Is) every *RefError.
var ErrNotOnRef = errors.New("commit not on ref")

// RefError is the error of a commit that a ref does not contain after
// fetching (Contains), or of a ref that origin does not have (Contains,
// ResolveRef). The caller refuses the deployment; nothing is wrong with
// the checkout. It is not classified with an exit status.
type RefError struct {
	Ref    string // the ref asked about: "refs/heads/main"
	SHA    string // the commit asked about; "" from ResolveRef
	Reason string // why, for people: "unknown commit"
}

func (e *RefError) Error() string {
	if e.SHA == "" {
		return e.Ref + ": " + e.Reason
	}
	return fmt.Sprintf("commit %s is not on %s: %s", e.SHA, e.Ref, e.Reason)
}

// Is reports whether target is ErrNotOnRef.
func (e *RefError) Is(target error) bool { return target == ErrNotOnRef }

// checkSHA returns nil if sha is a full commit name (ident.ParseCommit);
// otherwise an error classified sysexits.DataErr naming it.
func checkSHA(sha string) error {
	if _, err := ident.ParseCommit(sha); err != nil {
		return sysexits.New(sysexits.DataErr, err)
	}
	return nil
}

// checkRef returns nil if ref is a full branch or tag name that git
// accepts (ident.ParseRef); otherwise an error classified
// sysexits.DataErr naming it.
func checkRef(ref string) error {
	if _, err := ident.ParseRef(ref); err != nil {
		return sysexits.New(sysexits.DataErr, err)
	}
	return nil
}

// Sync creates the checkout if Path is missing or an empty directory, sets
// origin's URL to URL, and fetches every branch and tag of origin, forced
// and pruned. A Path that is not empty and has no .git is an error: Sync
// never takes over a directory it did not create. See the package
// documentation for how failures are classified.
func (r *Repo) Sync(ctx context.Context) error {
	if !filepath.IsAbs(r.Path) {
		return sysexits.Errorf(sysexits.Config, "sync %q: checkout path must be absolute", r.Path)
	}
	if r.URL == "" || strings.HasPrefix(r.URL, "-") {
		return sysexits.Errorf(sysexits.Config, "sync %s: invalid clone URL %q", r.Path, redact(r.URL))
	}
	create, err := r.needsCreate()
	if err != nil {
		return fmt.Errorf("sync %s: %w", r.Path, err)
	}
	if create {
		r.logger().Info("clone", "path", r.Path, "url", redact(r.URL))
		// git init makes Path and its missing parents.
		args := []string{"init", "--quiet", "--", r.Path}
		if r.Bare {
			args = []string{"init", "--quiet", "--bare", "--", r.Path}
		}
		if _, err := r.run(ctx, "/", args...); err != nil {
			return fmt.Errorf("sync %s: %w", r.Path, err)
		}
	}
	if create || r.origin != r.URL {
		if err := r.setOrigin(ctx); err != nil {
			return fmt.Errorf("sync %s: %w", r.Path, err)
		}
		r.origin = r.URL
	}
	r.logger().Debug("fetch", "path", r.Path, "url", redact(r.URL))
	args := append([]string{"fetch", "--quiet", "--prune", "--no-recurse-submodules", "--no-write-fetch-head", "--no-auto-maintenance", "origin"}, fetchRefspecs...)
	if _, err := r.run(ctx, r.Path, args...); err != nil {
		err = fmt.Errorf("sync %s: fetch from %s: %w", r.Path, redact(r.URL), err)
		if temporary(err) {
			err = queue.Retry(err)
		}
		return err
	}
	return nil
}

// RemoveStaleLocks removes the lock files that a git command killed in
// the middle of an update leaves behind in the checkout: the ones directly
// in .git (index.lock, config.lock, HEAD.lock, packed-refs.lock,
// shallow.lock, ...) and those under .git/refs. While one exists, every
// later command that needs it fails ("Unable to create ...: File exists")
// until someone removes it by hand. It also removes the entries under
// worktrees/ that a git worktree add killed midway left (see
// abandonedWorktrees): one with an empty commondir makes every later fetch
// fail ("failed to read worktrees/…/commondir"), and one still locked
// "initializing" is never pruned. It returns the paths it removed; a
// checkout that does not exist yet has none.
//
// Only a caller that knows no git command is running in the checkout may
// call it, because a live command's lock looks the same: dh-deploy calls
// it under its run lock, which every git command on the checkout runs
// under, and git dies with dh-deploy (sysexec's parent-death signal).
func (r *Repo) RemoveStaleLocks() ([]string, error) {
	gitDir := r.gitDir()
	des, err := os.ReadDir(gitDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("remove stale git locks: %w", err)
	}
	var locks []string
	for _, de := range des {
		if de.Type().IsRegular() && strings.HasSuffix(de.Name(), ".lock") {
			locks = append(locks, filepath.Join(gitDir, de.Name()))
		}
	}
	err = filepath.WalkDir(filepath.Join(gitDir, "refs"), func(path string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil && de.Type().IsRegular() && strings.HasSuffix(de.Name(), ".lock") {
			locks = append(locks, path)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remove stale git locks: %w", err)
	}
	for _, l := range locks {
		if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale git lock: %w", err)
		}
	}
	abandoned, err := abandonedWorktrees(gitDir)
	if err != nil {
		return nil, fmt.Errorf("remove stale git worktrees: %w", err)
	}
	for _, a := range abandoned {
		if err := os.RemoveAll(a); err != nil {
			return nil, fmt.Errorf("remove stale git worktree: %w", err)
		}
	}
	return append(locks, abandoned...), nil
}

// abandonedWorktrees returns the entries of gitDir/worktrees that a git
// worktree add which died left: git makes the entry, locks it
// ("initializing"), writes gitdir, HEAD and commondir, and unlocks it
// only once the working tree is checked out. So an entry whose commondir
// is missing or empty, or still locked "initializing", was left by an add
// that died; one locked with any other reason (git worktree lock) is kept.
func abandonedWorktrees(gitDir string) ([]string, error) {
	admin := filepath.Join(gitDir, "worktrees")
	des, err := os.ReadDir(admin)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var abandoned []string
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(admin, de.Name())
		common, _ := os.ReadFile(filepath.Join(dir, "commondir"))
		lock, err := os.ReadFile(filepath.Join(dir, "locked"))
		if len(common) == 0 || (err == nil && strings.TrimSpace(string(lock)) == "initializing") {
			abandoned = append(abandoned, dir)
		}
	}
	return abandoned, nil
}

// Maintain runs git's housekeeping (git maintenance run --auto: gc when
// loose objects pile up), which Sync leaves out so that a deployment does
// not wait for it. Call it when the checkout is idle.
func (r *Repo) Maintain(ctx context.Context) error {
	if _, err := r.run(ctx, r.Path, "maintenance", "run", "--auto", "--quiet"); err != nil {
		return fmt.Errorf("maintain %s: %w", r.Path, err)
	}
	return nil
}

// needsCreate reports whether Path is missing or an empty directory, and
// fails if it is neither that nor a git checkout.
func (r *Repo) needsCreate() (bool, error) {
	f, err := os.Open(r.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	names, err := f.Readdirnames(1)
	f.Close()
	if err == io.EOF {
		return true, nil
	} else if err != nil {
		return false, err
	}
	if len(names) == 0 {
		return true, nil
	}
	if _, err := os.Lstat(filepath.Join(r.gitDir(), "HEAD")); errors.Is(err, fs.ErrNotExist) {
		if r.Bare {
			return false, errors.New("not empty and not a bare git repository (no HEAD); move it away or empty it")
		}
		return false, errors.New("not empty and not a git checkout (no .git); move it away or empty it")
	} else if err != nil {
		return false, err
	}
	return false, nil
}

// gitDir is the repository's own directory: Path/.git, or Path if Bare.
func (r *Repo) gitDir() string {
	if r.Bare {
		return r.Path
	}
	return filepath.Join(r.Path, ".git")
}

// AddWorktree makes dir, which must not exist or be empty, a new working
// tree of the repository with HEAD detached at exactly the commit sha
// (git worktree add --detach): the files of sha, written as a checkout
// writes them, sharing the repository's objects. Removing dir and calling
// PruneWorktrees forgets it. An invalid sha is an error classified
// sysexits.DataErr; the caller checks with Contains first that sha may be
// deployed.
func (r *Repo) AddWorktree(ctx context.Context, dir, sha string) error {
	if err := checkSHA(sha); err != nil {
		return err
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("add worktree %q: path must be absolute", dir)
	}
	if _, err := r.run(ctx, r.Path, "worktree", "add", "--quiet", "--detach", dir, sha); err != nil {
		return fmt.Errorf("add worktree of %s in %s: %w", sha, dir, err)
	}
	wt := &Repo{Path: dir, Git: r.Git, Timeout: r.Timeout, Env: r.Env, Logger: r.Logger}
	if head, err := wt.Head(ctx); err != nil {
		return fmt.Errorf("add worktree of %s: %w", sha, err)
	} else if head != sha {
		return fmt.Errorf("add worktree of %s in %s: HEAD is at %q afterwards", sha, dir, head)
	}
	return nil
}

// PruneWorktrees forgets the working trees whose directories were removed
// (git worktree prune).
func (r *Repo) PruneWorktrees(ctx context.Context) error {
	if _, err := r.run(ctx, r.Path, "worktree", "prune"); err != nil {
		return fmt.Errorf("prune worktrees of %s: %w", r.Path, err)
	}
	return nil
}

// setOrigin makes origin's URL r.URL, adding the remote if it is missing
// (as after a Sync interrupted between git init and git remote add). It
// reads the configured URL, not git remote get-url's, which would apply
// url.*.insteadOf and differ forever.
func (r *Repo) setOrigin(ctx context.Context) error {
	out, err := r.run(ctx, r.Path, "config", "--get", "remote.origin.url")
	switch {
	case exitCode(err) == 1: // no such key
		_, err = r.run(ctx, r.Path, "remote", "add", "--", "origin", r.URL)
		return err
	case err != nil:
		return err
	}
	if old := strings.TrimSuffix(out, "\n"); old != r.URL {
		r.logger().Info("set origin url", "path", r.Path, "old", redact(old), "url", redact(r.URL))
		_, err = r.run(ctx, r.Path, "remote", "set-url", "--", "origin", r.URL)
	}
	return err
}

// Contains returns nil if, as of the last Sync, origin's ref contains the
// commit sha: for a branch, sha is its tip or an ancestor of it; for a tag,
// the tag peels to exactly sha. Otherwise it returns a *RefError naming
// sha and ref, also when the repository does not know sha or origin has
// no such ref. An invalid ref or sha is an error classified
// sysexits.DataErr.
func (r *Repo) Contains(ctx context.Context, ref, sha string) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	tip, err := r.commit(ctx, fetchedRef(ref))
	if err != nil {
		return fmt.Errorf("check %s on %s: %w", sha, ref, err)
	}
	tag := strings.HasPrefix(ref, ident.TagPrefix)
	switch {
	case tip == "":
		return &RefError{Ref: ref, SHA: sha, Reason: "origin has no such " + kind(ref)}
	case tip == sha:
		return nil
	case tag:
		return &RefError{Ref: ref, SHA: sha, Reason: "the tag is at " + tip}
	}
	known, err := r.commit(ctx, sha)
	if err != nil {
		return fmt.Errorf("check %s on %s: %w", sha, ref, err)
	}
	if known == "" {
		return &RefError{Ref: ref, SHA: sha, Reason: "unknown commit"}
	}
	ok, err := r.isAncestor(ctx, sha, tip)
	if err != nil {
		return fmt.Errorf("check %s on %s: %w", sha, ref, err)
	}
	if !ok {
		return &RefError{Ref: ref, SHA: sha, Reason: "not an ancestor of the branch's tip " + tip}
	}
	return nil
}

// ResolveRef returns the commit origin's ref was at as of the last Sync:
// a branch's tip, or the commit a tag peels to. A ref origin does not have
// is a *RefError; an invalid ref is an error classified sysexits.DataErr.
func (r *Repo) ResolveRef(ctx context.Context, ref string) (string, error) {
	if err := checkRef(ref); err != nil {
		return "", err
	}
	sha, err := r.commit(ctx, fetchedRef(ref))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	if sha == "" {
		return "", &RefError{Ref: ref, Reason: "origin has no such " + kind(ref)}
	}
	return sha, nil
}

// Head returns the commit checked out, or "" if there is none (a checkout
// Sync created that was never checked out).
func (r *Repo) Head(ctx context.Context) (string, error) {
	// A detached HEAD, which is how Checkout leaves it, is the commit's
	// name in .git/HEAD: read it without starting git.
	if b, err := os.ReadFile(filepath.Join(r.Path, ".git", "HEAD")); err == nil {
		if sha := strings.TrimSuffix(string(b), "\n"); checkSHA(sha) == nil {
			return sha, nil
		}
	}
	sha, err := r.commit(ctx, "HEAD")
	if err != nil {
		return "", fmt.Errorf("head of %s: %w", r.Path, err)
	}
	return sha, nil
}

// IsAncestor reports whether commit a is an ancestor of commit b, or is b:
// moving a deployment from b to a would go back in its history. Commits
// the repository does not know are an error; invalid ones are an error
// classified sysexits.DataErr.
func (r *Repo) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	if err := checkSHA(a); err != nil {
		return false, err
	}
	if err := checkSHA(b); err != nil {
		return false, err
	}
	ok, err := r.isAncestor(ctx, a, b)
	if err != nil {
		return false, fmt.Errorf("is %s an ancestor of %s: %w", a, b, err)
	}
	return ok, nil
}

func (r *Repo) isAncestor(ctx context.Context, a, b string) (bool, error) {
	_, err := r.run(ctx, r.Path, "merge-base", "--is-ancestor", "--end-of-options", a, b)
	if exitCode(err) == 1 {
		return false, nil
	}
	return err == nil, err
}

// Checkout detaches HEAD at exactly the commit sha and makes the tracked
// files match it, discarding local changes to them (git checkout --force
// --detach). With cleanUntracked it then removes untracked and ignored
// files and directories, nested repositories included (git clean -ffdx);
// without, they stay. Submodules are not initialised or updated. An
// invalid sha is an error classified sysexits.DataErr; the caller checks
// with Contains first that sha may be deployed.
func (r *Repo) Checkout(ctx context.Context, sha string, cleanUntracked bool) error {
	if err := checkSHA(sha); err != nil {
		return err
	}
	// git checkout does not honour --end-of-options (git 2.39); sha is
	// hexadecimal, and the "--" after it makes git take it as a commit.
	if _, err := r.run(ctx, r.Path, "checkout", "--quiet", "--force", "--detach", "--no-recurse-submodules", sha, "--"); err != nil {
		return fmt.Errorf("check out %s in %s: %w", sha, r.Path, err)
	}
	if head, err := r.Head(ctx); err != nil {
		return fmt.Errorf("check out %s: %w", sha, err)
	} else if head != sha {
		return fmt.Errorf("check out %s in %s: HEAD is at %q afterwards", sha, r.Path, head)
	}
	if cleanUntracked {
		if _, err := r.run(ctx, r.Path, "clean", "-ffdxq", "--"); err != nil {
			return fmt.Errorf("clean %s: %w", r.Path, err)
		}
	}
	return nil
}

// commit returns the commit rev names, or "" if it names none (a missing
// ref, an unknown object, an unborn HEAD, a tag of a tree). rev must be a
// full ref name, "HEAD", or a checked commit name.
func (r *Repo) commit(ctx context.Context, rev string) (string, error) {
	out, err := r.run(ctx, r.Path, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if exitCode(err) == 1 {
		return "", nil
	} else if err != nil {
		return "", err
	}
	sha := strings.TrimSuffix(out, "\n")
	if checkSHA(sha) != nil {
		return "", fmt.Errorf("git rev-parse %s: unexpected output %q", rev, message([]byte(out)))
	}
	return sha, nil
}

// fetchedRef returns where Sync keeps origin's ref (a checked one).
func fetchedRef(ref string) string {
	if name, ok := strings.CutPrefix(ref, ident.BranchPrefix); ok {
		return remotePrefix + name
	}
	return ref
}

// kind names what ref is, for messages.
func kind(ref string) string {
	if strings.HasPrefix(ref, ident.TagPrefix) {
		return "tag"
	}
	return "branch"
}

// run runs git with args (args[0] is the subcommand) in dir and returns
// its output. A failure is a *gitError, or an error of sysexec.Run (git
// missing, dir missing, ctx already done).
func (r *Repo) run(ctx context.Context, dir string, args ...string) (string, error) {
	return r.exec(ctx, dir, maxOutput, false, args...)
}

// errTooLong is the error of runMax when git's output was longer than
// its limit.
var errTooLong = errors.New("output too long")

// runMax is run for output that is data: up to max bytes of it are
// kept, and a successful command whose output was longer fails with
// errTooLong.
func (r *Repo) runMax(ctx context.Context, dir string, max int, args ...string) (string, error) {
	return r.exec(ctx, dir, max, true, args...)
}

func (r *Repo) exec(ctx context.Context, dir string, max int, whole bool, args ...string) (string, error) {
	git := r.Git
	if git == "" {
		git = DefaultGit
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	argv := append([]string(nil), gitConfig...)
	if r.Foreign {
		argv = append(argv, "-c", "safe.directory="+r.Path)
	}
	res, err := sysexec.Run(ctx, sysexec.Cmd{
		Path:      git,
		Args:      append(argv, args...),
		Dir:       dir,
		Env:       r.env(),
		Timeout:   timeout,
		MaxOutput: max,
	})
	r.logger().Debug("git", "cmd", args[0], "dir", dir, "exit", res.ExitCode, "duration", res.Duration)
	var ee *sysexec.ExitError
	if errors.As(err, &ee) {
		return string(res.Output), &gitError{cmd: "git " + args[0], exit: ee}
	}
	if whole && err == nil && res.Truncated {
		return "", fmt.Errorf("git %s: %w (more than %d bytes)", args[0], errTooLong, max)
	}
	return string(res.Output), err
}

// env returns the environment of every git command.
func (r *Repo) env() []string {
	env := []string{
		"LC_ALL=C",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/true",
		"SSH_ASKPASS=/bin/true",
		// Never use a repository above the checkout, should Path lack one.
		"GIT_CEILING_DIRECTORIES=" + filepath.Dir(filepath.Clean(r.Path)),
	}
	path, ssh := progpath.UserPATH, "ssh -o BatchMode=yes"
	for _, kv := range r.Env {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case name == "PATH":
			path = value
		case name == "GIT_SSH_COMMAND":
			ssh = value
		case name != "" && slices.Contains(passEnv, name):
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path, "GIT_SSH_COMMAND="+ssh)
}

func (r *Repo) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// gitError is a git command that ran and failed. Its message has git's own
// words; it unwraps to the *sysexec.ExitError (and so to the context's
// error when cancelled).
type gitError struct {
	cmd  string // "git fetch"
	exit *sysexec.ExitError
}

func (e *gitError) Error() string {
	var b strings.Builder
	b.WriteString(e.cmd)
	b.WriteString(": ")
	res := e.exit.Result
	switch {
	case res.TimedOut:
		fmt.Fprintf(&b, "timed out after %v", e.exit.Timeout)
	case e.exit.Err != nil:
		fmt.Fprintf(&b, "interrupted: %v", e.exit.Err)
	case res.Signal != "":
		fmt.Fprintf(&b, "killed by signal %s", res.Signal)
	default:
		fmt.Fprintf(&b, "exit status %d", res.ExitCode)
	}
	if m := message(res.Output); m != "" {
		b.WriteString(": ")
		b.WriteString(m)
	}
	return b.String()
}

func (e *gitError) Unwrap() error { return e.exit }

// exitCode returns the exit status of a git command that ran and exited,
// or -1.
func exitCode(err error) int {
	var ge *gitError
	if !errors.As(err, &ge) || ge.exit.Result.TimedOut || ge.exit.Err != nil {
		return -1
	}
	return ge.exit.Result.ExitCode
}

// message returns git's output for an error message on one line: its
// "fatal:" and "error:" lines if it has any, else all its non-blank lines,
// joined by "; ", without unprintable characters, at most maxMessage
// bytes.
func message(out []byte) string {
	var all, errs []string
	for line := range strings.Lines(string(out)) {
		line = strings.Map(func(r rune) rune {
			if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
				return -1
			}
			return r
		}, strings.TrimSpace(line))
		if line == "" {
			continue
		}
		all = append(all, line)
		if strings.HasPrefix(line, "fatal:") || strings.HasPrefix(line, "error:") {
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		all = errs
	}
	s := strings.Join(all, "; ")
	if len(s) > maxMessage {
		cut := maxMessage
		for !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// networkErrors are what git, curl and ssh say when the network, rather
// than the repository or the credentials, is at fault; compared in lower
// case.
var networkErrors = []string{
	"could not resolve host", // git over http; ssh says "could not resolve hostname"
	"temporary failure in name resolution",
	"connection refused",
	"connection timed out",
	"operation timed out",
	"connection reset",
	"network is unreachable",
	"no route to host",
	"failed to connect to",
	"couldn't connect to server",
	"remote end hung up unexpectedly",
	"early eof",
	"kex_exchange_identification",
	"the requested url returned error: 5", // HTTP 5xx
}

// temporary reports whether err, of a fetch, looks like network trouble
// or a timeout.
func temporary(err error) bool {
	var ge *gitError
	if !errors.As(err, &ge) {
		return false
	}
	if ge.exit.Result.TimedOut {
		return true
	}
	out := strings.ToLower(string(ge.exit.Result.Output))
	for _, s := range networkErrors {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// redact hides the user information (a token, a password) of a URL for
// logs and messages. Other forms (a path, user@host:path) are returned as
// they are.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// CommitInfo is what people want to read about a commit.
type CommitInfo struct {
	Subject string // the message's first line, one line of at most 200 runes
	Author  string // "Name <email>", at most 200 runes
}

// Describe returns the subject and author of commit sha, which must be in
// the repository (after Sync). Both come from whoever pushed: they are
// made one line of printable text, and are still to be escaped where
// they are shown.
func (r *Repo) Describe(ctx context.Context, sha string) (CommitInfo, error) {
	if err := checkSHA(sha); err != nil {
		return CommitInfo{}, err
	}
	out, err := r.run(ctx, r.Path, "log", "-1", "--no-walk", "--no-show-signature", "--format=%s%x00%an <%ae>", "--end-of-options", sha, "--")
	if err != nil {
		return CommitInfo{}, err
	}
	subject, author, ok := strings.Cut(out, "\x00")
	if !ok {
		return CommitInfo{}, fmt.Errorf("git log %s: unexpected output %q", sha, message([]byte(out)))
	}
	return CommitInfo{Subject: cell.Line(subject, 200), Author: cell.Line(author, 200)}, nil
}
