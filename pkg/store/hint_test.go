package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
)

// Issue 18: a database error says what to check. Each case is a real
// PostgreSQL refusing, as a stage opens its store at start.
func TestDatabaseErrorHints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	migrated := storetest.NewMigrated(t)
	role := fmt.Sprintf("nogrant_%d", queryInt(t, migrated, "SELECT pg_backend_pid()"))
	rawDB(t, migrated).Exec("CREATE ROLE " + role + " LOGIN")
	t.Cleanup(func() { rawDB(t, migrated).Exec("DROP ROLE " + role) })
	cluster, stopped := storetest.Private(t)
	cluster.Stop(t)

	for _, tc := range []struct {
		name, url  string
		hint, text string
		status     int
	}{
		{"unreachable", stopped, "is PostgreSQL running and listening on socket ", "connect to", 75},
		{"unknown role", strings.Replace(migrated, "postgres@", "nosuchrole@", 1),
			"each stage logs in as its own role", `role "nosuchrole" does not exist`, 78},
		{"unmigrated", storetest.New(t), "run: dh-route migrate", "database schema is at version 0", 75},
		{"role without grants", strings.Replace(migrated, "postgres@", role+"@", 1),
			"lacks a grant: apply sql/roles.sql", "permission denied", 1},
	} {
		s, err := store.OpenCurrent(ctx, tc.url)
		if err == nil {
			s.Close()
		}
		if h := hint.Of(err); !strings.Contains(h, tc.hint) || !strings.Contains(fmt.Sprint(err), tc.text) ||
			cli.ExitStatus(err) != tc.status {
			t.Errorf("%s: OpenCurrent() = %v (exit %d), hint %q; want %q (exit %d) with a hint containing %q",
				tc.name, err, cli.ExitStatus(err), h, tc.text, tc.status, tc.hint)
		}
	}
}
