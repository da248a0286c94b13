package nginx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Directories of an nginx-kind checkout.
const (
	SitesDir    = "production"
	SnippetsDir = "snippets"
)

// DisabledSuffix marks a site file that is not installed.
const DisabledSuffix = ".disabled"

// maxFile bounds the size of a site or snippet file read from a checkout.
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

// file is one file found in the checkout.
type file struct {
	name    string // site name, or snippet file name
	rel     string // path in the checkout, for messages
	data    []byte
	problem string // why it may not be installed; data is nil then
}

// tree is what a checkout offers.
type tree struct {
	sites    []file // enabled site files, by name
	disabled []string
	snippets []file
}

// readHead returns the commit the checkout's HEAD is at: HEAD detached
// at a commit (what dh-deploy does), or a symbolic ref to a branch whose
// commit is read from its loose ref file or packed-refs. The files are
// read directly rather than with git, which refuses to work in a
// repository another user owns.
func readHead(root *os.Root) (string, error) {
	head, err := readSmall(root, ".git/HEAD")
	if err != nil {
		return "", fmt.Errorf(".git/HEAD: %w", err)
	}
	s := strings.TrimSpace(string(head))
	ref, ok := strings.CutPrefix(s, "ref: ")
	if !ok {
		return s, nil
	}
	if !strings.HasPrefix(ref, "refs/") || strings.Contains(ref, "..") {
		return "", fmt.Errorf("HEAD names a strange ref %q", ref)
	}
	if b, err := readSmall(root, ".git/"+ref); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	packed, err := readSmall(root, ".git/packed-refs")
	if err != nil {
		return "", fmt.Errorf("HEAD is at %s, which has no commit", ref)
	}
	sc := bufio.NewScanner(bytes.NewReader(packed))
	for sc.Scan() {
		if sha, name, ok := strings.Cut(sc.Text(), " "); ok && name == ref {
			return sha, nil
		}
	}
	return "", fmt.Errorf("HEAD is at %s, which has no commit", ref)
}

// readSmall reads a regular file (not a symbolic link) of at most maxFile
// bytes through root, which keeps it inside the checkout.
func readSmall(root *os.Root, rel string) ([]byte, error) {
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errors.New("a symbolic link: refused")
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file: refused")
	}
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have been replaced since Lstat: check what was opened.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file: refused")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("larger than %d bytes: refused", maxFile)
	}
	return data, nil
}

// readDir lists a directory of the checkout that must be a real
// directory (not a symbolic link). A missing directory is empty.
func readDir(root *os.Root, rel string) ([]fs.DirEntry, error) {
	fi, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, sysexits.New(sysexits.IOErr, fmt.Errorf("read checkout: %w", err))
	}
	if !fi.IsDir() {
		return nil, sysexits.Errorf(sysexits.DataErr, "checkout: %s is not a directory (symbolic links are refused)", rel)
	}
	d, err := root.Open(rel)
	if err != nil {
		return nil, sysexits.New(sysexits.IOErr, fmt.Errorf("read checkout: %w", err))
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, sysexits.New(sysexits.IOErr, fmt.Errorf("read checkout %s: %w", rel, err))
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// readTree reads the site files and snippets of the checkout. Files that
// may not be installed carry a problem; selected ones are reported.
func readTree(root *os.Root) (*tree, error) {
	t := &tree{}
	entries, err := readDir(root, SitesDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, e := range entries {
		base := e.Name()
		disabled := strings.HasSuffix(base, DisabledSuffix)
		stem := strings.TrimSuffix(base, DisabledSuffix)
		var name string
		for _, suf := range siteSuffixes {
			if n, ok := strings.CutSuffix(stem, suf); ok {
				name = n
				break
			}
		}
		if name == "" || e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			continue // not a site file
		}
		if disabled {
			t.disabled = append(t.disabled, name)
			continue
		}
		rel := path.Join(SitesDir, base)
		f := file{name: name, rel: rel}
		switch {
		case !ValidSiteName(name):
			f.problem = fmt.Sprintf("site name %q is not allowed: use lower-case DNS labels (a-z, 0-9, -) joined by dots", name)
		case seen[name] != "":
			f.problem = fmt.Sprintf("both %s and %s define the site", seen[name], rel)
		default:
			f.data, err = readSmall(root, rel)
			if err != nil {
				f.problem = refusal(err)
			}
		}
		if seen[name] == "" {
			seen[name] = rel
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

	entries, err = readDir(root, SnippetsDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		base := e.Name()
		if e.IsDir() && e.Type()&fs.ModeSymlink == 0 || strings.HasPrefix(base, ".") {
			continue
		}
		rel := path.Join(SnippetsDir, base)
		f := file{name: base, rel: rel}
		if len(base) > 128 || !snippetRE.MatchString(base) {
			f.problem = fmt.Sprintf("snippet name %q is not allowed: use letters, digits, \"-\", \"_\" and single dots", base)
		} else if f.data, err = readSmall(root, rel); err != nil {
			f.problem = refusal(err)
		}
		t.snippets = append(t.snippets, f)
	}
	return t, nil
}

// refusal turns an error of reading a checkout file into a reason.
func refusal(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok && strings.Contains(pe.Err.Error(), "escapes") {
		return "path escapes the checkout"
	}
	return err.Error()
}
