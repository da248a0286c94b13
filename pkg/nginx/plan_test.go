package nginx

import (
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// plan is pure: from a commit's tree, the manifest and what look found on
// disk it decides every change, with no file system at all (the paths
// below exist nowhere).
func TestPlan(t *testing.T) {
	cfg := config.Default()
	cfg.Nginx.ConfDir, cfg.Nginx.SnippetsDir, cfg.Nginx.CertDir = "/nowhere/conf.d", "/nowhere/snippets", "/nowhere/live"
	d := &config.Deployment{Name: "web", Kind: config.KindNginx, Domains: []string{"*.example.test"},
		Sites: []config.SiteRule{{Rule: "include", Select: []string{"*"}}, {Rule: "exclude", Select: []string{"skip.example.test"}}}}
	site := func(name string) []byte {
		return []byte("server {\n    server_name " + name + ";\n}\n")
	}
	tls := func(name string) []byte {
		return []byte("server {\n    listen 443 ssl;\n    server_name " + name + ";\n    ssl_certificate /nowhere/live/" + name +
			"/fullchain.pem;\n    ssl_certificate_key /nowhere/live/" + name + "/privkey.pem;\n}\n")
	}
	conf := func(name string) string { return "/nowhere/conf.d/" + name + ".conf" }
	tr := &tree{
		sites: []file{
			{name: "new.example.test", data: site("new.example.test")},
			{name: "same.example.test", data: site("same.example.test")},
			{name: "changed.example.test", data: site("changed.example.test")},
			{name: "theirs.example.test", data: site("theirs.example.test")},
			{name: "bad.example.test", data: []byte("server {\n    server_name login.victim.test;\n}\n")},
			{name: "tls.example.test", data: tls("tls.example.test")},
			{name: "skip.example.test", data: site("skip.example.test")},
		},
		snippets: []file{{name: "gzip.conf", data: []byte("gzip on;\n")}},
	}
	m := &Manifest{Deployment: "web", Files: map[string]string{
		conf("changed.example.test"): digest([]byte("old")),
		conf("bad.example.test"):     digest([]byte("old bad")),
		conf("tls.example.test"):     digest([]byte("old tls")),
		conf("gone.example.test"):    digest([]byte("gone")),
	}}
	disk := onDisk{
		files: map[string]diskFile{
			conf("same.example.test"):    {regular: true, data: site("same.example.test")},
			conf("changed.example.test"): {regular: true, data: []byte("old")},
			conf("theirs.example.test"):  {regular: true, data: []byte("someone else's")},
			conf("bad.example.test"):     {regular: true, data: []byte("old bad")},
			conf("tls.example.test"):     {regular: true, data: []byte("old tls")},
			conf("gone.example.test"):    {regular: true, data: []byte("gone")},
		},
		certs: map[string]diskCert{"tls.example.test": {missing: true}},
	}
	p, err := plan(cfg, d, "c0ffee", tr, m, nil, disk)
	if err != nil {
		t.Fatalf("plan() = %v", err)
	}
	res := p.res
	if want := []string{conf("changed.example.test"), conf("new.example.test"), "/nowhere/snippets/gzip.conf"}; !slices.Equal(res.Installed, want) {
		t.Errorf("Installed = %v; want %v", res.Installed, want)
	}
	if want := []string{conf("gone.example.test")}; !slices.Equal(res.Removed, want) {
		t.Errorf("Removed = %v; want %v", res.Removed, want)
	}
	if want := []string{conf("same.example.test")}; !slices.Equal(res.Adopted, want) {
		t.Errorf("Adopted = %v; want %v", res.Adopted, want)
	}
	if want := []string{conf("theirs.example.test")}; !slices.Equal(res.Conflicts, want) {
		t.Errorf("Conflicts = %v; want %v", res.Conflicts, want)
	}
	if want := []string{"tls.example.test"}; !slices.Equal(res.Pending, want) || len(p.certs) != 1 || p.certs[0].site != "tls.example.test" {
		t.Errorf("Pending = %v, certs %+v; want %v and its certificate asked for", res.Pending, p.certs, want)
	}
	if len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0], "login.victim.test") || res.Outcome != store.NginxPartial {
		t.Errorf("Rejected = %q, outcome %s; want bad.example.test refused, partial", res.Rejected, res.Outcome)
	}
	var changes []string
	for _, c := range p.journal.Changes {
		changes = append(changes, c.Path)
	}
	if want := append(slices.Clone(res.Installed), res.Removed...); !slices.Equal(changes, want) {
		t.Errorf("journal changes %v; want %v", changes, want)
	}
	// The refused and pending sites keep what is installed; the skipped
	// and removed ones leave the manifest; the conflict never enters it.
	for path, want := range map[string]string{
		conf("bad.example.test"):  digest([]byte("old bad")),
		conf("tls.example.test"):  digest([]byte("old tls")),
		conf("same.example.test"): digest(site("same.example.test")),
		conf("new.example.test"):  digest(site("new.example.test")),
	} {
		if got := p.next.Files[path]; got != want {
			t.Errorf("next manifest[%s] = %.12s; want %.12s", path, got, want)
		}
	}
	for _, path := range []string{conf("gone.example.test"), conf("theirs.example.test"), conf("skip.example.test")} {
		if _, ok := p.next.Files[path]; ok {
			t.Errorf("next manifest holds %s", path)
		}
	}
	if p.next.Commit != "c0ffee" || p.journal.Commit != "c0ffee" {
		t.Errorf("next manifest and journal at %q, %q; want c0ffee", p.next.Commit, p.journal.Commit)
	}
}
