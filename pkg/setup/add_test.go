package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// base is the package's starting configuration (deb/config.toml) with a
// deployment already added.
func base(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../deb/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + `
[deployments.api]
repository = "example/api"
branches   = ["main"]
path       = "/srv/www/api"
`
}

// TestTable: the table dh-deploy add appends to the package's starting
// configuration loads with the strict loader, beside tables already there, and a bad value never becomes another key.
func TestTable(t *testing.T) {
	good := Deployment{Name: "web", Repository: "example/web", Branches: []string{"main"}, Path: "/srv/www/web",
		CloneURL: "/srv/git/web.git", Steps: [][]string{{"sh", "-c", `echo "built" > x`}}, User: "dh-deploy-web"}
	tests := []struct {
		d    Deployment
		want string // "" means it loads
	}{
		{good, ""},
		{Deployment{Name: "x]\n[receive", Repository: "a/b", Branches: []string{"main"}, Path: "/srv/x", User: "u"}, "deployments"},
		{Deployment{Name: "web", Repository: "a/b\"\nqueue_dir = \"/tmp", Branches: []string{"main"}, Path: "/srv/x", User: "u"}, "repository"},
		{Deployment{Name: "web", Repository: "a/b", Branches: []string{"main"}, Path: "relative", User: "u"}, "path"},
	}
	for _, tt := range tests {
		table, err := tt.d.table()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse("config.toml", []byte(base(t)+"\n"+string(table)))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("table(%q) does not load: %v\n%s", tt.d.Name, err, table)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("table(%q) loads with error %v; want one naming %q\n%s", tt.d.Name, err, tt.want, table)
		}
		if tt.want == "" && err == nil {
			d, ok := cfg.Deployment("web")
			if !ok || d.RunsAs() != "dh-deploy-web" || d.FetchURL() != "/srv/git/web.git" || len(d.Steps) != 1 || d.Steps[0][2] != `echo "built" > x` ||
				d.Path != "/srv/www/web/current" || d.ReleasesDir != "/srv/www/web/current.releases" {
				t.Errorf("table loads as %+v", d)
			}
			if cfg.QueueDir != "/var/spool/dh-deployer" {
				t.Errorf("queue_dir = %q after the table", cfg.QueueDir)
			}
		}
	}
}

func TestOpenDB(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres:///dh_deployer?host=/run/postgresql&sslmode=disable": "dh_deployer /run/postgresql 5432",
		"postgres://dh-route@/db2?host=/tmp/pg&port=5433":              "db2 /tmp/pg 5433",
		"postgres:///Robert';DROP?host=/run/postgresql":                "error",
		"postgres://db.example.org/dh_deployer":                        "error",
	} {
		db, err := OpenDB(dsn, nil)
		got := "error"
		if err == nil {
			got = db.Name + " " + db.Host + " " + db.Port
		}
		if got != want {
			t.Errorf("OpenDB(%q) = %s (%v); want %s", dsn, got, err, want)
		}
	}
}

// TestReplaceConfig: the configuration is replaced only if it still holds
// what was read, keeping its mode; appendTable never changes what was read.
func TestReplaceConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("queue_dir = \"/q\"\n\n\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path) // as AddDeployment reads it: room to spare after it
	if err != nil {
		t.Fatal(err)
	}
	text := appendTable(old, []byte("[deployments.web]\n"))
	if string(old) != "queue_dir = \"/q\"\n\n\n" || string(text) != "queue_dir = \"/q\"\n\n[deployments.web]\n" {
		t.Fatalf("appendTable: old %q, text %q", old, text)
	}
	if err := replaceConfig(path, []byte("something else"), text); !queue.IsRetry(err) {
		t.Errorf("replaceConfig of a file changed meanwhile = %v; want a temporary failure", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(old) {
		t.Errorf("the refused replaceConfig changed the file to %q", b)
	}
	if err := replaceConfig(path, old, text); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != string(text) || fi.Mode().Perm() != 0o640 {
		t.Errorf("after replaceConfig: %q mode %v; want %q mode 0640", b, fi.Mode().Perm(), text)
	}
}
