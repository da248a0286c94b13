package nginx

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// testPolicy is the policy of deployment "web" that testdata/policy's
// sites are checked against.
func testPolicy(t testing.TB) *Policy {
	t.Helper()
	cfg := config.Default()
	d := &config.Deployment{Name: "web", Kind: config.KindNginx,
		Domains:   []string{"example.test", "*.example.test"},
		Serve:     []string{"/srv/www/example"},
		Upstreams: []string{"app.example.test:8080", "127.0.0.1:3000", "unix:/run/app/app.sock"}}
	return NewPolicy(cfg, d, map[string][]byte{
		"ssl-params.conf": []byte("ssl_protocols TLSv1.2 TLSv1.3;\nssl_session_cache shared:SSL:10m;\n"),
		"proxy.conf":      []byte("proxy_set_header Host $host;\nproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"),
		"evil.conf":       []byte("access_log /etc/sudoers.d/zz;\n"),
		"nest.conf":       []byte("include /etc/nginx/snippets/evil.conf;\n"),
		"loop.conf":       []byte("include snippets/loop.conf;\n"),
	})
}

// checkSite is what a converge does with a selected site: ParseSite, then
// the policy.
func checkSite(p *Policy, site string, src []byte) error {
	if _, err := ParseSite(src); err != nil {
		return err
	}
	return p.CheckSite(site, src)
}

// TestSitePolicyCatalogue checks each site of testdata/policy: its first
// line says "# want: ok" or "# want: " and a part of the refusal.
func TestSitePolicyCatalogue(t *testing.T) {
	files, _ := filepath.Glob("testdata/policy/*.conf")
	if len(files) < 50 {
		t.Fatalf("%d files in testdata/policy; want the whole catalogue", len(files))
	}
	p := testPolicy(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(src), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q; want \"# want: ...\"", first)
			}
			err = checkSite(p, "www.example.test", src)
			switch {
			case want == "ok" && err != nil:
				t.Errorf("CheckSite() = %v; want it accepted", err)
			case want != "ok" && err == nil:
				t.Errorf("CheckSite() accepted it; want %q", want)
			case want != "ok" && !strings.Contains(err.Error(), want):
				t.Errorf("CheckSite() = %v; want it to contain %q", err, want)
			}
		})
	}
}

func TestSitePolicyDeployment(t *testing.T) {
	site := []byte("server {\n    server_name www.example.test;\n}\n")
	p := testPolicy(t)
	if err := p.CheckSite("login.victim.test", site); err == nil || !strings.Contains(err.Error(), `the site's name "login.victim.test" (its certificate's name) is not inside deployments.web.domains`) {
		t.Errorf("CheckSite(login.victim.test) = %v; want the site's name refused", err)
	}
	p.d.Domains = nil
	if err := p.CheckSite("www.example.test", site); err == nil || !strings.Contains(err.Error(), "deployments.web has no domains") {
		t.Errorf("CheckSite() without domains = %v; want every site refused", err)
	}
	// unsafe_directives widens the allowlist, arguments unchecked.
	p = testPolicy(t)
	ssi := []byte("server {\n    server_name www.example.test;\n    ssi on;\n}\n")
	if err := p.CheckSite("www.example.test", ssi); err == nil || !strings.Contains(err.Error(), `"ssi": not allowed by the site policy`) {
		t.Errorf("CheckSite(ssi) = %v; want ssi refused", err)
	}
	p.d.UnsafeDirectives = []string{"ssi"}
	if err := p.CheckSite("www.example.test", ssi); err != nil {
		t.Errorf("CheckSite(ssi) with unsafe_directives = [\"ssi\"]: %v", err)
	}
}

func TestSnippetPolicy(t *testing.T) {
	cfg := config.Default()
	d := &config.Deployment{Name: "web", Kind: config.KindNginx, Domains: []string{"*.example.test"}}
	p, refused := sitePolicy(cfg, d, []file{
		{name: "ok.conf", data: []byte("gzip on;\nlocation /x/ { return 404; }\n")},
		{name: "log.conf", data: []byte("access_log /etc/sudoers.d/zz;\n")},
		{name: "cert.conf", data: []byte("ssl_certificate /etc/letsencrypt/live/www.example.test/fullchain.pem;\n")},
		{name: "name.conf", data: []byte("server_name evil.test;\n")},
		{name: "server.conf", data: []byte("server { server_name evil.test; }\n")},
		{name: "broken.conf", problem: "a symbolic link"},
	})
	for name, want := range map[string]string{
		"log.conf":    `"/etc/sudoers.d/zz" is outside`,
		"cert.conf":   "certificates belong in the site file itself",
		"name.conf":   "belongs in a server block of the site file itself",
		"server.conf": `a "server" block is not allowed here`,
	} {
		if !strings.Contains(refused[name], want) {
			t.Errorf("snippet %s: refused %q; want %q", name, refused[name], want)
		}
	}
	if _, ok := refused["ok.conf"]; ok || len(refused) != 4 {
		t.Errorf("refused %v; want exactly the four bad snippets", refused)
	}
	// A site may not include a refused snippet.
	site := []byte("server {\n    server_name www.example.test;\n    include snippets/log.conf;\n    include snippets/ok.conf;\n}\n")
	if err := p.CheckSite("www.example.test", site); err == nil || !strings.Contains(err.Error(), `"snippets/log.conf" is not a snippet of this deployment`) {
		t.Errorf("CheckSite(include a refused snippet) = %v", err)
	}
}

// TestRefusedSiteWritesNothing drives a real converge with the real nginx
// (nginxtest): a site from the attack catalogue of issue 14 is refused
// before anything is written: conf.d and snippets stay empty, the file it
// names is not created (nginx -t, which opens log files, never ran), nginx
// is not reloaded, and the refusal is in the install history.
func TestRefusedSiteWritesNothing(t *testing.T) {
	r := newRig(t, all)
	target := filepath.Join(r.dir, "sudoers.d-zz")
	keys := filepath.Join(r.dir, "authorized_keys")
	e := r.commit(map[string]string{
		"production/evil.example.test.conf": "log_format x escape=none 'ALL ALL=(ALL:ALL) NOPASSWD: ALL';\n" +
			r.site("evil.example.test", "evil")[:len(r.site("evil.example.test", "evil"))-2] + "    access_log " + target + " x;\n}\n",
		"production/keys.example.test.conf":   strings.Replace(r.site("keys.example.test", "keys"), "return", "access_log "+keys+";\n    return", 1),
		"production/hijack.example.test.conf": r.site("hijack.example.test api.victim", "hijack"),
		"production/proxy.example.test.conf": strings.Replace(r.site("proxy.example.test", "p"), "return 200 \"p\";",
			"location /internal/ { proxy_pass http://127.0.0.1:3401/; }", 1),
		"production/alias.example.test.conf": strings.Replace(r.site("alias.example.test", "a"), "return 200 \"a\";",
			"location /x/ { alias /srv/; autoindex on; }", 1),
		"production/glob.example.test.conf": strings.Replace(r.site("glob.example.test", "g"), "return", "include "+r.checkout+"/inc/*.conf;\n    return", 1),
		"inc/x.conf":                        "# harmless today\n",
	})
	res, err := r.in.Converge(ctx, e)
	if err == nil {
		t.Fatalf("Converge() = %+v, nil; want the sites refused", res)
	}
	if got := r.confFiles(); len(got) != 0 {
		t.Errorf("files written: %v; want none", got)
	}
	for _, f := range []string{target, keys} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s exists (stat: %v): the configuration was tested or loaded", f, err)
		}
	}
	if r.in.reloadPending() {
		t.Error("a reload is pending")
	}
	row := r.lastInstall()
	if row.Outcome != store.NginxPartial || len(row.Installed) != 0 || len(row.Rejected) != 6 {
		t.Fatalf("install row %+v; want partial, nothing installed, 6 refused", row)
	}
	for _, want := range []string{
		`production/evil.example.test.conf: line 1: "log_format": never allowed in a site`,
		`production/keys.example.test.conf: line 5: "access_log": "` + keys + `" is outside`,
		`production/hijack.example.test.conf: line 4: "server_name": "api.victim" is not inside deployments.sites.domains`,
		`production/proxy.example.test.conf: line 5: "proxy_pass": loopback upstream 127.0.0.1:3401 is not in deployments.sites.upstreams`,
		`production/alias.example.test.conf: line 5: "alias": "/srv/": no directory is allowed (deployments.sites.serve)`,
		`production/glob.example.test.conf: line 5: "include": "` + r.checkout + `/inc/*.conf": glob includes are not allowed`,
	} {
		if !strings.Contains(strings.Join(row.Rejected, "\n"), want) {
			t.Errorf("rejected %q; want %q", row.Rejected, want)
		}
	}
	r.waitHTTP("proxy.example.test", "none")
}

// TestPolicySitesInstall: sites using served directories, logs, upstreams
// and snippets within the deployment's roots install and serve.
func TestPolicySitesInstall(t *testing.T) {
	r := newPolicyRig(t, all, "")
	serve := filepath.Join(r.dir, "www")
	if err := os.MkdirAll(serve, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := *r.cfg
	cfg.Nginx.LogDir = filepath.Join(r.dir, "logs")
	d := *r.cfg.Deployments["sites"]
	d.Serve = []string{serve}
	cfg.Deployments = map[string]*config.Deployment{"sites": &d}
	if err := os.MkdirAll(cfg.Nginx.SiteLogDir("sites"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.in = New(&cfg, r.st, Options{WaitLock: true})
	site := strings.Replace(r.site("root.example.test", "from-root"), "return",
		"root "+serve+";\n    access_log "+filepath.Join(cfg.Nginx.SiteLogDir("sites"), "access.log")+";\n    include "+r.srv.SnippetsDir+"/hdr.conf;\n    return", 1)
	e := r.commit(map[string]string{
		"production/root.example.test.conf": site,
		"snippets/hdr.conf":                 "add_header X-Site root;\n",
	})
	if res, err := r.in.Converge(ctx, e); err != nil {
		t.Fatalf("Converge() = %+v, %v", res, err)
	}
	r.waitHTTP("root.example.test", "from-root")
}

// FuzzSitePolicy: parsing and checking never panic, and an accepted site
// never names a path outside the deployment's roots, a directive outside
// the allowlist, or an include of anything but its snippets.
func FuzzSitePolicy(f *testing.F) {
	files, _ := filepath.Glob("testdata/policy/*.conf")
	for _, file := range files {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(src)
		}
	}
	p := testPolicy(f)
	roots := map[argCheck][]string{
		servePath: {"/srv/www/example/", "/srv/www/example"},
		logPath:   {"/var/log/nginx/web/"},
		certPath:  {"/etc/letsencrypt/live/example.test/", "/etc/letsencrypt/live/"},
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if checkSite(p, "www.example.test", src) != nil {
			return
		}
		nodes, err := parseTree(src)
		if err != nil {
			t.Fatalf("accepted, but parseTree() = %v", err)
		}
		var walk func(ns []*node, inUpstream bool)
		walk = func(ns []*node, inUpstream bool) {
			for _, n := range ns {
				if n.block {
					walk(n.children, n.name == "upstream" || n.name == "types")
					continue
				}
				if inUpstream {
					continue
				}
				check, ok := allowed[n.name]
				if !ok {
					t.Fatalf("accepted directive %q outside the allowlist", n.name)
				}
				if len(n.args) == 0 {
					continue
				}
				arg := n.args[0].text
				switch check {
				case servePath, logPath, certPath:
					if arg == "off" && n.name == "access_log" {
						continue
					}
					c := filepath.Clean(arg)
					if !strings.HasPrefix(arg, "/") || strings.ContainsAny(arg, "$\\") || strings.Contains(arg, "/../") ||
						!slices.ContainsFunc(roots[check], func(r string) bool {
							return c == strings.TrimSuffix(r, "/") && check == servePath || strings.HasPrefix(c, r)
						}) {
						t.Fatalf("accepted %s %q outside its roots", n.name, arg)
					}
					if check == certPath && !strings.HasPrefix(c, "/etc/letsencrypt/live/example.test/") && !strings.HasSuffix(strings.Split(strings.TrimPrefix(c, "/etc/letsencrypt/live/"), "/")[0], ".example.test") {
						t.Fatalf("accepted certificate file %q of a name outside the domains", arg)
					}
				case include:
					if arg != "snippets/ssl-params.conf" && arg != "snippets/proxy.conf" &&
						arg != "/etc/nginx/snippets/ssl-params.conf" && arg != "/etc/nginx/snippets/proxy.conf" {
						t.Fatalf("accepted include %q", arg)
					}
				case pass:
					if strings.Contains(arg, "127.0.0.1:3401") || strings.Contains(arg, "localhost") || strings.Contains(arg, "status.sock") {
						t.Fatalf("accepted %s %q", n.name, arg)
					}
				}
			}
		}
		walk(nodes, false)
	})
}
