package gitrepo

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/event"
)

// Reading a commit's files from git's objects rather than from the working
// tree: what a commit holds cannot change, while the working tree is
// whatever its owner last wrote. dh-nginx reads a deployment's checkout
// this way, as another user than its owner (Repo.Foreign).

// Modes of tree entries, as git ls-tree prints them.
const (
	ModeFile       = "100644"
	ModeExecutable = "100755"
	ModeSymlink    = "120000"
	ModeTree       = "040000"
	ModeSubmodule  = "160000"
)

// TreeEntry is one entry of a commit's tree.
type TreeEntry struct {
	Mode string // one of the Mode* constants
	Type string // "blob", "tree" or "commit" (a submodule)
	ID   string // the object's name
	Size int64  // the blob's size; -1 for a tree or a submodule
	Path string // from the top of the tree, "/"-separated
}

// Regular reports whether the entry is a file: a blob of mode 100644 or
// 100755, not a symbolic link, a directory or a submodule.
func (e TreeEntry) Regular() bool {
	return e.Type == "blob" && (e.Mode == ModeFile || e.Mode == ModeExecutable)
}

// ListTree lists the entries of commit's tree that paths name, without
// recursing: "dir" is the entry dir itself, "dir/" the entries directly in
// it. Paths are literal (git ls-tree takes no wildcards); one the commit
// does not have lists nothing. A commit that is not a valid full name is
// bad data (an *event.Error); one the repository does not have
// is an error.
func (r *Repo) ListTree(ctx context.Context, commit string, paths ...string) ([]TreeEntry, error) {
	if err := checkSHA(commit); err != nil {
		return nil, err
	}
	args := append([]string{"ls-tree", "-z", "-l", "--full-tree", commit + "^{commit}", "--"}, paths...)
	out, err := r.runMax(ctx, r.Path, 4<<20, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", strings.Join(paths, " "), commit, err)
	}
	var entries []TreeEntry
	for rec := range strings.SplitSeq(strings.TrimSuffix(out, "\x00"), "\x00") {
		if rec == "" {
			continue
		}
		// <mode> SP <type> SP <name> SP+ <size> TAB <path>
		meta, p, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("list %s: unexpected output of git ls-tree: %q", commit, rec)
		}
		e := TreeEntry{Mode: f[0], Type: f[1], ID: f[2], Size: -1, Path: p}
		if f[3] != "-" {
			if e.Size, err = strconv.ParseInt(f[3], 10, 64); err != nil || e.Size < 0 {
				return nil, fmt.Errorf("list %s: unexpected size in git ls-tree's output: %q", commit, rec)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// ReadBlob returns the content of blob id, which must be at most max
// bytes. The content is checked against id (the hash of "blob SIZE\0"
// and the bytes, SHA-1 or SHA-256 by id's length): what it returns is the
// object, whatever the object store's files hold.
func (r *Repo) ReadBlob(ctx context.Context, id string, max int) ([]byte, error) {
	if err := checkSHA(id); err != nil {
		return nil, err
	}
	out, err := r.runMax(ctx, r.Path, max, "cat-file", "blob", id)
	if errors.Is(err, errTooLong) {
		return nil, event.Errorf("blob %s is larger than %d bytes", id, max)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", id, err)
	}
	var h hash.Hash = sha1.New()
	if len(id) == 64 {
		h = sha256.New()
	}
	fmt.Fprintf(h, "blob %d\x00", len(out))
	h.Write([]byte(out))
	if got := hex.EncodeToString(h.Sum(nil)); got != id {
		return nil, fmt.Errorf("read blob %s: git returned content that hashes to %s", id, got)
	}
	return []byte(out), nil
}
