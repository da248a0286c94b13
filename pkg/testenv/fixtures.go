package testenv

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FixturesDir returns ../shared/fixtures/github, the real GitHub webhook
// payloads kept beside the repository (or $DH_FIXTURES). It looks upwards
// from the working directory, so it works from any package's tests.
func FixturesDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("DH_FIXTURES"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "fixtures", "github")
		if _, err := os.Stat(filepath.Join(cand, "MANIFEST.tsv")); err == nil {
			return cand
		}
		if dir == filepath.Dir(dir) {
			t.Fatalf("no shared/fixtures/github above %s; check out shared/ beside the repository or set DH_FIXTURES", wd)
		}
	}
}

// Fixture is one row of MANIFEST.tsv.
type Fixture struct {
	Path       string // absolute path of the payload file
	Event      string // X-GitHub-Event
	What       string // what it represents
	Repository string // repository.full_name, "-" if none
	Ref        string
	After      string
}

// Fixtures reads MANIFEST.tsv.
func Fixtures(t testing.TB) []Fixture {
	t.Helper()
	dir := FixturesDir(t)
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Fixture
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 6 {
			continue
		}
		out = append(out, Fixture{filepath.Join(dir, c[0]), c[1], c[2], c[3], c[4], c[5]})
	}
	if err := sc.Err(); err != nil || len(out) == 0 {
		t.Fatalf("read MANIFEST.tsv: %d rows, %v", len(out), err)
	}
	return out
}
