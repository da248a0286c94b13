package nginx

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Directories of an nginx-kind checkout.
const (
	SitesDir    = "production"
	SnippetsDir = "snippets"
)

// DisabledSuffix marks a site file that is not installed.
const DisabledSuffix = ".disabled"

// maxFile bounds the size of a site or snippet file read from a commit.
const maxFile = 1 << 20

// siteSuffixes are the extensions of site files.
var siteSuffixes = []string{".conf", ".nginxconf"}

// snippetRE is the alphabet of snippet file names: what an include
// directive can name without quoting, no "..", no leading dot or dash.
var snippetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$`)

// ValidSiteName reports whether s may be a site name: a certificate
// name's alphabet (lower-case DNS labels joined by dots), so it is safe as
// a file name, a certbot --cert-name and an argument.
func ValidSiteName(s string) bool { return event.ValidCertName(s) }

// file is one file found in the commit.
type file struct {
	name    string // site name, or snippet file name
	rel     string // path in the checkout, for messages
	data    []byte
	problem string // why it may not be installed; data is nil then
}

// tree is what a commit offers.
type tree struct {
	sites    []file // enabled site files, by name
	disabled []string
	snippets []file
}

// readTree reads the site files and snippets of commit from the
// checkout's git objects (never its working tree, which its owner may
// have changed since dh-deploy verified the commit). Files that may not
// be installed carry a problem: only blobs of mode 100644 or 100755 of at
// most maxFile bytes are read; symbolic links (120000) and submodules
// are refused.
func readTree(ctx context.Context, repo *gitrepo.Repo, commit string) (*tree, error) {
	top, err := repo.ListTree(ctx, commit, SitesDir, SnippetsDir)
	if err != nil {
		return nil, readErr(err)
	}
	for _, e := range top {
		if e.Type != "tree" {
			return nil, sysexits.Errorf(sysexits.DataErr, "commit %s: %s is not a directory (symbolic links are refused)", commit, e.Path)
		}
	}
	t := &tree{}
	entries, err := listDir(ctx, repo, commit, SitesDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, e := range entries {
		base := path.Base(e.Path)
		disabled := strings.HasSuffix(base, DisabledSuffix)
		stem := strings.TrimSuffix(base, DisabledSuffix)
		var name string
		for _, suf := range siteSuffixes {
			if n, ok := strings.CutSuffix(stem, suf); ok {
				name = n
				break
			}
		}
		if name == "" || e.Type == "tree" {
			continue // not a site file
		}
		if disabled {
			t.disabled = append(t.disabled, name)
			continue
		}
		f := file{name: name, rel: e.Path}
		switch {
		case !ValidSiteName(name):
			f.problem = fmt.Sprintf("site name %q is not allowed: use lower-case DNS labels (a-z, 0-9, -) joined by dots", name)
		case seen[name] != "":
			f.problem = fmt.Sprintf("both %s and %s define the site", seen[name], e.Path)
		default:
			f.data, f.problem, err = readBlob(ctx, repo, e)
			if err != nil {
				return nil, err
			}
		}
		if seen[name] == "" {
			seen[name] = e.Path
		} else {
			// The second file of one name: mark the first one too.
			for i := range t.sites {
				if t.sites[i].name == name {
					t.sites[i].problem, t.sites[i].data = f.problem, nil
				}
			}
			continue
		}
		t.sites = append(t.sites, f)
	}

	entries, err = listDir(ctx, repo, commit, SnippetsDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		base := path.Base(e.Path)
		if e.Type == "tree" || strings.HasPrefix(base, ".") {
			continue
		}
		f := file{name: base, rel: e.Path}
		if len(base) > 128 || !snippetRE.MatchString(base) {
			f.problem = fmt.Sprintf("snippet name %q is not allowed: use letters, digits, \"-\", \"_\" and single dots", base)
		} else if f.data, f.problem, err = readBlob(ctx, repo, e); err != nil {
			return nil, err
		}
		t.snippets = append(t.snippets, f)
	}
	return t, nil
}

// listDir lists the entries directly in dir of commit, by name.
func listDir(ctx context.Context, repo *gitrepo.Repo, commit, dir string) ([]gitrepo.TreeEntry, error) {
	entries, err := repo.ListTree(ctx, commit, dir+"/")
	if err != nil {
		return nil, readErr(err)
	}
	slices.SortFunc(entries, func(a, b gitrepo.TreeEntry) int { return strings.Compare(a.Path, b.Path) })
	return entries, nil
}

// readBlob returns a file's content, or why it may not be installed.
func readBlob(ctx context.Context, repo *gitrepo.Repo, e gitrepo.TreeEntry) ([]byte, string, error) {
	switch {
	case e.Mode == gitrepo.ModeSymlink:
		return nil, "a symbolic link: refused", nil
	case !e.Regular():
		return nil, "not a regular file: refused", nil
	case e.Size > maxFile:
		return nil, fmt.Sprintf("larger than %d bytes: refused", maxFile), nil
	}
	data, err := repo.ReadBlob(ctx, e.ID, maxFile)
	if err != nil {
		return nil, "", readErr(err)
	}
	return data, "", nil
}

// readErr classifies an error of reading the checkout's objects: a
// temporary failure (the checkout may be in the middle of a fetch), unless
// it already says otherwise.
func readErr(err error) error {
	if _, ok := errors.AsType[*sysexits.Error](err); ok || queue.IsRetry(err) || queue.IsStop(err) {
		return err
	}
	return queue.Retry(fmt.Errorf("read the checkout: %w", err))
}
