package testenv

import (
	"os"
	"os/exec"
	"os/user"
	"syscall"
	"testing"
	"time"
)

// UsersLock is the file whose flock serializes the tests that create and
// delete the stage users (dh-receive, dh-route, ...) and the group
// dh-deployer: the acl tests and the end-to-end tests, which run as
// different test binaries, perhaps at the same time.
const UsersLock = "/tmp/dh-deployer-test-users.lock"

// LockUsers takes the machine-wide lock of the stage users, waiting for
// another test binary to release it, and holds it until the test ends
// (t.Cleanup). Call it before creating the users, so that the cleanup
// that deletes them runs while the lock is still held. It is not
// reentrant: a test calls it once, and tests that call it must not run in
// parallel within one binary.
func LockUsers(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(UsersLock, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("open the users' lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", UsersLock, err)
	}
	// Closing the file releases the lock; registered first, it runs after
	// every cleanup the test registers later (users removed, then unlock).
	t.Cleanup(func() { f.Close() })
}

// StageUsers are the Unix users of the five stages, as the shipped
// sysusers file names them.
var StageUsers = []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"}

// StageGroups are the groups of the shipped sysusers file: the stages'
// dh-deployer, and dh-hook, whose members may connect to the git hook's
// socket.
var StageGroups = []string{"dh-deployer", "dh-hook"}

// MakeStageUsers takes the users' lock (LockUsers), creates the groups
// (StageGroups) and the stage users with `script users` (acl/dh-deployer-acl
// reading sysusersFile), and deletes, when the test ends, those it made.
// It returns the users it made. The caller must be root.
func MakeStageUsers(t testing.TB, script, sysusersFile string) []string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatalf("this test creates users: run it as root (CI does)")
	}
	Command(t, "useradd")
	LockUsers(t)
	var made []string
	for _, u := range StageUsers {
		if _, err := user.Lookup(u); err != nil {
			made = append(made, u)
		}
	}
	var madeGroups []string
	for _, g := range StageGroups {
		if _, err := user.LookupGroup(g); err != nil {
			madeGroups = append(madeGroups, g)
		}
	}
	t.Cleanup(func() {
		for _, u := range made {
			// A process of a killed stage may still be exiting: userdel
			// refuses a user with processes.
			var out []byte
			var err error
			for i := 0; i < 50; i++ {
				if out, err = exec.Command("userdel", u).CombinedOutput(); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("userdel %s: %v: %s", u, err, out)
			}
		}
		for _, g := range madeGroups {
			if out, err := exec.Command("groupdel", g).CombinedOutput(); err != nil {
				t.Errorf("groupdel %s: %v: %s", g, err, out)
			}
		}
	})
	cmd := exec.Command(script, "users")
	cmd.Env = append(os.Environ(), "DH_SYSUSERS="+sysusersFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s users: %v\n%s", script, err, out)
	}
	return made
}
