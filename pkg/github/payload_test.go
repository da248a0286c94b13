package github_test

import (
	"os"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestDecodePayloads decodes every push and ping fixture: push payloads
// carry repository.created_at as a Unix integer, which must not matter.
func TestDecodePayloads(t *testing.T) {
	for _, f := range testenv.Fixtures(t) {
		payload, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Event {
		case "push":
			p, err := github.DecodePush(payload)
			if err != nil {
				t.Errorf("DecodePush(%q) = %v", f.Path, err)
				continue
			}
			if p.Ref != f.Ref || p.After != f.After || p.Repository.FullName != f.Repository {
				t.Errorf("DecodePush(%q) = %s %s %s; want %s %s %s", f.Path, p.Ref, p.After, p.Repository.FullName, f.Ref, f.After, f.Repository)
			}
			if deleted := p.IsDeletion(); deleted != (f.After == github.ZeroSHA) || deleted != (p.HeadCommit == nil) {
				t.Errorf("DecodePush(%q).IsDeletion() = %v with after %s, head_commit %v", f.Path, deleted, p.After, p.HeadCommit)
			}
		case "ping":
			p, err := github.DecodePing(payload)
			if err != nil || p.HookID == 0 || p.Zen == "" || len(p.Hook.Events) == 0 {
				t.Errorf("DecodePing(%q) = %+v, %v; want a hook id, zen and events", f.Path, p, err)
			}
		default:
			if got := github.RepositoryName(payload); f.Repository != "-" && got != f.Repository {
				t.Errorf("RepositoryName(%q) = %q; want %q", f.Path, got, f.Repository)
			}
		}
	}
}

func TestNULRefused(t *testing.T) {
	if p, err := github.DecodePing([]byte(`{"hook_id":1,"hook":{"type":"Repository","events":["push\u0000"]}}`)); err == nil {
		t.Errorf("DecodePing(NUL in hook.events) = %+v, nil; want an error", p)
	}
	if got := github.RepositoryName([]byte(`{"repository":{"full_name":"o/n\u0000"}}`)); got != "" {
		t.Errorf("RepositoryName(NUL in full_name) = %q; want \"\"", got)
	}
}

func TestDecodePushErrors(t *testing.T) {
	for _, payload := range []string{
		`[]`,
		`{"after":"a","repository":{"full_name":"o/n"}}`,
		`{"ref":"refs/heads/x","repository":{"full_name":"o/n"}}`,
		`{"ref":"refs/heads/x","after":"a"}`,
		`{"ref":"refs/heads/x","after":"a","repository":{"full_name":"o/n","created_at":"2020-01-01T00:00:00Z"},"deleted":"yes"}`,
		// A NUL byte cannot go into the event table (Postgres text).
		`{"ref":"refs/heads/x\u0000","after":"a","repository":{"full_name":"o/n"}}`,
		`{"ref":"refs/heads/x","after":"a\u0000","repository":{"full_name":"o/n"}}`,
		`{"ref":"refs/heads/x","after":"a","repository":{"full_name":"o/n\u0000"}}`,
	} {
		if p, err := github.DecodePush([]byte(payload)); err == nil {
			t.Errorf("DecodePush(%s) = %+v, nil; want an error", payload, p)
		}
	}
}
