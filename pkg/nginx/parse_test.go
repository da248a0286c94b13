package nginx

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

func TestParseSite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		names []string
		tls   bool
		err   string // a part of the error; "" for none
	}{
		{name: "simple", src: "server { server_name a.test; }", names: []string{"a.test"}},
		{name: "several names and blocks", src: `
server {
    listen 80;
    server_name a.test www.a.test; # a comment with server_name evil.test;
    location / { return 301 https://$host$request_uri; }
}
server {
    listen 443 ssl;
    server_name "a.test" 'api.a.test' *.a.test;
    ssl_certificate /etc/letsencrypt/live/a.test/fullchain.pem;
    include snippets/ssl.conf;
}`, names: []string{"a.test", "www.a.test", "api.a.test", "*.a.test"}, tls: true},
		{name: "quoted braces", src: `server { server_name a.test; return 200 "{ } ; server_name b.test;"; }`, names: []string{"a.test"}},
		{name: "comment only in string", src: `server { server_name a.test; add_header X "#not a comment"; }`, names: []string{"a.test"}},
		{name: "upstream and map", src: "upstream app { server 127.0.0.1:3000; }\nmap $a $b { default 1; }\nserver { server_name a.test; }", names: []string{"a.test"}},
		{name: "no server", src: "# nothing\n", err: "no server block"},
		{name: "server without server_name", src: "server { server_name a.test; }\nserver { listen 80; }", err: "server block at line 2 has no server_name"},
		{name: "empty name", src: `server { server_name ""; }`, err: "empty name"},
		{name: "regex", src: `server { server_name ~^www\d+\.a\.test$; }`, err: "regular expression"},
		{name: "catch-all", src: `server { server_name _; }`, err: "not a valid DNS name"},
		{name: "leading dot", src: `server { server_name .a.test; }`, err: "leading dot"},
		{name: "variable", src: `server { server_name $hostname; }`, err: "variables"},
		{name: "shell", src: "server { server_name \"a.test;rm -rf /\"; }", err: "not a valid DNS name"},
		{name: "dotdot", src: "server { server_name a..test; }", err: "not a valid DNS name"},
		{name: "wildcard in the middle", src: "server { server_name a.*.test; }", err: "not a valid DNS name"},
		{name: "unterminated quote", src: `server { server_name "a.test; }`, err: "unterminated"},
		{name: "unclosed block", src: `server { server_name a.test;`, err: "not closed"},
		{name: "stray brace", src: `server { server_name a.test; } }`, err: "unexpected"},
		{name: "missing semicolon", src: `server { server_name a.test }`, err: "no closing"},
		{name: "server_name outside server", src: `server_name a.test;`, err: "outside a server block"},
	} {
		info, err := ParseSite([]byte(tc.src))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: ParseSite() = %+v, %v; want an error saying %q", tc.name, info, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(info.Names, tc.names) || info.TLS != tc.tls {
			t.Errorf("%s: ParseSite() = %+v, %v; want names %q, tls %v", tc.name, info, err, tc.names, tc.tls)
		}
	}
}

// FuzzParseSite: ParseSite never panics; a site it accepts has names,
// each a valid DNS name a certificate can cover (event.ValidDomain, no
// quote, space, ";", "/", "$" or "\\"), without duplicates; TLS only when
// the text mentions ssl_certificate; parsing is deterministic, and the
// names written back as one server block parse to the same names. Seeds:
// testdata/fuzz/FuzzParseSite (site files as operators write them) and
// a site for each fixture repository.
func FuzzParseSite(f *testing.F) {
	f.Add([]byte("server { server_name a.test; ssl_certificate x; }"))
	f.Add([]byte(`server { server_name "a.test" 'b.test'; # c` + "\n}"))
	for _, fx := range testenv.Fixtures(f) {
		if owner, name, ok := strings.Cut(strings.ToLower(fx.Repository), "/"); ok {
			f.Add([]byte(fmt.Sprintf("server {\n  listen 443 ssl;\n  server_name %s.%s.test www.%[1]s.%[2]s.test;\n  ssl_certificate /etc/letsencrypt/live/%[1]s/fullchain.pem;\n  location / { proxy_pass http://127.0.0.1:3000; }\n}\n", name, owner)))
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		info, err := ParseSite(src)
		again, err2 := ParseSite(src)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) || !slices.Equal(info.Names, again.Names) || info.TLS != again.TLS {
			t.Fatalf("ParseSite(%q) = %+v, %v; then %+v, %v", src, info, err, again, err2)
		}
		if err != nil {
			if info.Names != nil || info.TLS {
				t.Fatalf("ParseSite(%q) = %+v with error %v; want an empty SiteInfo", src, info, err)
			}
			return
		}
		if len(info.Names) == 0 {
			t.Fatalf("ParseSite(%q) accepted a site without names", src)
		}
		for i, n := range info.Names {
			if checkName(n) != nil || !event.ValidDomain(n) || strings.ContainsAny(n, "/;$ \"'\\\x00") {
				t.Fatalf("ParseSite(%q) accepted the name %q", src, n)
			}
			if slices.Contains(info.Names[:i], n) {
				t.Fatalf("ParseSite(%q) = %q; %q twice", src, info.Names, n)
			}
		}
		if info.TLS && !bytes.Contains(src, []byte("ssl_certificate")) && !bytes.Contains(src, []byte("\\")) && !bytes.Contains(src, []byte("'")) && !bytes.Contains(src, []byte(`"`)) {
			t.Fatalf("ParseSite(%q) says TLS without an ssl_certificate directive", src)
		}
		canon := "server {\n\tserver_name " + strings.Join(info.Names, " ") + ";\n}\n"
		back, err := ParseSite([]byte(canon))
		if err != nil || !slices.Equal(back.Names, info.Names) || back.TLS {
			t.Fatalf("ParseSite(%q) = %+v, %v; want the names %q of %q", canon, back, err, info.Names, src)
		}
	})
}
