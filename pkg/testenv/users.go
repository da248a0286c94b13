package testenv

import (
	"os"
	"syscall"
	"testing"
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
