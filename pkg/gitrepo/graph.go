package gitrepo

import (
	"context"
	"fmt"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// maxGraph bounds the output of Graph's git commands: about 200,000
// commits between the oldest commit asked about and the tips.
const maxGraph = 32 << 20

// Graph is the part of the fetched commit graph that decides, for many
// (ref, commit) pairs at once, which commits are on their refs and which
// contain which: the commits between the refs' fetched tips and the
// newest common ancestor of everything asked about, with their parents.
// Graph reads it with four git commands, however many commits it is
// asked about (see Repo.Graph).
type Graph struct {
	tips    map[string]string            // ref (refs/heads/X, refs/tags/X) → fetched tip, "" if none
	parents map[string][]string          // commit → parents, for the commits in the graph
	known   map[string]bool              // commits the repository has, of those asked about
	below   map[string]map[string]string // ref → its tip's ancestors, as On needs them
}

// Graph reads the graph of the refs and commits, after a Sync. Refs and
// commits must be valid (ident.ParseRef, ident.ParseCommit); a commit the repository does
// not have is simply on no ref and contains nothing.
func (r *Repo) Graph(ctx context.Context, refs, commits []string) (*Graph, error) {
	g := &Graph{tips: map[string]string{}, parents: map[string][]string{}, known: map[string]bool{}, below: map[string]map[string]string{}}
	for _, ref := range refs {
		if err := checkRef(ref); err != nil {
			return nil, err
		}
		g.tips[ref] = ""
	}
	for _, c := range commits {
		if err := checkSHA(c); err != nil {
			return nil, err
		}
	}
	// 1. The tips: one for-each-ref, tags peeled to their commits.
	out, err := r.runMax(ctx, r.Path, maxGraph, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)",
		strings.TrimSuffix(remotePrefix, "/"), strings.TrimSuffix(ident.TagPrefix, "/"))
	if err != nil {
		return nil, fmt.Errorf("read the fetched refs: %w", err)
	}
	var tips []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ref := f[0]
		if name, ok := strings.CutPrefix(ref, remotePrefix); ok {
			ref = ident.BranchPrefix + name
		}
		if _, asked := g.tips[ref]; !asked {
			continue
		}
		tip := f[len(f)-1] // the peeled commit of an annotated tag comes last
		if checkSHA(tip) != nil {
			continue
		}
		g.tips[ref] = tip
		tips = append(tips, tip)
	}
	// 2. Which of the commits the repository has (--ignore-missing
	// drops the others).
	if len(commits) > 0 {
		out, err = r.runMax(ctx, r.Path, maxGraph, append([]string{"rev-list", "--no-walk", "--ignore-missing", "--end-of-options"}, commits...)...)
		if err != nil {
			return nil, fmt.Errorf("look up commits: %w", err)
		}
		for line := range strings.Lines(out) {
			g.known[strings.TrimSpace(line)] = true
		}
	}
	if len(tips) == 0 {
		return g, nil
	}
	// 3. The newest common ancestor of the tips and the known commits:
	// the graph below it cannot say anything about them.
	all := append([]string(nil), tips...)
	for c := range g.known {
		all = append(all, c)
	}
	base := all[0] // one commit: nothing below it is needed
	if len(all) > 1 {
		base = ""
		out, err = r.run(ctx, r.Path, append([]string{"merge-base", "--octopus", "--end-of-options"}, all...)...)
		switch {
		case exitCode(err) == 1: // unrelated histories: the whole graph
		case err != nil:
			return nil, fmt.Errorf("merge-base: %w", err)
		default:
			base = strings.TrimSpace(out)
		}
	}
	// 4. Every commit from the tips down to the base, with its parents.
	args := append([]string{"rev-list", "--parents", "--end-of-options"}, tips...)
	if base != "" {
		args = append(args, "^"+base)
	}
	out, err = r.runMax(ctx, r.Path, maxGraph, args...)
	if err != nil {
		return nil, fmt.Errorf("read the commit graph: %w", err)
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 0 {
			g.parents[f[0]] = f[1:]
		}
	}
	return g, nil
}

// Tip is ref's fetched tip, "" if origin has no such ref.
func (g *Graph) Tip(ref string) string { return g.tips[ref] }

// Mark maps each proper ancestor of commit that the graph holds (down to
// the base) to label in into, skipping the commits into holds already,
// and their ancestors: into must hold only whole sets of ancestors, as
// Mark makes them, so that marking many commits walks each commit once.
func (g *Graph) Mark(commit string, into map[string]string, label string) {
	stack := append([]string(nil), g.parents[commit]...)
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := into[c]; ok {
			continue
		}
		into[c] = label
		stack = append(stack, g.parents[c]...)
	}
}

// On reports whether commit is on ref: the tip of a tag, or the tip of a
// branch or one of its ancestors.
func (g *Graph) On(ref, commit string) bool {
	tip := g.tips[ref]
	switch {
	case tip == "" || !g.known[commit] && commit != tip:
		return false
	case tip == commit:
		return true
	case strings.HasPrefix(ref, ident.TagPrefix):
		return false
	}
	below, ok := g.below[ref]
	if !ok {
		below = map[string]string{}
		g.Mark(tip, below, "")
		g.below[ref] = below
	}
	_, ok = below[commit]
	return ok
}
