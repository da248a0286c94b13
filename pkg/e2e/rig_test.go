package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/pgtemp"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The repository's files the rig applies, relative to this package.
var (
	aclScript = "../../acl/dh-deployer-acl"
	sysusers  = "../../systemd/dh-deployer.sysusers"
	tmpfiles  = "../../systemd/dh-deployer.tmpfiles"
	rolesSQL  = "../../sql/roles.sql"
	sudoersD  = "../../sudoers"
)

var (
	tools = []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"}
)

// Time limits.
const (
	readyTimeout = 15 * time.Second // dh-receive answering after a start
	stopTimeout  = 15 * time.Second // a stage exiting after SIGTERM
	gitTimeout   = 30 * time.Second
)

// rigOptions change what newRig makes.
type rigOptions struct {
	// QueueTmpfs, if not empty, is the size of a tmpfs mounted on the
	// queue directory (mount -o size=...), unmounted when the test ends.
	QueueTmpfs string
	// NoDatabase skips PostgreSQL (a test of dh-receive alone).
	NoDatabase bool
}

// A rig is one installation of dh-deployer under a private DH_ROOT.
type rig struct {
	t      *testing.T
	root   string // DH_ROOT: etc/, var/spool/dh-deployer, var/lib/dh-deployer, srv/, git/, bin/, logs/
	bin    string
	spool  string // queue_dir
	tmpfs  bool   // queue_dir is a tmpfs: queue_dir_throwaway = true
	state  string // state_dir
	config string
	secret []byte
	addr   string // dh-receive's 127.0.0.1:PORT
	url    string // the webhook endpoint
	pg     *pgtemp.Cluster
	db     *sql.DB // as postgres, for the assertions
	client *http.Client

	mu       sync.Mutex
	procs    map[string]*proc
	stopOnce sync.Once

	users map[string]string // deployment → its user, when not dh-deploy (ownUser)

	// receiveGroups are dh-receive's supplementary groups, as its unit
	// gives them (dh-hook, for the hook socket); runuser -g sets none.
	receiveGroups []string
}

// newRig makes the users, DH_ROOT with the shipped queues, the binaries, a
// webhook secret and, unless opts.NoDatabase, a migrated database with the
// shipped roles. The caller writes the configuration (writeConfig), adds
// deployments and starts the stages.
func newRig(t *testing.T, opts rigOptions) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end tests create users, mount a tmpfs and install sudoers drop-ins: run them as root (make test does on our machines)")
	}
	for _, p := range []string{"runuser", "useradd", "userdel", "setfacl", "sudo", "visudo", "git", "mount"} {
		testenv.Command(t, p)
	}
	testenv.MakeStageUsers(t, abs(t, aclScript), abs(t, sysusers))

	r := &rig{t: t, procs: map[string]*proc{}, client: &http.Client{Timeout: 10 * time.Second}}
	r.root = testenv.ShortTempDir(t, "dh-e2e")
	r.bin = filepath.Join(r.root, "bin")
	r.spool = filepath.Join(r.root, "var/spool/dh-deployer")
	r.state = filepath.Join(r.root, "var/lib/dh-deployer")
	r.config = filepath.Join(r.root, "etc/dh-deployer/config.toml")
	// Every stage must traverse DH_ROOT and reach its binaries, the
	// configuration, the checkouts and PostgreSQL's socket.
	for _, d := range []string{r.root, r.bin, filepath.Dir(r.config), filepath.Join(r.root, "srv"),
		filepath.Join(r.root, "git"), filepath.Join(r.root, "logs"), filepath.Join(r.root, "var/spool")} {
		mkdir(t, d, 0o755)
	}
	chownName(t, filepath.Join(r.root, "srv"), "dh-deploy") // dh-deploy makes the checkouts there

	if opts.QueueTmpfs != "" {
		r.tmpfs = true
		mkdir(t, r.spool, 0o750)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+opts.QueueTmpfs+",mode=0750", "tmpfs", r.spool).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs on %s: %v: %s", r.spool, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("umount", r.spool).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", r.spool, err, out)
				exec.Command("umount", "-l", r.spool).Run()
			}
		})
	}
	r.acl("queues")

	began := time.Now()
	for _, name := range tools {
		copyFile(t, build(t, name), filepath.Join(r.bin, name), 0o755)
	}
	t.Logf("built the binaries in %v", time.Since(began).Round(time.Millisecond))

	key := make([]byte, 32)
	rand.Read(key)
	r.secret = []byte(base64.StdEncoding.EncodeToString(key))
	secretFile := r.secretFile()
	if err := os.WriteFile(secretFile, append(r.secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	chownName(t, secretFile, "dh-receive") // as docs/operations.md says without systemd
	r.addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	r.url = "http://" + r.addr + "/github-webhook"

	if !opts.NoDatabase {
		began = time.Now()
		r.startDatabase()
		t.Logf("started PostgreSQL in %v", time.Since(began).Round(time.Millisecond))
	}
	return r
}

// binDir holds the binaries every test of the package shares, built once
// (TestMain removes it).
var (
	binDir  string
	buildMu sync.Mutex
	built   = map[string]string{}
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "dh-e2e-bin."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// build returns the path of the real binary cmd/NAME, built by
// testenv.BuildInto the first time a test asks.
func build(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	p := testenv.BuildInto(t, binDir, name)
	built[name] = p
	return p
}

// abs is filepath.Abs or the test's end.
func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// aclTool runs acl/dh-deployer-acl with DH_ROOT=root and the repository's
// sysusers and tmpfiles files.
func aclTool(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command(abs(t, aclScript), args...)
	cmd.Env = append(os.Environ(), "DH_ROOT="+root, "DH_SYSUSERS="+abs(t, sysusers), "DH_TMPFILES="+abs(t, tmpfiles))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dh-deployer-acl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (r *rig) acl(args ...string) { r.t.Helper(); aclTool(r.t, r.root, args...) }

func (r *rig) secretFile() string { return filepath.Join(filepath.Dir(r.config), "webhook-secret") }

// startDatabase starts PostgreSQL below DH_ROOT, creates dh_deployer,
// applies the migrations (dh-route migrate, as the database's owner) and
// sql/roles.sql.
func (r *rig) startDatabase() {
	t := r.t
	t.Helper()
	pg, err := pgtemp.New(pgtemp.Options{Parent: r.root})
	if err != nil {
		t.Fatal(err)
	}
	r.pg = pg
	t.Cleanup(func() {
		if r.db != nil {
			r.db.Close()
		}
		if err := pg.Remove(); err != nil {
			t.Errorf("remove PostgreSQL: %v", err)
		}
	})
	// The stages reach the socket in the cluster's directory.
	if err := os.Chmod(pg.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtemp.CreateDatabase(pg.URL("postgres"), "dh_deployer"); err != nil {
		t.Fatal(err)
	}
	if r.db, err = sql.Open("postgres", pg.URL("dh_deployer")); err != nil {
		t.Fatal(err)
	}
}

// dbURL is the database URL of a stage: its own role, which has its
// user's name (in production peer authentication checks that; pgtemp
// trusts every local connection).
func (r *rig) dbURL(role string) string {
	return fmt.Sprintf("postgres://%s@/dh_deployer?host=%s&port=%d&sslmode=disable", role, r.pg.Dir(), pgtemp.Port)
}

// migrate applies the migrations with the real dh-route, as the
// database's owner, then the shipped roles.
func (r *rig) migrate() {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(r.bin, "dh-route"), "-c", r.config, "migrate")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DH_DATABASE_URL=" + r.pg.URL("dh_deployer")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dh-route migrate: %v\n%s", err, out)
	}
	roles, err := os.ReadFile(rolesSQL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.db.ExecContext(ctx, string(roles)); err != nil {
		t.Fatalf("apply sql/roles.sql: %v", err)
	}
}

// writeConfig writes the configuration (root:dh-deployer 0640, as
// docs/operations.md says) with extra appended: [nginx], [cert] and the
// deployments.
func (r *rig) writeConfig(extra string) {
	t := r.t
	t.Helper()
	db := "postgres:///dh_deployer?host=/nonexistent&sslmode=disable" // each stage gets DH_DATABASE_URL
	if r.pg != nil {
		db = fmt.Sprintf("postgres:///dh_deployer?host=%s&port=%d&sslmode=disable", r.pg.Dir(), pgtemp.Port)
	}
	doc := fmt.Sprintf(`# pkg/e2e
queue_dir    = %q
state_dir    = %q
database_url = %q
queue_dir_throwaway = %t

[receive]
listen         = %q
secret_files   = [%q]
min_free_bytes = 0

[queues]
min_free_bytes = 0 # TestDiskFull fills a 1 MiB tmpfs: ENOSPC, not the floor, answers 503
%s`, r.spool, r.state, db, r.tmpfs, r.addr, r.secretFile(), extra)
	if err := os.WriteFile(r.config, []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	chownName(t, r.config, "root:dh-deployer")
}

// appDeployment is the TOML of a steps deployment of repo whose step
// records the commit it built.
func (r *rig) appDeployment(name string, repo *repo) string {
	return fmt.Sprintf(`
[deployments.%s]
repository = %q
branches   = ["main"]
path       = %q
clone_url  = %q
steps      = [%s]
`, name, repo.fullName, r.checkout(name), repo.bare, config.TOMLArray([]string{"sh", "-c",
		`echo "$DH_COMMIT" > built-commit; if [ -n "$APP_SECRET" ]; then echo "$APP_SECRET" > secret-seen; fi`}))
}

func (r *rig) checkout(name string) string { return filepath.Join(r.root, "srv", name) }

// A repo is a bare repository standing in for GitHub, and the clone the
// test commits in.
type repo struct {
	fullName string // owner/name as payloads say
	bare     string
	work     string
	env      []string
	commits  []string // pushed to main, oldest first
	head     string   // the newest commit made
	user     string   // who fetches from bare; "" for dh-deploy
}

// newRepo makes ROOT/git/NAME.git and a clone of it.
func (r *rig) newRepo(fullName string) *repo {
	t := r.t
	t.Helper()
	name := fullName[strings.LastIndexByte(fullName, '/')+1:]
	g := &repo{fullName: fullName, bare: filepath.Join(r.root, "git", name+".git"), work: filepath.Join(r.root, "work", name)}
	g.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(r.root, "work"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@localhost", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@localhost",
		// The bare repository belongs to dh-deploy (git refuses a local
		// repository of another user); root pushes to it all the same.
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*"}
	g.git(t, "", "init", "-q", "--bare", "-b", "main", g.bare)
	g.git(t, "", "init", "-q", "-b", "main", g.work)
	g.git(t, g.work, "remote", "add", "origin", g.bare)
	return g
}

func (g *repo) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit makes n commits on main in the clone, each with files (path →
// content) and e2e-commit holding its number, a linear history, with one
// git fast-import; it returns them, oldest first.
func (g *repo) commit(t *testing.T, files map[string]string, n int) []string {
	t.Helper()
	var in strings.Builder
	now := time.Now().Unix()
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf("change %d", len(g.commits)+i)
		fmt.Fprintf(&in, "commit refs/heads/main\nmark :%d\ncommitter e2e <e2e@localhost> %d +0000\ndata %d\n%s\n", i, now, len(msg), msg)
		switch {
		case i > 1:
			fmt.Fprintf(&in, "from :%d\n", i-1)
		case g.head != "":
			fmt.Fprintf(&in, "from %s\n", g.head)
		}
		for name, content := range files {
			fmt.Fprintf(&in, "M 644 inline %s\ndata %d\n%s\n", name, len(content), content)
		}
		number := fmt.Sprintln(len(g.commits) + i)
		fmt.Fprintf(&in, "M 644 inline e2e-commit\ndata %d\n%s\n", len(number), number)
	}
	marks := filepath.Join(g.work, ".git", "e2e-marks")
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "fast-import", "--quiet", "--force", "--export-marks="+marks)
	cmd.Dir, cmd.Env, cmd.Stdin = g.work, g.env, strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	g.git(t, g.work, "reset", "-q", "--hard", "main")
	b, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	shas := make([]string, n)
	for line := range strings.Lines(string(b)) {
		var mark int
		var sha string
		if _, err := fmt.Sscanf(line, ":%d %s", &mark, &sha); err != nil || mark < 1 || mark > n {
			t.Fatalf("git fast-import marks: %q", line)
		}
		shas[mark-1] = sha
	}
	g.head = shas[n-1]
	return shas
}

// push pushes main to the bare repository and gives it (back) to
// dh-deploy, the user that fetches from it.
func (g *repo) push(t *testing.T, shas []string) {
	t.Helper()
	g.git(t, g.work, "push", "-q", "origin", "HEAD:refs/heads/main")
	g.commits = append(g.commits, shas...)
	chownName(t, g.bare, g.owner()+":dh-deployer", "-R")
}

// owner is the user that fetches from the bare repository.
func (g *repo) owner() string {
	if g.user != "" {
		return g.user
	}
	return "dh-deploy"
}

// ownUser gives deployment name a user of its own, as docs/operations.md
// does for an nginx deployment ("dh-deploy-NAME"): the user (made once
// per host), its database role, its empty checkout and its queue rights
// (dh-deployer-acl deployment NAME USER, with extra flags such as
// --nginx); g, the repository it fetches from, becomes the user's.
func (r *rig) ownUser(name string, g *repo, flags ...string) string {
	t := r.t
	t.Helper()
	u := "dh-deploy-" + name
	if exec.Command("id", u).Run() != nil {
		if out, err := exec.Command("useradd", "--system", "--gid", "dh-deployer", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", u).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", u, err, out)
		}
	}
	if _, err := r.db.Exec(fmt.Sprintf(`CREATE ROLE %q LOGIN IN ROLE "dh-deploy"`, u)); err != nil {
		t.Fatalf("create role %s: %v", u, err)
	}
	mkdir(t, r.checkout(name), 0o755)
	chownName(t, r.checkout(name), u+":dh-deployer")
	g.user = u
	chownName(t, g.bare, u+":dh-deployer", "-R")
	r.acl(append([]string{"deployment", name, u}, flags...)...)
	if r.users == nil {
		r.users = map[string]string{}
	}
	r.users[name] = u
	return u
}

// A proc is a stage running as its user: runuser, in its own process
// group, and the stage as runuser's child (same group).
type proc struct {
	name   string // dh-route, dh-deploy@app, ...
	user   string
	groups []string // supplementary
	argv   []string // after runuser's "--"
	env    []string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// Umasks of the units (UMask=), as docs/operations.md runs them by hand.
var umasks = map[string]string{"dh-receive": "027", "dh-route": "007", "dh-deploy": "022", "dh-nginx": "022", "dh-cert": "022"}

// start starts a stage: tool with args (after -c CONFIG) as user, under
// the key name. Its output goes to ROOT/logs/NAME.log.
func (r *rig) start(name, tool, user string, args ...string) {
	r.t.Helper()
	p := &proc{name: name, user: user, log: filepath.Join(r.root, "logs", name+".log")}
	if tool == "dh-receive" {
		p.groups = r.receiveGroups
	}
	// runuser changes user and group; sh sets the unit's umask and execs
	// the tool, so the tool is runuser's child.
	p.argv = append([]string{"/bin/sh", "-c", `umask ` + umasks[tool] + ` && exec "$0" "$@"`,
		filepath.Join(r.bin, tool), "-c", r.config}, args...)
	p.env = []string{"PATH=" + progpath.SystemPATH, "LC_ALL=C"}
	if tool != "dh-receive" {
		p.env = append(p.env, "DH_DATABASE_URL="+r.dbURL(user))
	}
	// Registered by the first start, after everything the stages use,
	// so it runs before those go.
	r.stopOnce.Do(func() { r.t.Cleanup(r.stopAll) })
	if err := p.start(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.procs[name] = p
	r.mu.Unlock()
	if tool == "dh-receive" {
		r.waitReceive(p)
	}
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== e2e: start %s as %s at %s\n", p.name, p.user, time.Now().UTC().Format(time.RFC3339Nano))
	args := []string{"-u", p.user, "-g", "dh-deployer"}
	for _, g := range p.groups {
		args = append(args, "-G", g)
	}
	p.cmd = exec.Command("runuser", append(append(args, "--"), p.argv...)...)
	p.cmd.Dir = "/"
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Its own process group, so that a kill reaches runuser and the stage;
	// runuser passes SIGTERM on to the stage if the test binary dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		p.err = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
	return nil
}

// kill sends sig to the stage's process group and waits until runuser
// has exited.
func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// runuser waits for the stage after passing SIGTERM on, and SIGKILL
	// reached both: the stage has exited (its locks are released even if
	// nobody reaps it yet).
}

// restart SIGKILLs the stage and starts it again.
func (r *rig) restart(name string) error {
	r.mu.Lock()
	p := r.procs[name]
	r.mu.Unlock()
	p.kill(syscall.SIGKILL)
	if err := p.start(); err != nil {
		return err
	}
	if strings.HasPrefix(name, "dh-receive") {
		return r.receiveReady(p)
	}
	return nil
}

// stopAll stops every stage: SIGTERM, then SIGKILL after stopTimeout.
func (r *rig) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range r.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.kill(syscall.SIGTERM)
		}()
	}
	wg.Wait()
	// DH_E2E_LOGS=N shows the last N lines of each stage's log even when
	// the test passed.
	n, _ := strconv.Atoi(os.Getenv("DH_E2E_LOGS"))
	if r.t.Failed() {
		n = max(n, 30)
	}
	if n > 0 {
		for _, p := range r.procs {
			r.t.Logf("--- end of %s ---\n%s", p.log, tail(p.log, n))
		}
	}
}

// exited returns an error naming a stage that has exited.
func (r *rig) exited() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, tail(p.log, 20))
		default:
		}
	}
	return nil
}

// waitReceive waits until dh-receive answers /healthz.
func (r *rig) waitReceive(p *proc) {
	r.t.Helper()
	if err := r.receiveReady(p); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) receiveReady(p *proc) error {
	health := "http://" + r.addr + "/healthz"
	for deadline := time.Now().Add(readyTimeout); ; {
		if resp, err := r.client.Get(health); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, tail(p.log, 20))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dh-receive does not answer on %s after %v\n%s", health, readyTimeout, tail(p.log, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startStages starts dh-route, a dh-deploy per deployment, the extra
// stages (dh-nginx, dh-cert) and, last, dh-receive.
func (r *rig) startStages(deployments []string, extra ...string) {
	r.t.Helper()
	r.start("dh-route", "dh-route", "dh-route", "run", "--wait")
	for _, d := range deployments {
		user := r.users[d]
		if user == "" {
			user = "dh-deploy"
		}
		r.start("dh-deploy@"+d, "dh-deploy", user, "run", d, "--wait")
	}
	for _, s := range extra {
		r.start(s, s, s, "run", "--wait")
	}
	r.start("dh-receive", "dh-receive", "dh-receive", "serve")
}

// post delivers a signed webhook and returns dh-receive's status (0 when
// no answer came) and error.
func (r *rig) post(ctx context.Context, event, guid string, payload []byte) (int, error) {
	status, _, err := demo.Deliver(ctx, r.client, r.url, r.secret, event, guid, payload)
	return status, err
}

// queues lists the rig's queue directories.
func (r *rig) queues(deployments ...string) []*queue.Queue {
	var qs []*queue.Queue
	for _, n := range append([]string{"main", "nginx", "cert"}, deployments...) {
		qs = append(qs, queue.Open(filepath.Join(r.spool, n)))
	}
	return qs
}

// mkdir makes dir (and its parents) and gives it mode.
func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// chownName runs chown [flags] owner path (owner names, not ids).
func chownName(t *testing.T, path, owner string, flags ...string) {
	t.Helper()
	if out, err := exec.Command("chown", append(flags, owner, path)...).CombinedOutput(); err != nil {
		t.Fatalf("chown %s %s: %v: %s", owner, path, err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "") + "\n"
}

// headOf returns the commit the checkout at dir (or the release it links
// to) is detached at, read from .git/HEAD, or from the HEAD of the
// worktree's git directory that a .git file names (a release).
func headOf(dir string) (string, error) {
	git := filepath.Join(dir, ".git")
	if b, err := os.ReadFile(git); err == nil {
		gitdir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
		if !ok {
			return "", fmt.Errorf("%s: unexpected content %q", git, b)
		}
		git = gitdir
	}
	b, err := os.ReadFile(filepath.Join(git, "HEAD"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// fullMode reports whether DH_E2E_FULL asks for the full numbers
// (make chaos).
func fullMode() bool {
	v, _ := strconv.ParseBool(os.Getenv("DH_E2E_FULL"))
	return v
}
