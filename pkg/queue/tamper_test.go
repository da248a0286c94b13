package queue

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// envUIDs reads a comma-separated list of user ids from the environment.
func envUIDs(key string) []int {
	var uids []int
	for _, f := range strings.Split(os.Getenv(key), ",") {
		if n, err := strconv.Atoi(f); err == nil {
			uids = append(uids, n)
		}
	}
	return uids
}

// tamperRig is a DH_ROOT with the stage users and the queues as
// acl/dh-deployer-acl makes them from the shipped tmpfiles file, an nginx
// conf.d that dh-nginx may write (acl/dh-deployer-acl nginx) holding a
// root-owned site file older than the staging sweep's ten minutes, and
// dh-nginx's manifest state_dir/nginx/sites.json.
type tamperRig struct {
	root, q, site, manifest, bin string
}

const manifest = `{"files":["keep.conf"]}` + "\n"

func newTamperRig(t *testing.T) *tamperRig {
	t.Helper()
	testenv.Command(t, "setfacl")
	testenv.Command(t, "runuser")
	testenv.MakeStageUsers(t, "../../acl/dh-deployer-acl", "../../systemd/dh-deployer.sysusers")
	root, err := os.MkdirTemp("/tmp", "dh-tamper.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	r := &tamperRig{root: root, q: filepath.Join(root, "var/spool/dh-deployer/nginx")}
	r.acl(t, "queues")
	r.acl(t, "nginx")
	confd := filepath.Join(root, "etc/nginx/conf.d")
	r.site = filepath.Join(confd, "keep.conf")
	if err := os.WriteFile(r.site, []byte("server {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(r.site, old, old)
	r.manifest = filepath.Join(root, "var/lib/dh-deployer/nginx/sites.json")
	r.ownFile(t, r.manifest, manifest)
	// The consumer is this test binary, run as dh-nginx: a copy it may
	// execute.
	r.bin = filepath.Join(root, "queue.test")
	self, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	out, err := os.OpenFile(r.bin, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, self); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return r
}

func (r *tamperRig) acl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("../../acl/dh-deployer-acl", args...)
	cmd.Env = append(os.Environ(), "DH_ROOT="+r.root, "DH_SYSUSERS=../../systemd/dh-deployer.sysusers",
		"DH_TMPFILES=../../systemd/dh-deployer.tmpfiles")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dh-deployer-acl %v: %v\n%s", args, err, out)
	}
}

// ownFile writes a file of dh-nginx's.
func (r *tamperRig) ownFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "dh-nginx", path).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
}

// as runs a shell command in the queue directory as user u, the way the
// stages run (primary group dh-deployer), and reports whether it
// succeeded.
func (r *tamperRig) as(t *testing.T, u, script string) bool {
	t.Helper()
	cmd := exec.Command("runuser", "-u", u, "-g", "dh-deployer", "--", "sh", "-c", "umask 027; cd "+r.q+" && "+script)
	out, err := cmd.CombinedOutput()
	t.Logf("as %s: %s: %v %s", u, script, err, out)
	return err == nil
}

// consume runs the queue's consumer as dh-nginx (Lock, then Run with
// Once), taking entries from dh-cert as a writer, and returns its exit
// status and output.
func (r *tamperRig) consume(t *testing.T) (int, string) {
	t.Helper()
	cert, err := user.Lookup("dh-cert")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(r.root, "consume.log")
	r.ownFile(t, log, "")
	cmd := exec.Command("runuser", "-u", "dh-nginx", "-g", "dh-deployer", "--", r.bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "QUEUE_HELPER=consume", "QUEUE_DIR="+r.q, "QUEUE_LOG="+log, "QUEUE_WRITERS="+cert.Uid)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// unharmed checks that the consumer deleted no file in conf.d and left
// dh-nginx's manifest as it was.
func (r *tamperRig) unharmed(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(r.site); err != nil {
		t.Errorf("the root-owned site file in conf.d is gone: %v", err)
	}
	if b, err := os.ReadFile(r.manifest); err != nil || string(b) != manifest {
		t.Errorf("dh-nginx's manifest = %q, %v; want it unchanged %q", b, err, manifest)
	}
}

// Issue 17, finding 1: a writer of queues/nginx (dh-cert) swaps .tmp/ for
// a link to conf.d and .lock for a link to dh-nginx's manifest, then
// dh-nginx's consumer starts. As installed (sticky bit, the consumer's
// .lock made by tmpfiles) the writer cannot; on a queue from an older
// install, where it can, the consumer refuses to start and harms nothing.
func TestWriterCannotTurnQueueAgainstConsumer(t *testing.T) {
	r := newTamperRig(t)
	attack := "mv .tmp .tmp.orig && ln -s " + filepath.Dir(r.site) + " .tmp; ln -s " + r.manifest + " .lock"

	t.Run("installed", func(t *testing.T) {
		if r.as(t, "dh-cert", attack) {
			t.Errorf("dh-cert swapped .tmp or .lock of queues/nginx; the sticky bit should stop it")
		}
		if code, out := r.consume(t); code != 0 {
			t.Errorf("consumer exited %d; want 0\n%s", code, out)
		}
		r.unharmed(t)
	})

	t.Run("older install", func(t *testing.T) {
		// As before the sticky bit: no sticky bit, no .lock yet.
		for _, d := range []string{r.q, filepath.Join(r.q, StagingDir), filepath.Join(r.q, FailedDir)} {
			if err := exec.Command("chmod", "-t", d).Run(); err != nil {
				t.Fatal(err)
			}
		}
		os.Remove(filepath.Join(r.q, LockFile))
		if !r.as(t, "dh-cert", attack) {
			t.Fatalf("the attack failed without the sticky bit; the test needs it to succeed")
		}
		code, out := r.consume(t)
		if code != 77 || !strings.Contains(out, ".tmp is not a directory") {
			t.Errorf("consumer exited %d: %s; want 77 and a message naming .tmp", code, out)
		}
		r.unharmed(t)
		// Repaired by hand: the link to the manifest is refused too.
		os.Remove(filepath.Join(r.q, StagingDir))
		os.Rename(filepath.Join(r.q, ".tmp.orig"), filepath.Join(r.q, StagingDir))
		code, out = r.consume(t)
		if code != 77 || !strings.Contains(out, ".lock is a symbolic link") {
			t.Errorf("consumer exited %d: %s; want 77 and a message naming .lock", code, out)
		}
		r.unharmed(t)
		os.Remove(filepath.Join(r.q, LockFile))
		if code, out := r.consume(t); code != 0 {
			t.Errorf("consumer exited %d after the repair; want 0\n%s", code, out)
		}
		fi, err := os.Stat(r.q)
		if err != nil || fi.Mode()&os.ModeSticky == 0 {
			t.Errorf("queue directory mode %v, %v after the consumer ran; want the sticky bit added back", fi.Mode(), err)
		}
		r.unharmed(t)
	})

	t.Run("entries", func(t *testing.T) {
		// A writer's entry is taken; a link, a FIFO and an entry of a user
		// who is no writer of the queue go to failed/ with the reason.
		if !r.as(t, "dh-cert", "echo '{}' > .tmp/ok.json && mv .tmp/ok.json 1-ok.json && ln -s "+r.manifest+" 2-link.json && mkfifo 3-fifo.json") {
			t.Fatal("dh-cert could not write queues/nginx")
		}
		if err := os.WriteFile(filepath.Join(r.q, "4-route.json"), []byte("{}\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := exec.Command("chown", "dh-route", filepath.Join(r.q, "4-route.json")).Run(); err != nil {
			t.Fatal(err)
		}
		code, out := r.consume(t)
		if code != 0 {
			t.Fatalf("consumer exited %d; want 0\n%s", code, out)
		}
		log, _ := os.ReadFile(filepath.Join(r.root, "consume.log"))
		if string(log) != "start 1-ok.json\ndone 1-ok.json\n" {
			t.Errorf("handled:\n%s\nwant only 1-ok.json", log)
		}
		for name, why := range map[string]string{
			"2-link.json":  "is a symbolic link",
			"3-fifo.json":  "is not a regular file",
			"4-route.json": "owned by dh-route, who is not a writer",
		} {
			var f Failure
			b, err := os.ReadFile(filepath.Join(r.q, FailedDir, name+WhySuffix))
			if err == nil {
				err = json.Unmarshal(b, &f)
			}
			if err != nil || !strings.Contains(f.Error, why) {
				t.Errorf("failed/%s.why = %+v, %v; want a reason with %q", name, f, err, why)
			}
			if _, err := os.Lstat(filepath.Join(r.q, FailedDir, name)); err != nil {
				t.Errorf("%s not in failed/: %v", name, err)
			}
		}
		r.unharmed(t)
	})
}

// ReadEntry (replays, dh-route looking into a deployment queue) refuses a
// link and a FIFO at once, without following or blocking on them.
func TestReadEntryRefusesLinkAndFIFO(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.json"), []byte(`{}`), 0o640)
	os.Symlink("ok.json", filepath.Join(dir, "link.json"))
	syscall.Mkfifo(filepath.Join(dir, "fifo.json"), 0o640)
	if e, err := ReadEntry(filepath.Join(dir, "ok.json")); err != nil || string(e.Data) != `{}` || e.Owner != os.Geteuid() {
		t.Errorf("ReadEntry(ok.json) = %+v, %v; want its data and owner", e, err)
	}
	for _, name := range []string{"link.json", "fifo.json"} {
		if _, err := ReadEntry(filepath.Join(dir, name)); !errors.Is(err, ErrRefused) {
			t.Errorf("ReadEntry(%s) = %v; want ErrRefused", name, err)
		}
	}
	if _, err := ReadEntry(filepath.Join(dir, "gone.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadEntry(gone.json) = %v; want os.ErrNotExist", err)
	}
}
