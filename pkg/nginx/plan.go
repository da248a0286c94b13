package nginx

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// onDisk is what a plan needs to know of the host, read by look before
// planning, so that plan itself touches nothing.
type onDisk struct {
	// files holds each path the plan may install or remove: absent when
	// there is no such file.
	files map[string]diskFile
	// certs holds, by site name, its certificate (cert_dir/NAME/fullchain.pem).
	certs map[string]diskCert
}

// diskFile is an installed path as found: err is Lstat's error other
// than "no such file"; a regular file's content is data, or readErr.
type diskFile struct {
	err     error
	regular bool
	data    []byte
	readErr error
}

// diskCert is a site's certificate as found: missing, unreadable (err:
// stat's error other than "no such file"), or present, with cert its
// parsed first certificate (nil when dh-nginx may not read it, or it is
// not a certificate: nginx -t checks it then).
type diskCert struct {
	missing bool
	err     error
	cert    *x509.Certificate
}

// look reads what plan needs: every path the commit's files or the
// manifest name, and the certificate of every site d selects.
func (in *Installer) look(d *config.Deployment, t *tree, m *Manifest) onDisk {
	disk := onDisk{files: map[string]diskFile{}, certs: map[string]diskCert{}}
	var paths []string
	for _, s := range t.sites {
		if d.SelectsSite(s.name) && ValidSiteName(s.name) {
			paths = append(paths, filepath.Join(in.cfg.Nginx.ConfDir, s.name+".conf"))
			disk.certs[s.name] = readCert(filepath.Join(in.cfg.Nginx.CertDir, s.name, "fullchain.pem"))
		}
	}
	for _, s := range t.snippets {
		paths = append(paths, filepath.Join(in.cfg.Nginx.SnippetsDir, s.name))
	}
	paths = append(paths, slices.Collect(maps.Keys(m.Files))...)
	seen := map[string]bool{}
	for _, p := range paths {
		// The manifest names the files installed before, which are most
		// of the commit's: look at each path once.
		if seen[p] {
			continue
		}
		seen[p] = true
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			disk.files[p] = diskFile{err: err}
		case !fi.Mode().IsRegular():
			disk.files[p] = diskFile{}
		default:
			data, err := os.ReadFile(p)
			disk.files[p] = diskFile{regular: true, data: data, readErr: err}
		}
	}
	return disk
}

// readCert reads the certificate at path.
func readCert(path string) diskCert {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return diskCert{missing: true}
		}
		return diskCert{err: err}
	}
	data, err := os.ReadFile(path) // dh-nginx may only have search access to the live directory
	if err != nil {
		return diskCert{}
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return diskCert{}
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return diskCert{}
	}
	return diskCert{cert: cert}
}

// uncovered returns the names c does not cover, or nil when it covers
// them all or could not be read.
func (c diskCert) uncovered(names []string) []string {
	if c.cert == nil {
		return nil
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(c.cert.DNSNames, n) && c.cert.VerifyHostname(strings.Replace(n, "*", "x", 1)) != nil {
			missing = append(missing, n)
		}
	}
	return missing
}

// planned is what converging a deployment does: the journal of changes
// to make, the manifest once they are made, the result to report, and the
// certificates to ask dh-cert for.
type planned struct {
	journal *journal
	next    *Manifest
	res     *Result
	certs   []certWanted
}

// certWanted is a certificate a site needs: missing, or (missing set) not
// covering every name of the site.
type certWanted struct {
	site    string
	domains []string
	missing []string
}

// plan decides, without touching the disk, how to bring d's installed
// files to commit: from the commit's tree t, the manifest m of what
// dh-nginx installed, the files that drifted since, and what look found
// on disk. Sites d does not select are ignored; a site or snippet that is
// refused (its name, a problem reading it, the site policy, too many
// names) or waits for its certificate keeps its installed file as it is;
// a file in the way that dh-nginx does not manage is a conflict, left
// alone; files of the manifest the commit no longer has are removed. Its
// only errors are a certificate directory it may not search, and a path
// it could not inspect.
func plan(cfg *config.Config, d *config.Deployment, commit string, t *tree, m *Manifest, drifted map[string]string, disk onDisk) (*planned, error) {
	p := &planned{
		journal: &journal{Deployment: d.Name, Commit: commit},
		next:    &Manifest{Deployment: d.Name, Commit: commit, Files: map[string]string{}},
		res:     &Result{Outcome: store.NginxSucceeded},
	}
	res := p.res
	for _, path := range slices.Sorted(maps.Keys(drifted)) {
		res.Drift = append(res.Drift, path+": "+drifted[path])
	}
	desired, held, err := p.wanted(cfg, d, t, disk)
	if err != nil {
		return nil, err
	}
	j, next := p.journal, p.next
	for _, dest := range slices.Sorted(maps.Keys(desired)) {
		data := desired[dest]
		_, managed := m.Files[dest]
		f, exists := disk.files[dest]
		switch {
		case !exists:
			j.Changes = append(j.Changes, change{Path: dest, data: data})
			res.Installed = append(res.Installed, dest)
		case f.err != nil:
			return nil, ioFailure(fmt.Errorf("inspect %s: %w", dest, f.err))
		case !f.regular:
			res.Conflicts = append(res.Conflicts, dest)
			continue
		case f.readErr != nil:
			return nil, ioFailure(fmt.Errorf("read %s: %w", dest, f.readErr))
		default:
			same := string(f.data) == string(data)
			switch {
			case same && !managed:
				res.Adopted = append(res.Adopted, dest)
			case same && drifted[dest] == "":
			case !managed:
				res.Conflicts = append(res.Conflicts, dest)
				continue
			default:
				j.Changes = append(j.Changes, change{Path: dest, data: data})
				res.Installed = append(res.Installed, dest)
			}
		}
		next.Files[dest] = digest(data)
	}
	for _, dest := range slices.Sorted(maps.Keys(m.Files)) {
		if _, ok := desired[dest]; ok {
			continue
		}
		if held[dest] {
			next.Files[dest] = m.Files[dest]
			continue
		}
		if f, ok := disk.files[dest]; ok && f.err == nil {
			j.Changes = append(j.Changes, change{Path: dest, Remove: true})
			res.Removed = append(res.Removed, dest)
		}
	}
	if len(res.Rejected) > 0 || len(res.Conflicts) > 0 {
		res.Outcome = store.NginxPartial
	}
	return p, nil
}

// wanted sorts the commit's sites and snippets into what should be
// installed (desired: installed path → content) and what keeps its
// installed file as it is (held), noting refusals, pending sites and the
// certificates to ask for in p.
func (p *planned) wanted(cfg *config.Config, d *config.Deployment, t *tree, disk onDisk) (desired map[string][]byte, held map[string]bool, err error) {
	desired, held = map[string][]byte{}, map[string]bool{}
	res := p.res
	policy, refusedSnippets := sitePolicy(cfg, d, t.snippets)
	for _, s := range t.sites {
		if !d.SelectsSite(s.name) {
			continue
		}
		if !ValidSiteName(s.name) {
			// Such a name never comes near a path.
			res.Rejected = append(res.Rejected, fmt.Sprintf("%s: %s", s.rel, s.problem))
			continue
		}
		dest := filepath.Join(cfg.Nginx.ConfDir, s.name+".conf")
		if s.problem != "" {
			res.Rejected = append(res.Rejected, fmt.Sprintf("%s: %s", s.rel, s.problem))
			held[dest] = true
			continue
		}
		info, err := ParseSite(s.data)
		if err == nil {
			err = policy.CheckSite(s.name, s.data)
		}
		if err != nil {
			res.Rejected = append(res.Rejected, fmt.Sprintf("%s: %v", s.rel, err))
			held[dest] = true
			continue
		}
		if info.TLS {
			if len(info.Names) > 100 {
				res.Rejected = append(res.Rejected, fmt.Sprintf("%s: %d server names; a certificate covers at most 100", s.rel, len(info.Names)))
				held[dest] = true
				continue
			}
			c := disk.certs[s.name]
			switch {
			case errors.Is(c.err, fs.ErrPermission):
				// c.err is fs.ErrPermission: exit 77.
				return nil, nil, hint.With(fmt.Errorf("site %s: check certificate: %w", s.name, c.err),
					"dh-nginx needs search access to the certificate directories: setfacl -m u:dh-nginx:x /etc/letsencrypt/live /etc/letsencrypt/archive")
			case c.err != nil:
				return nil, nil, ioFailure(fmt.Errorf("site %s: check certificate: %w", s.name, c.err))
			case c.missing:
				p.certs = append(p.certs, certWanted{site: s.name, domains: info.Names})
				res.Pending = append(res.Pending, s.name)
				held[dest] = true
				continue
			}
			if missing := c.uncovered(info.Names); len(missing) > 0 {
				p.certs = append(p.certs, certWanted{site: s.name, domains: info.Names, missing: missing})
			}
		}
		desired[dest] = s.data
	}
	for _, s := range t.snippets {
		dest := filepath.Join(cfg.Nginx.SnippetsDir, s.name)
		if why, ok := refusedSnippets[s.name]; ok && s.problem == "" {
			s.problem = why
		}
		if s.problem != "" {
			res.Rejected = append(res.Rejected, fmt.Sprintf("%s: %s", s.rel, s.problem))
			if snippetRE.MatchString(s.name) {
				held[dest] = true
			}
			continue
		}
		desired[dest] = s.data
	}
	return desired, held, nil
}
