package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// fixture is a bare "remote" repository and a working clone of it that
// tests commit in and push from, driven by the real git.
type fixture struct {
	t      *testing.T
	git    string // the git program
	dir    string // holds everything below
	home   string // HOME of every git command: no user configuration
	remote string // the bare repository, origin of the checkouts
	work   string // the clone that makes commits
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		t:      t,
		git:    testenv.Command(t, "git"),
		dir:    dir,
		home:   filepath.Join(dir, "home"),
		remote: filepath.Join(dir, "remote.git"),
		work:   filepath.Join(dir, "work"),
	}
	if err := os.Mkdir(f.home, 0o755); err != nil {
		t.Fatal(err)
	}
	f.run(dir, "init", "--quiet", "--bare", "--initial-branch=main", f.remote)
	f.run(dir, "init", "--quiet", "--initial-branch=main", f.work)
	f.run(f.work, "remote", "add", "origin", f.remote)
	return f
}

// run runs git in dir and returns its standard output, trimmed; any
// failure fails the test.
func (f *fixture) run(dir string, args ...string) string {
	f.t.Helper()
	out, err := f.try(dir, args...)
	if err != nil {
		f.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// try runs git in dir and returns its standard output, trimmed, or an
// error with its standard error.
func (f *fixture) try(dir string, args ...string) (string, error) {
	cmd := exec.Command(f.git, args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + f.home,
		"LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", errors.New(err.Error() + ": " + strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// commit writes content to file in the working clone, commits it and
// returns the commit.
func (f *fixture) commit(file, content string) string {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.work, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.run(f.work, "add", "--", file)
	f.run(f.work, "commit", "--quiet", "-m", "write "+file)
	return f.run(f.work, "rev-parse", "HEAD")
}

// push pushes refspecs from the working clone to the remote.
func (f *fixture) push(refspecs ...string) {
	f.t.Helper()
	f.run(f.work, append([]string{"push", "--quiet", "origin"}, refspecs...)...)
}

// repo returns a Repo of a checkout at path (relative to the fixture's
// directory) that fetches from the remote.
func (f *fixture) repo(path string) *Repo {
	return &Repo{
		Path:    filepath.Join(f.dir, path),
		URL:     f.remote,
		Git:     f.git,
		Timeout: time.Minute,
		Env:     []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.home},
	}
}

// synced returns the Repo of a checkout "checkout", synced.
func (f *fixture) synced() *Repo {
	f.t.Helper()
	r := f.repo("checkout")
	if err := r.Sync(context.Background()); err != nil {
		f.t.Fatalf("Sync() = %v; want nil", err)
	}
	return r
}

// mirror returns the Repo of a bare mirror "mirror.git", synced.
func (f *fixture) mirror() *Repo {
	f.t.Helper()
	m := f.repo("mirror.git")
	m.Bare = true
	if err := m.Sync(context.Background()); err != nil {
		f.t.Fatalf("Sync() of a bare mirror = %v; want nil", err)
	}
	return m
}

func resolve(t *testing.T, r *Repo, ref string) string {
	t.Helper()
	sha, err := r.ResolveRef(context.Background(), ref)
	if err != nil {
		t.Fatalf("ResolveRef(%q) = %v; want nil", ref, err)
	}
	return sha
}

func head(t *testing.T, r *Repo) string {
	t.Helper()
	sha, err := r.Head(context.Background())
	if err != nil {
		t.Fatalf("Head() = %v; want nil", err)
	}
	return sha
}

// wantNotOnRef fails the test unless err is a *RefError for ref and sha
// whose message names both.
func wantNotOnRef(t *testing.T, err error, ref, sha string) {
	t.Helper()
	var re *RefError
	if !errors.Is(err, ErrNotOnRef) || !errors.As(err, &re) {
		t.Fatalf("Contains(%q, %s) = %v; want ErrNotOnRef", ref, sha, err)
	}
	if re.Ref != ref || re.SHA != sha || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), sha) {
		t.Errorf("Contains(%q, %s) = %#v (%q); want a RefError naming both", ref, sha, re, err)
	}
}

func TestSyncCreates(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(path string) error
	}{
		{"missing with parents", func(string) error { return nil }},
		{"empty directory", func(path string) error { return os.MkdirAll(path, 0o755) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			c1 := f.commit("a.txt", "one\n")
			f.push("main")
			r := f.repo("srv/www/checkout")
			if err := tt.setup(r.Path); err != nil {
				t.Fatal(err)
			}
			if err := r.Sync(context.Background()); err != nil {
				t.Fatalf("Sync() = %v; want nil", err)
			}
			if got := resolve(t, r, "refs/heads/main"); got != c1 {
				t.Errorf("ResolveRef(refs/heads/main) = %s; want %s", got, c1)
			}
			if got := head(t, r); got != "" {
				t.Errorf("Head() of a new checkout = %q; want \"\"", got)
			}
			if got := f.run(r.Path, "config", "--get", "remote.origin.url"); got != f.remote {
				t.Errorf("origin url = %q; want %q", got, f.remote)
			}
			if _, err := os.Stat(filepath.Join(r.Path, "a.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a.txt in a new checkout: %v; want nothing checked out", err)
			}
		})
	}
}

func TestSyncRefusesForeignDirectory(t *testing.T) {
	f := newFixture(t)
	f.commit("a.txt", "one\n")
	f.push("main")
	r := f.repo("checkout")
	if err := os.MkdirAll(r.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.Path, "index.html"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), r.Path) || !strings.Contains(err.Error(), "not a git checkout") {
		t.Fatalf("Sync() of a non-empty directory without .git = %v; want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(r.Path, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Sync() created .git in a foreign directory: %v", err)
	}
}

func TestSyncFetchesNewCommits(t *testing.T) {
	f := newFixture(t)
	f.commit("a.txt", "one\n")
	f.push("main")
	r := f.synced()
	c2 := f.commit("a.txt", "two\n")
	f.push("main")
	if err := r.Contains(context.Background(), "refs/heads/main", c2); !errors.Is(err, ErrNotOnRef) {
		t.Errorf("Contains(main, c2) before Sync = %v; want ErrNotOnRef", err)
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("second Sync() = %v; want nil", err)
	}
	if got := resolve(t, r, "refs/heads/main"); got != c2 {
		t.Errorf("ResolveRef(refs/heads/main) = %s; want %s", got, c2)
	}
	if err := r.Contains(context.Background(), "refs/heads/main", c2); err != nil {
		t.Errorf("Contains(main, c2) = %v; want nil", err)
	}
}

func TestContains(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	c2 := f.commit("a.txt", "two\n")
	f.push("main")
	f.run(f.work, "checkout", "--quiet", "-b", "feature")
	feature := f.commit("b.txt", "feature\n")
	f.push("feature")
	r := f.synced()

	unknown := strings.Repeat("0123456789", 4)
	for _, tt := range []struct {
		name, ref, sha string
		ok             bool
	}{
		{"tip", "refs/heads/main", c2, true},
		{"ancestor", "refs/heads/main", c1, true},
		{"on the other branch", "refs/heads/feature", c1, true},
		{"only on another branch", "refs/heads/main", feature, false},
		{"unknown commit", "refs/heads/main", unknown, false},
		{"unknown sha-256 commit", "refs/heads/main", strings.Repeat("ab", 32), false},
		{"no such branch", "refs/heads/gone", c1, false},
		{"no such tag", "refs/tags/v9", c1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Contains(context.Background(), tt.ref, tt.sha)
			if tt.ok {
				if err != nil {
					t.Errorf("Contains(%q, %s) = %v; want nil", tt.ref, tt.sha, err)
				}
				return
			}
			wantNotOnRef(t, err, tt.ref, tt.sha)
		})
	}
}

func TestForcePushFollowed(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	c2 := f.commit("a.txt", "two\n")
	f.push("main")
	r := f.synced()
	if err := r.Checkout(context.Background(), c2, false); err != nil {
		t.Fatalf("Checkout(c2) = %v; want nil", err)
	}

	// Rewrite main: c3 replaces c2.
	f.run(f.work, "reset", "--quiet", "--hard", c1)
	c3 := f.commit("a.txt", "three\n")
	f.push("--force", "main")
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() after force-push = %v; want nil", err)
	}

	if got := resolve(t, r, "refs/heads/main"); got != c3 {
		t.Errorf("ResolveRef(refs/heads/main) = %s; want %s", got, c3)
	}
	if err := r.Contains(context.Background(), "refs/heads/main", c3); err != nil {
		t.Errorf("Contains(main, new c3) = %v; want nil", err)
	}
	wantNotOnRef(t, r.Contains(context.Background(), "refs/heads/main", c2), "refs/heads/main", c2)
	for _, tt := range []struct {
		name string
		a, b string
		want bool
	}{
		{"new of old", c3, c2, false},
		{"old of new", c2, c3, false},
		{"common base of new", c1, c3, true},
		{"itself", c3, c3, true},
		{"new of base", c3, c1, false},
	} {
		got, err := r.IsAncestor(context.Background(), tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("IsAncestor(%s: %s, %s) = %v, %v; want %v, nil", tt.name, tt.a, tt.b, got, err, tt.want)
		}
	}
	if _, err := r.IsAncestor(context.Background(), strings.Repeat("0", 40), c1); err == nil {
		t.Errorf("IsAncestor(unknown, c1) = nil error; want an error")
	}
}

func TestTags(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	c2 := f.commit("a.txt", "two\n")
	f.run(f.work, "tag", "-a", "-m", "release 1", "v1", c1)
	f.run(f.work, "tag", "light", c2)
	f.push("main", "--tags")
	r := f.synced()

	tagObject := f.run(f.work, "rev-parse", "refs/tags/v1")
	if got := resolve(t, r, "refs/tags/v1"); got != c1 {
		t.Errorf("ResolveRef(refs/tags/v1) = %s; want the peeled commit %s (not the tag object %s)", got, c1, tagObject)
	}
	if err := r.Contains(context.Background(), "refs/tags/v1", c1); err != nil {
		t.Errorf("Contains(v1, c1) = %v; want nil", err)
	}
	if err := r.Contains(context.Background(), "refs/tags/light", c2); err != nil {
		t.Errorf("Contains(light, c2) = %v; want nil", err)
	}
	// A tag names exactly one commit: not its ancestors, not the tag object.
	wantNotOnRef(t, r.Contains(context.Background(), "refs/tags/light", c1), "refs/tags/light", c1)
	wantNotOnRef(t, r.Contains(context.Background(), "refs/tags/v1", tagObject), "refs/tags/v1", tagObject)

	// Moved and deleted tags are followed.
	f.run(f.work, "tag", "-f", "-a", "-m", "release 1 again", "v1", c2)
	f.push("--force", "refs/tags/v1")
	f.push("--delete", "refs/tags/light")
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() = %v; want nil", err)
	}
	if got := resolve(t, r, "refs/tags/v1"); got != c2 {
		t.Errorf("ResolveRef(refs/tags/v1) after moving it = %s; want %s", got, c2)
	}
	_, err := r.ResolveRef(context.Background(), "refs/tags/light")
	if !errors.Is(err, ErrNotOnRef) || !strings.Contains(err.Error(), "refs/tags/light") {
		t.Errorf("ResolveRef(refs/tags/light) after deleting it = %v; want ErrNotOnRef naming it", err)
	}
}

func TestCheckout(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	if err := os.WriteFile(filepath.Join(f.work, ".gitignore"), []byte("*.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.run(f.work, "add", ".gitignore")
	c2 := f.commit("a.txt", "two\n")
	f.push("main")
	r := f.synced()
	ctx := context.Background()
	file := filepath.Join(r.Path, "a.txt")

	readA := func() string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	if err := r.Checkout(ctx, c1, false); err != nil {
		t.Fatalf("Checkout(c1) = %v; want nil", err)
	}
	if got := head(t, r); got != c1 {
		t.Errorf("Head() = %s; want %s", got, c1)
	}
	if got := readA(); got != "one\n" {
		t.Errorf("a.txt at c1 = %q; want %q", got, "one\n")
	}
	if _, err := f.try(r.Path, "symbolic-ref", "--quiet", "HEAD"); err == nil {
		t.Errorf("HEAD is a symbolic ref after Checkout; want detached")
	}

	for _, sha := range []string{c2, c2} { // again at the same commit: still resets
		if err := os.WriteFile(file, []byte("changed by hand\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.Checkout(ctx, sha, false); err != nil {
			t.Fatalf("Checkout(%s) = %v; want nil", sha, err)
		}
		if got := readA(); got != "two\n" {
			t.Errorf("a.txt after Checkout(%s) over a modified file = %q; want %q", sha, got, "two\n")
		}
		if got := head(t, r); got != sha {
			t.Errorf("Head() = %s; want %s", got, sha)
		}
	}

	for _, clean := range []bool{false, true} {
		untracked := filepath.Join(r.Path, "untracked.txt")
		ignored := filepath.Join(r.Path, "build", "out.log")
		if err := os.MkdirAll(filepath.Dir(ignored), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{untracked, ignored} {
			if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Checkout(ctx, c2, clean); err != nil {
			t.Fatalf("Checkout(c2, %v) = %v; want nil", clean, err)
		}
		for _, p := range []string{untracked, ignored} {
			_, err := os.Stat(p)
			if clean && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Checkout(c2, true): %s: %v; want removed", p, err)
			}
			if !clean && err != nil {
				t.Errorf("Checkout(c2, false): %s: %v; want kept", p, err)
			}
		}
	}
	if got := readA(); got != "two\n" {
		t.Errorf("a.txt after cleaning = %q; want %q", got, "two\n")
	}

	if err := r.Checkout(ctx, strings.Repeat("0", 40), false); err == nil || sysexits.Is(err, sysexits.DataErr) {
		t.Errorf("Checkout(unknown commit) = %v; want a git error", err)
	}
	if got := head(t, r); got != c2 {
		t.Errorf("Head() after a failed Checkout = %s; want %s", got, c2)
	}
}

func TestInvalidInput(t *testing.T) {
	f := newFixture(t)
	good := f.commit("a.txt", "one\n")
	f.push("main")
	r := f.synced()
	ctx := context.Background()

	badRefs := []string{"-x", "refs/heads/../x", "main", "refs/heads/-x", "refs/pull/1/head", "refs/heads/main^{tree}"}
	badSHAs := []string{"-x", "", "HEAD", good[:39], good + "0", strings.ToUpper(good), good[:39] + "g", "--all" + good[:35]}

	check := func(call string, bad string, err error) {
		t.Helper()
		if !sysexits.Is(err, sysexits.DataErr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("%s with %q = %v (exit %d); want DataErr naming it", call, bad, err, sysexits.Code(err))
		}
	}
	for _, ref := range badRefs {
		check("checkRef", ref, checkRef(ref))
		check("Contains", ref, r.Contains(ctx, ref, good))
		_, err := r.ResolveRef(ctx, ref)
		check("ResolveRef", ref, err)
	}
	for _, sha := range badSHAs {
		check("checkSHA", sha, checkSHA(sha))
		check("Contains", sha, r.Contains(ctx, "refs/heads/main", sha))
		check("Checkout", sha, r.Checkout(ctx, sha, true))
		_, err := r.IsAncestor(ctx, sha, good)
		check("IsAncestor", sha, err)
		_, err = r.IsAncestor(ctx, good, sha)
		check("IsAncestor", sha, err)
	}
	if got := head(t, r); got != "" {
		t.Errorf("Head() after rejected Checkouts = %q; want nothing checked out", got)
	}
}

func TestSyncMissingRemote(t *testing.T) {
	f := newFixture(t)
	r := f.repo("checkout")
	r.URL = filepath.Join(f.dir, "no-such-remote.git")
	err := r.Sync(context.Background())
	if err == nil {
		t.Fatalf("Sync() from a missing remote = nil; want an error")
	}
	msg := err.Error()
	for _, want := range []string{r.Path, "git fetch", "does not appear to be a git repository", r.URL} {
		if !strings.Contains(msg, want) {
			t.Errorf("Sync() from a missing remote = %q; want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("Sync() error = %q; want one line", msg)
	}
	if queue.IsRetry(err) {
		t.Errorf("Sync() from a missing remote is TempFail; want unclassified (it will not get better by itself)")
	}
}

func TestSyncNetworkErrorIsTempFail(t *testing.T) {
	f := newFixture(t)
	// A port nobody listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := f.repo("checkout")
	r.URL = "http://" + addr + "/repo.git"
	err = r.Sync(context.Background())
	if !queue.IsRetry(err) || !strings.Contains(err.Error(), addr) {
		t.Errorf("Sync() from a closed port = %v (exit %d); want a Retry naming %s", err, sysexits.Code(err), addr)
	}
}

// fakeSSH writes a program that records its arguments and environment in
// out and then runs the shell commands in then.
func fakeSSH(t *testing.T, path, out, then string) {
	t.Helper()
	script := "#!/bin/sh\n{ echo \"args: $*\"; env; } > '" + out + "'\n" + then + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestEnvironment(t *testing.T) {
	f := newFixture(t)
	bin := filepath.Join(f.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(f.dir, "ssh.out")
	fakeSSH(t, filepath.Join(bin, "ssh"), record, "echo 'ssh: connect to host example.invalid port 22: Connection refused' >&2; exit 255")
	mySSH := filepath.Join(f.dir, "my-ssh")
	fakeSSH(t, mySSH, record, "echo 'Permission denied (publickey).' >&2; exit 255")

	for _, tt := range []struct {
		name     string
		env      []string
		wantArgs string
		tempFail bool
	}{
		{"default ssh", nil, "args: -o BatchMode=yes ", true},
		{"caller's GIT_SSH_COMMAND", []string{"GIT_SSH_COMMAND=" + mySSH}, "args: ", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(record)
			r := f.repo(tt.name)
			r.URL = "ssh://git@example.invalid/owner/name.git"
			r.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + f.home,
				"SECRET_TOKEN=hunter2", "GIT_DIR=/nonexistent", "LC_ALL=de_DE.UTF-8", "GIT_ASKPASS=/usr/bin/ksshaskpass"}, tt.env...)
			err := r.Sync(context.Background())
			if err == nil || queue.IsRetry(err) != tt.tempFail {
				t.Errorf("Sync() = %v (exit %d); want an error, TempFail %v", err, sysexits.Code(err), tt.tempFail)
			}
			b, rerr := os.ReadFile(record)
			if rerr != nil {
				t.Fatalf("ssh was not run: %v (Sync: %v)", rerr, err)
			}
			got := string(b)
			if !strings.HasPrefix(got, tt.wantArgs) || !strings.Contains(got, "example.invalid") {
				t.Errorf("ssh ran with %q; want arguments starting %q and naming the host", strings.SplitN(got, "\n", 2)[0], tt.wantArgs)
			}
			for _, want := range []string{"\nGIT_TERMINAL_PROMPT=0\n", "\nGIT_ASKPASS=/bin/true\n", "\nLC_ALL=C\n", "\nHOME=" + f.home + "\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("ssh's environment lacks %q:\n%s", strings.TrimSpace(want), got)
				}
			}
			for _, bad := range []string{"SECRET_TOKEN", "GIT_DIR=/nonexistent", "de_DE", "ksshaskpass"} {
				if strings.Contains(got, bad) {
					t.Errorf("ssh's environment has %q from the caller's:\n%s", bad, got)
				}
			}
		})
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	f := newFixture(t)
	bin := filepath.Join(f.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeSSH(t, filepath.Join(bin, "ssh"), filepath.Join(f.dir, "ssh.out"), "exec sleep 600")
	r := f.repo("checkout")
	r.URL = "ssh://git@example.invalid/owner/name.git"
	r.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + f.home}
	r.Timeout = 500 * time.Millisecond
	err := r.Sync(context.Background())
	if !queue.IsRetry(err) || !strings.Contains(err.Error(), "git fetch: timed out after 500ms") {
		t.Errorf("Sync() with a hanging ssh = %v (exit %d); want a Retry, timed out", err, sysexits.Code(err))
	}

	r.Timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync(cancelled ctx) = %v; want context.Canceled", err)
	}
}

func TestSyncAppliesChangedURL(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	f.push("main")
	r := f.synced()

	// A second remote, a copy of the first with one more commit.
	moved := filepath.Join(f.dir, "moved.git")
	f.run(f.dir, "clone", "--quiet", "--bare", f.remote, moved)
	c2 := f.commit("a.txt", "two\n")
	f.run(f.work, "push", "--quiet", moved, "main")

	r.URL = moved
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() after changing URL = %v; want nil", err)
	}
	if got := f.run(r.Path, "config", "--get", "remote.origin.url"); got != moved {
		t.Errorf("origin url = %q; want %q", got, moved)
	}
	if got := resolve(t, r, "refs/heads/main"); got != c2 {
		t.Errorf("ResolveRef(refs/heads/main) = %s; want %s from the new URL (old remote has %s)", got, c2, c1)
	}
}

func TestSyncRepairsMissingOrigin(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	f.push("main")
	r := f.repo("checkout")
	// As if a Sync died right after git init.
	f.run(f.dir, "init", "--quiet", r.Path)
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() = %v; want nil", err)
	}
	if got := resolve(t, r, "refs/heads/main"); got != c1 {
		t.Errorf("ResolveRef(refs/heads/main) = %s; want %s", got, c1)
	}
}

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://x-access-token:ghs_secret@github.com/o/n.git", "https://REDACTED@github.com/o/n.git"},
		{"https://ghp_secret@github.com/o/n.git", "https://REDACTED@github.com/o/n.git"},
		{"https://github.com/o/n.git", "https://github.com/o/n.git"},
		{"git@github.com:o/n.git", "git@github.com:o/n.git"},
		{"/srv/git/n.git", "/srv/git/n.git"},
	} {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// Sync leaves git's housekeeping out; Maintain runs it: with the
// loose-objects task due at one object, the loose objects of a fetch get
// packed.
func TestMaintain(t *testing.T) {
	f := newFixture(t)
	f.commit("a.txt", "one\n")
	f.push("main")
	r := f.synced()
	f.run(r.Path, "config", "maintenance.loose-objects.enabled", "true")
	f.run(r.Path, "config", "maintenance.loose-objects.auto", "1")
	count := func() string { return f.run(r.Path, "count-objects", "-v") }
	before := count()
	if err := r.Maintain(context.Background()); err != nil {
		t.Fatalf("Maintain() = %v", err)
	}
	if after := count(); !strings.Contains(before, "in-pack: 0") || strings.Contains(after, "in-pack: 0") {
		t.Errorf("count-objects -v %q before, %q after Maintain; want the loose objects packed", before, after)
	}
}

// A git killed mid-command leaves its lock file, which fails every later
// command that needs it; RemoveStaleLocks clears them and nothing else.
func TestRemoveStaleLocks(t *testing.T) {
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	f.push("main")
	r := f.synced()
	if got, err := r.RemoveStaleLocks(); err != nil || len(got) != 0 {
		t.Fatalf("RemoveStaleLocks() on a clean checkout = %q, %v; want none", got, err)
	}
	gitDir := filepath.Join(r.Path, ".git")
	stale := []string{filepath.Join(gitDir, "index.lock"), filepath.Join(gitDir, "config.lock"),
		filepath.Join(gitDir, "refs", "remotes", "origin", "main.lock")}
	for _, p := range stale {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Checkout(context.Background(), c1, false); err == nil {
		t.Fatalf("Checkout(%s) with a stale index.lock = nil; want git's refusal", c1)
	}
	got, err := r.RemoveStaleLocks()
	slices.Sort(got)
	slices.Sort(stale)
	if err != nil || !slices.Equal(got, stale) {
		t.Fatalf("RemoveStaleLocks() = %q, %v; want %q", got, err, stale)
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() after RemoveStaleLocks = %v; want nil", err)
	}
	if err := r.Checkout(context.Background(), c1, false); err != nil {
		t.Fatalf("Checkout(%s) after RemoveStaleLocks = %v; want nil", c1, err)
	}
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil {
		t.Errorf("RemoveStaleLocks removed more than locks: %v", err)
	}
}

// A Bare repository is a mirror without a working tree: Sync creates and
// fetches it (and takes over no other directory), AddWorktree makes
// working trees of it detached at a commit, and PruneWorktrees forgets
// the removed ones.
func TestBareMirrorWorktrees(t *testing.T) {
	f := newFixture(t)
	first := f.commit("a", "1")
	second := f.commit("a", "2")
	f.push("main")
	ctx := context.Background()
	m := f.mirror()
	if _, err := os.Stat(filepath.Join(m.Path, "HEAD")); err != nil {
		t.Fatalf("mirror has no HEAD: %v", err)
	}
	if err := m.Contains(ctx, "refs/heads/main", first); err != nil {
		t.Errorf("Contains(first) = %v", err)
	}
	for _, sha := range []string{first, second} {
		dir := filepath.Join(f.dir, "rel-"+sha[:7])
		if err := m.AddWorktree(ctx, dir, sha); err != nil {
			t.Fatalf("AddWorktree(%s) = %v", sha, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "a")); err != nil || string(b) != map[string]string{first: "1", second: "2"}[sha] {
			t.Errorf("worktree of %s has a = %q, %v", sha, b, err)
		}
	}
	if err := m.AddWorktree(ctx, filepath.Join(f.dir, "bad"), "--help"); !sysexits.Is(err, sysexits.DataErr) {
		t.Errorf("AddWorktree(--help) = %v; want DataErr", err)
	}
	os.RemoveAll(filepath.Join(f.dir, "rel-"+first[:7]))
	if err := m.PruneWorktrees(ctx); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(filepath.Join(m.Path, "worktrees")); len(des) != 1 {
		t.Errorf("worktrees after prune: %d; want 1", len(des))
	}
	other := f.repo("other")
	other.Bare = true
	os.MkdirAll(filepath.Join(other.Path, "x"), 0o755)
	if err := other.Sync(ctx); err == nil || !strings.Contains(err.Error(), "not a bare git repository") {
		t.Errorf("Sync() of a foreign directory = %v; want refused", err)
	}
}

// A git worktree add killed midway leaves its entry under worktrees/:
// with its commondir empty (killed early), which makes every later fetch
// fail, or locked "initializing" (killed in the checkout), which git
// worktree prune never forgets. RemoveStaleLocks removes both, and keeps
// complete entries and those locked by hand.
func TestRemoveStaleLocksKilledWorktreeAdd(t *testing.T) {
	f := newFixture(t)
	sha := f.commit("a", "1")
	f.push("main")
	ctx := context.Background()
	m := f.mirror()
	for _, name := range []string{"early", "late", "kept", "ok"} {
		if err := m.AddWorktree(ctx, filepath.Join(f.dir, name), sha); err != nil {
			t.Fatal(err)
		}
	}
	admin := filepath.Join(m.Path, "worktrees")
	os.WriteFile(filepath.Join(admin, "early", "locked"), []byte("initializing"), 0o644)
	os.WriteFile(filepath.Join(admin, "early", "commondir"), nil, 0o644) // created, not yet written
	os.WriteFile(filepath.Join(admin, "late", "locked"), []byte("initializing"), 0o644)
	os.RemoveAll(filepath.Join(f.dir, "late"))
	os.WriteFile(filepath.Join(admin, "kept", "locked"), []byte("kept by hand\n"), 0o644)
	f.commit("a", "2")
	f.push("main")
	if err := m.Sync(ctx); err == nil || !strings.Contains(err.Error(), "commondir") {
		t.Fatalf("Sync() with an empty commondir = %v; want git's failure to read it", err)
	}
	got, err := m.RemoveStaleLocks()
	want := []string{filepath.Join(admin, "early"), filepath.Join(admin, "late")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("RemoveStaleLocks() = %q, %v; want %q", got, err, want)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync() after RemoveStaleLocks = %v", err)
	}
	if err := m.PruneWorktrees(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	des, _ := os.ReadDir(admin)
	for _, de := range des {
		names = append(names, de.Name())
	}
	if want := []string{"kept", "ok"}; !slices.Equal(names, want) {
		t.Errorf("worktrees after RemoveStaleLocks and PruneWorktrees: %v; want %v", names, want)
	}
}

// Describe gives a commit's subject and author as one line of printable
// text, however the pusher wrote them.
func TestDescribe(t *testing.T) {
	f := newFixture(t)
	f.commit("a.txt", "one\n")
	long := strings.Repeat("x", 300)
	f.run(f.work, "commit", "--quiet", "--allow-empty", "-m", "fix \x1b[31mred\x1b[0m "+long+"\n\nbody line")
	sha := f.run(f.work, "rev-parse", "HEAD")
	f.push("main")
	r := f.synced()
	got, err := r.Describe(context.Background(), sha)
	if err != nil {
		t.Fatalf("Describe(%s) = %v", sha, err)
	}
	if strings.ContainsAny(got.Subject, "\x1b\n") || !strings.HasPrefix(got.Subject, "fix [31mred [0m xxx") ||
		utf8.RuneCountInString(got.Subject) != 200 || !strings.HasSuffix(got.Subject, "…") {
		t.Errorf("Describe(%s).Subject = %q; want the first line, without control characters, cut to 200 runes", sha, got.Subject)
	}
	if got.Author != "Test <test@example.com>" {
		t.Errorf("Describe(%s).Author = %q; want Test <test@example.com>", sha, got.Author)
	}
	if _, err := r.Describe(context.Background(), "--output=/tmp/x"); err == nil {
		t.Errorf("Describe(an option) = nil; want an error")
	}
}
