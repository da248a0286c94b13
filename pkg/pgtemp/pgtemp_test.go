package pgtemp

import (
	"context"
	"database/sql"
	"os"
	"testing"
)

func ping(url string) error {
	db, err := sql.Open("postgres", url+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(context.Background())
}

// A cluster starts from initdb, serves a new database, stops (its socket
// refuses), starts again, and leaves nothing behind when removed.
func TestCluster(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	defer c.Remove()
	u, err := CreateDatabase(c.URL("postgres"), "pgtemp_test")
	if err != nil {
		t.Fatalf("CreateDatabase() = %v", err)
	}
	if err := ping(u); err != nil {
		t.Fatalf("ping %s = %v", u, err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if err := ping(u); err == nil {
		t.Errorf("ping %s after Stop = nil; want an error", u)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if err := ping(u); err != nil {
		t.Errorf("ping %s after Start = %v", u, err)
	}
	if err := DropDatabase(c.URL("postgres"), "pgtemp_test"); err != nil {
		t.Errorf("DropDatabase() = %v", err)
	}
	if err := c.Remove(); err != nil {
		t.Errorf("Remove() = %v", err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s after Remove: %v; want it gone", c.Dir(), err)
	}
}

func TestUnprivileged(t *testing.T) {
	uid, gid, err := Unprivileged()
	if err != nil || uid == 0 || gid == 0 {
		t.Errorf("Unprivileged() = %d, %d, %v; want a non-root user", uid, gid, err)
	}
}
