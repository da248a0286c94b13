package gitrepo

import (
	"context"
	"strings"
	"testing"
)

// Graph agrees with Contains (is a commit on a ref) and IsAncestor (does
// a commit on a ref contain another) for every pair, on branches, a merge,
// an annotated and a light tag, a commit force-pushed away and one the
// repository does not have.
func TestGraphAgreesWithContainsAndIsAncestor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c1 := f.commit("a.txt", "one\n")
	c2 := f.commit("a.txt", "two\n")
	f.run(f.work, "tag", "-a", "-m", "release 1", "v1", c2)
	f.run(f.work, "checkout", "--quiet", "-b", "feature", c1)
	f1 := f.commit("b.txt", "feature\n")
	f.run(f.work, "tag", "light", f1)
	f.run(f.work, "checkout", "--quiet", "main")
	f.run(f.work, "merge", "--quiet", "--no-edit", "feature")
	m := f.run(f.work, "rev-parse", "HEAD")
	gone := f.commit("c.txt", "pushed, then forced away\n")
	f.push("main", "feature", "--tags")
	r := f.synced()
	f.run(f.work, "reset", "--quiet", "--hard", m)
	c3 := f.commit("c.txt", "three\n")
	f.push("--force", "main")
	if err := r.Sync(ctx); err != nil {
		t.Fatalf("Sync() = %v", err)
	}

	unknown := strings.Repeat("0123456789", 4)
	refs := []string{"refs/heads/main", "refs/heads/feature", "refs/tags/v1", "refs/tags/light", "refs/heads/none"}
	commits := []string{c1, c2, f1, m, gone, c3, unknown}
	g, err := r.Graph(ctx, refs, commits)
	if err != nil {
		t.Fatalf("Graph() = %v", err)
	}
	for _, ref := range refs {
		for _, c := range commits {
			want := r.Contains(ctx, ref, c) == nil
			if got := g.On(ref, c); got != want {
				t.Errorf("On(%s, %.7s) = %v; Contains says %v", ref, c, got, want)
			}
		}
	}
	// For every commit on a ref, Mark finds exactly its proper ancestors.
	for _, b := range commits {
		if !g.On("refs/heads/main", b) && !g.On("refs/heads/feature", b) {
			continue
		}
		below := map[string]string{}
		g.Mark(b, below, "x")
		for _, a := range commits {
			ok, err := r.IsAncestor(ctx, a, b)
			want := err == nil && ok && a != b
			if _, got := below[a]; got != want {
				t.Errorf("%.7s below %.7s: Mark says %v; IsAncestor %v (err %v)", a, b, got, want, err)
			}
		}
	}
	// A commit that is not a commit's hex, or a ref that is no ref, is
	// refused before any git command.
	if _, err := r.Graph(ctx, []string{"main"}, nil); err == nil {
		t.Errorf("Graph(ref main) = nil error; want refused")
	}
	if _, err := r.Graph(ctx, nil, []string{"--all"}); err == nil {
		t.Errorf("Graph(commit --all) = nil error; want refused")
	}
}
