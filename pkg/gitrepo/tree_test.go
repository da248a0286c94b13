package gitrepo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

func TestListTreeAndReadBlob(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(filepath.Join(f.work, "dir/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"dir/a.conf": "a\n", "dir/sub/b": "b\n", "dir/big": strings.Repeat("x", 100)} {
		if err := os.WriteFile(filepath.Join(f.work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(f.work, "dir/run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(f.work, "dir/link.conf"))
	f.run(f.work, "add", "-A")
	f.run(f.work, "commit", "--quiet", "-m", "tree")
	commit := f.run(f.work, "rev-parse", "HEAD")
	// The working tree changes after the commit: reading the commit does
	// not see it.
	os.WriteFile(filepath.Join(f.work, "dir/a.conf"), []byte("changed\n"), 0o644)

	r := f.repo("work")
	ctx := context.Background()
	entries, err := r.ListTree(ctx, commit, "dir/")
	if err != nil {
		t.Fatalf("ListTree(dir/) = %v", err)
	}
	got := map[string]TreeEntry{}
	for _, e := range entries {
		got[e.Path] = e
	}
	for path, want := range map[string]struct {
		mode    string
		regular bool
	}{"dir/a.conf": {ModeFile, true}, "dir/run.sh": {ModeExecutable, true}, "dir/link.conf": {ModeSymlink, false},
		"dir/sub": {ModeTree, false}, "dir/big": {ModeFile, true}} {
		if e, ok := got[path]; !ok || e.Mode != want.mode || e.Regular() != want.regular {
			t.Errorf("ListTree entry %s = %+v (regular %v); want mode %s, regular %v", path, e, e.Regular(), want.mode, want.regular)
		}
	}
	if len(entries) != 5 || got["dir/big"].Size != 100 || got["dir/sub"].Size != -1 {
		t.Errorf("ListTree(dir/) = %+v; want 5 entries, big of 100 bytes, sub without a size", entries)
	}
	if top, err := r.ListTree(ctx, commit, "dir", "missing"); err != nil || len(top) != 1 || top[0].Type != "tree" {
		t.Errorf("ListTree(dir, missing) = %+v, %v; want the one tree entry dir", top, err)
	}

	if b, err := r.ReadBlob(ctx, got["dir/a.conf"].ID, 1<<20); err != nil || string(b) != "a\n" {
		t.Errorf("ReadBlob(a.conf) = %q, %v; want the committed %q", b, err, "a\n")
	}
	if _, err := r.ReadBlob(ctx, got["dir/big"].ID, 99); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("ReadBlob(big, 99) = %v; want a DataErr (too large)", err)
	}
	if _, err := r.ListTree(ctx, "HEAD"); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("ListTree(HEAD) = %v; want a DataErr (not a full commit name)", err)
	}
	if _, err := r.ListTree(ctx, got["dir/a.conf"].ID); err == nil {
		t.Errorf("ListTree(a blob) = nil error; want one (not a commit)")
	}

	// Another user's repository: git refuses it unless Foreign.
	if err := filepath.Walk(f.work, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(p, 4242, 4242)
		}
		return err
	}); err != nil {
		t.Skipf("cannot chown (not root?): %v", err)
	}
	if _, err := r.ListTree(ctx, commit, "dir/"); err == nil || !strings.Contains(err.Error(), "dubious ownership") {
		t.Errorf("ListTree of another user's repository = %v; want git's dubious ownership", err)
	}
	r.Foreign = true
	if entries, err := r.ListTree(ctx, commit, "dir/"); err != nil || len(entries) != 5 {
		t.Errorf("Foreign ListTree = %d entries, %v; want 5", len(entries), err)
	}
}
