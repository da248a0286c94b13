package nginx

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
)

// The site policy: what a repository's site file may make nginx do. nginx
// runs its master as root and reads conf.d as part of its own
// configuration, so a site file could otherwise write any file as root
// (access_log), read any file into the configuration (include), proxy to
// anything the host can reach (proxy_pass to a loopback service) or serve
// any directory (alias). The policy is an allowlist checked on the parsed
// file before anything is written; docs/nginx.md lists it for operators.
//
// Guarantees, for a site that CheckSite accepts:
//   - every directive is in the allowlist below, or in the deployment's
//     unsafe_directives, and every block is server, location, if,
//     limit_except, types or upstream where nginx allows it;
//   - every path-bearing argument is absolute, clean, free of variables
//     and backslashes, and inside a root of this deployment: root, alias
//     and auth_basic_user_file in one of its serve directories, access_log
//     and error_log in log_dir/DEPLOYMENT, ssl_* files in
//     cert_dir/NAME/ for a NAME inside its domains;
//   - include names only a snippet of this same deployment (snippets_dir/
//     FILE, no globs), whose content passes the same checks;
//   - every upstream (proxy_pass, fastcgi_pass, uwsgi_pass, scgi_pass,
//     grpc_pass, memcached_pass, an upstream block's server) is listed in
//     the deployment's upstreams, or is an upstream block of the same file;
//     a variable in an upstream's address is refused;
//   - every server_name, and the site's own name (its certificate's name),
//     falls inside the deployment's domains.

// argCheck is what the policy checks of a directive's arguments.
type argCheck int

const (
	plain     argCheck = iota // anything but control characters
	servePath                 // first argument in a serve directory
	logPath                   // first argument in the log directory, or "off" (access_log)
	certPath                  // first argument in an owned certificate directory
	include                   // a snippet of this deployment
	pass                      // an upstream address (checked by upstream)
	listen                    // no unix: sockets
	names                     // server_name: inside domains
)

// allowed are the directives a site may use in server, location, if and
// limit_except blocks (nginx itself rejects a directive in a context it
// does not belong to), and what is checked of their arguments.
var allowed = map[string]argCheck{
	// Where and what to serve.
	"listen": listen, "server_name": names, "root": servePath, "alias": servePath,
	"index": plain, "try_files": plain, "autoindex": plain, "autoindex_exact_size": plain,
	"autoindex_format": plain, "autoindex_localtime": plain, "internal": plain,
	"disable_symlinks": plain, "default_type": plain, "charset": plain, "source_charset": plain,
	"override_charset": plain, "charset_types": plain, "etag": plain, "if_modified_since": plain,
	"open_file_cache": plain, "open_file_cache_errors": plain, "open_file_cache_min_uses": plain,
	"open_file_cache_valid": plain, "sendfile": plain, "tcp_nopush": plain, "tcp_nodelay": plain,
	"aio": plain, "directio": plain, "output_buffers": plain, "postpone_output": plain, "max_ranges": plain,
	// Rewriting and responses.
	"return": plain, "rewrite": plain, "rewrite_log": plain, "set": plain, "break": plain,
	"error_page": plain, "recursive_error_pages": plain, "add_header": plain, "add_trailer": plain,
	"expires": plain, "absolute_redirect": plain, "port_in_redirect": plain,
	"server_name_in_redirect": plain, "merge_slashes": plain, "server_tokens": plain,
	"log_not_found": plain, "log_subrequest": plain, "chunked_transfer_encoding": plain,
	"sub_filter": plain, "sub_filter_once": plain, "sub_filter_types": plain,
	"sub_filter_last_modified": plain, "ignore_invalid_headers": plain, "underscores_in_headers": plain,
	"valid_referers": plain, "secure_link": plain, "secure_link_md5": plain, "secure_link_secret": plain,
	// Compression.
	"gzip": plain, "gzip_comp_level": plain, "gzip_types": plain, "gzip_vary": plain,
	"gzip_proxied": plain, "gzip_min_length": plain, "gzip_http_version": plain,
	"gzip_disable": plain, "gzip_buffers": plain, "gzip_static": plain, "gunzip": plain,
	// Limits and timeouts.
	"client_max_body_size": plain, "client_body_buffer_size": plain, "client_body_timeout": plain,
	"client_header_timeout": plain, "client_header_buffer_size": plain,
	"large_client_header_buffers": plain, "keepalive_timeout": plain, "keepalive_requests": plain,
	"send_timeout": plain, "limit_req": plain, "limit_req_status": plain, "limit_req_log_level": plain,
	"limit_conn": plain, "limit_conn_status": plain, "limit_conn_log_level": plain,
	"limit_rate": plain, "limit_rate_after": plain,
	// Access.
	"allow": plain, "deny": plain, "satisfy": plain, "auth_basic": plain,
	"auth_basic_user_file": servePath, "auth_request": plain, "auth_request_set": plain,
	"real_ip_header": plain, "set_real_ip_from": plain, "real_ip_recursive": plain,
	// Logs, in log_dir/DEPLOYMENT only; formats are the operator's (log_format is refused).
	"access_log": logPath, "error_log": logPath,
	// TLS, with this deployment's certificates only.
	"ssl_certificate": certPath, "ssl_certificate_key": certPath, "ssl_trusted_certificate": certPath,
	"ssl_client_certificate": certPath, "ssl_dhparam": certPath, "ssl_crl": certPath,
	"ssl_stapling_file": certPath, "ssl_password_file": certPath,
	"ssl_protocols": plain, "ssl_ciphers": plain, "ssl_prefer_server_ciphers": plain,
	"ssl_session_cache": plain, "ssl_session_timeout": plain, "ssl_session_tickets": plain,
	"ssl_stapling": plain, "ssl_stapling_verify": plain, "ssl_ecdh_curve": plain,
	"ssl_buffer_size": plain, "ssl_verify_client": plain, "ssl_verify_depth": plain,
	"ssl_early_data": plain, "ssl_reject_handshake": plain, "http2": plain,
	// Snippets of this deployment.
	"include": include,
	// Proxying, to declared upstreams only.
	"proxy_pass": pass, "fastcgi_pass": pass, "uwsgi_pass": pass, "scgi_pass": pass,
	"grpc_pass": pass, "memcached_pass": pass,
	"proxy_set_header": plain, "proxy_hide_header": plain, "proxy_pass_header": plain,
	"proxy_ignore_headers": plain, "proxy_http_version": plain, "proxy_buffering": plain,
	"proxy_buffer_size": plain, "proxy_buffers": plain, "proxy_busy_buffers_size": plain,
	"proxy_request_buffering": plain, "proxy_read_timeout": plain, "proxy_send_timeout": plain,
	"proxy_connect_timeout": plain, "proxy_redirect": plain, "proxy_cookie_domain": plain,
	"proxy_cookie_path": plain, "proxy_cookie_flags": plain, "proxy_intercept_errors": plain,
	"proxy_next_upstream": plain, "proxy_next_upstream_tries": plain, "proxy_next_upstream_timeout": plain,
	"proxy_ssl_server_name": plain, "proxy_ssl_name": plain, "proxy_ssl_protocols": plain,
	"proxy_ssl_ciphers": plain, "proxy_ssl_session_reuse": plain, "proxy_cache": plain,
	"proxy_cache_valid": plain, "proxy_cache_key": plain, "proxy_cache_bypass": plain,
	"proxy_no_cache": plain, "proxy_cache_methods": plain, "proxy_cache_min_uses": plain,
	"proxy_cache_use_stale": plain, "proxy_cache_lock": plain, "proxy_cache_revalidate": plain,
	"proxy_cache_background_update": plain, "proxy_set_body": plain, "proxy_method": plain,
	"proxy_pass_request_headers": plain, "proxy_pass_request_body": plain,
	"proxy_max_temp_file_size": plain, "proxy_temp_file_write_size": plain,
	"proxy_socket_keepalive": plain, "proxy_limit_rate": plain, "proxy_force_ranges": plain,
	"proxy_headers_hash_max_size": plain, "proxy_headers_hash_bucket_size": plain,
	"fastcgi_param": plain, "fastcgi_index": plain, "fastcgi_split_path_info": plain,
	"fastcgi_read_timeout": plain, "fastcgi_send_timeout": plain, "fastcgi_connect_timeout": plain,
	"fastcgi_buffers": plain, "fastcgi_buffer_size": plain, "fastcgi_buffering": plain,
	"fastcgi_intercept_errors": plain, "fastcgi_hide_header": plain, "fastcgi_pass_header": plain,
	"uwsgi_param": plain, "uwsgi_read_timeout": plain, "scgi_param": plain,
	"grpc_set_header": plain, "grpc_read_timeout": plain, "grpc_send_timeout": plain,
	"grpc_connect_timeout": plain, "memcached_read_timeout": plain,
}

// upstreamAllowed are the directives of an upstream block.
var upstreamAllowed = []string{"server", "keepalive", "keepalive_requests", "keepalive_time",
	"keepalive_timeout", "least_conn", "ip_hash", "hash", "random"}

// blocks are the blocks allowed inside each context. "http" is the top of
// a site file (conf.d is included in nginx's http block); "snippet" is the
// top of a snippet, which may be included in a server or a location.
var blocks = map[string][]string{
	"http":     {"server", "upstream"},
	"server":   {"location", "if", "types"},
	"location": {"location", "if", "limit_except", "types"},
	"snippet":  {"location", "if", "limit_except", "types"},
}

// maxIncludeDepth bounds nested snippet includes (and so cycles).
const maxIncludeDepth = 4

// node is one directive of a parsed configuration, with its block's
// directives if it has one.
type node struct {
	name     string
	args     []token
	line     int
	block    bool
	children []*node
}

// parseTree parses a configuration into its directives.
func parseTree(src []byte) ([]*node, error) {
	toks, err := tokenize(string(src))
	if err != nil {
		return nil, err
	}
	root := &node{block: true}
	stack := []*node{root}
	var words []token
	for _, t := range toks {
		top := stack[len(stack)-1]
		if !t.quoted {
			switch t.text {
			case ";":
				if len(words) > 0 {
					top.children = append(top.children, &node{name: words[0].text, args: slices.Clone(words[1:]), line: words[0].line})
				}
				words = words[:0]
				continue
			case "{":
				if len(words) == 0 {
					return nil, fmt.Errorf("line %d: unexpected \"{\"", t.line)
				}
				n := &node{name: words[0].text, args: slices.Clone(words[1:]), line: words[0].line, block: true}
				top.children = append(top.children, n)
				stack = append(stack, n)
				words = words[:0]
				continue
			case "}":
				if len(words) > 0 {
					return nil, fmt.Errorf("line %d: directive %q has no closing \";\"", words[0].line, words[0].text)
				}
				if len(stack) == 1 {
					return nil, fmt.Errorf("line %d: unexpected \"}\"", t.line)
				}
				stack = stack[:len(stack)-1]
				continue
			}
		}
		words = append(words, t)
	}
	if len(words) > 0 {
		return nil, fmt.Errorf("line %d: directive %q has no closing \";\"", words[0].line, words[0].text)
	}
	if len(stack) > 1 {
		return nil, fmt.Errorf("line %d: block %q is not closed", stack[len(stack)-1].line, stack[len(stack)-1].name)
	}
	return root.children, nil
}

// Policy is the site policy of one nginx deployment.
type Policy struct {
	d           *config.Deployment
	certDir     string
	logDir      string
	snippetsDir string
	// relSnippets is the relative prefix nginx resolves into snippetsDir
	// ("snippets/" when snippets_dir is beside conf_dir), or "".
	relSnippets string
	snippets    map[string][]byte // the deployment's snippets, by file name
}

// NewPolicy returns the policy of deployment d under cfg; snippets are the
// deployment's snippets by file name, the only files its sites may
// include.
func NewPolicy(cfg *config.Config, d *config.Deployment, snippets map[string][]byte) *Policy {
	p := &Policy{d: d, certDir: filepath.Clean(cfg.Nginx.CertDir), logDir: cfg.Nginx.SiteLogDir(d.Name),
		snippetsDir: filepath.Clean(cfg.Nginx.SnippetsDir), snippets: snippets}
	if p.snippetsDir == filepath.Join(filepath.Dir(filepath.Clean(cfg.Nginx.ConfDir)), "snippets") {
		p.relSnippets = "snippets/"
	}
	return p
}

// CheckSite checks the site file named site (its file name without the
// extension, also its certificate's name) against the policy. The error
// names the line and the directive.
func (p *Policy) CheckSite(site string, src []byte) error {
	if len(p.d.Domains) == 0 {
		return fmt.Errorf("deployments.%s has no domains: nothing is installed until the configuration lists the names its sites may serve (domains = [\"example.org\", \"*.example.org\"])", p.d.Name)
	}
	if !p.d.OwnsName(site) {
		return fmt.Errorf("the site's name %q (its certificate's name) is not inside deployments.%s.domains", site, p.d.Name)
	}
	nodes, err := parseTree(src)
	if err != nil {
		return err
	}
	ups := map[string]bool{} // the file's upstream blocks
	for _, n := range nodes {
		if n.name == "upstream" && n.block && len(n.args) == 1 {
			ups[n.args[0].text] = true
		}
	}
	return p.check(nodes, "http", ups, 0)
}

// CheckSnippet checks a snippet of the deployment on its own, as the
// content of a server or location block.
func (p *Policy) CheckSnippet(src []byte) error {
	nodes, err := parseTree(src)
	if err != nil {
		return err
	}
	return p.check(nodes, "snippet", nil, 0)
}

// check checks the directives of one block, in context ctx.
func (p *Policy) check(nodes []*node, ctx string, ups map[string]bool, depth int) error {
	for _, n := range nodes {
		if err := p.directive(n, ctx, ups, depth); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) directive(n *node, ctx string, ups map[string]bool, depth int) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s: %s", n.line, quoteName(n.name), fmt.Sprintf(format, args...))
	}
	for _, a := range n.args {
		if strings.ContainsFunc(a.text, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return fail("control characters are not allowed")
		}
	}
	if ctx == "types" {
		if n.block || slices.ContainsFunc(n.args, func(a token) bool { return strings.Contains(a.text, "$") }) {
			return fail("a types block holds only MIME types and extensions")
		}
		return nil
	}
	if ctx == "upstream" {
		if n.block || !slices.Contains(upstreamAllowed, n.name) {
			return fail("not allowed in an upstream block by the site policy")
		}
		if n.name == "server" {
			if len(n.args) == 0 {
				return fail("no address")
			}
			return p.upstream(n, n.args[0].text, "", nil)
		}
		return nil
	}
	if n.block {
		if slices.Contains(p.d.UnsafeDirectives, n.name) {
			return p.check(n.children, ctx, ups, depth)
		}
		if !slices.Contains(blocks[ctx], n.name) {
			if config.NeverAllowedDirective(n.name) && n.name != "server" && n.name != "upstream" {
				return fail("never allowed in a site")
			}
			return fail("a %s block is not allowed here by the site policy", quoteName(n.name))
		}
		switch n.name {
		case "server":
			if len(n.args) > 0 {
				return fail("takes no arguments")
			}
		case "upstream":
			if len(n.args) != 1 || strings.ContainsAny(n.args[0].text, "$\\/") {
				return fail("takes one name")
			}
		}
		inner := n.name
		if ctx == "snippet" && inner != "location" {
			inner = "snippet" // what a snippet's if or limit_except may hold
		}
		return p.check(n.children, inner, ups, depth)
	}
	if ctx == "http" {
		if config.NeverAllowedDirective(n.name) {
			return fail("never allowed in a site")
		}
		return fail("only server and upstream blocks are allowed at the top of a site file")
	}
	check, ok := allowed[n.name]
	if !ok {
		if slices.Contains(p.d.UnsafeDirectives, n.name) {
			return nil
		}
		if config.NeverAllowedDirective(n.name) {
			return fail("never allowed in a site")
		}
		return fail("not allowed by the site policy")
	}
	arg := ""
	if len(n.args) > 0 {
		arg = n.args[0].text
	}
	switch check {
	case names:
		if ctx != "server" {
			return fail("belongs in a server block of the site file itself")
		}
		for _, a := range n.args {
			if err := checkName(a.text); err != nil {
				return fail("%q: %v", a.text, err)
			}
			if !p.d.OwnsName(a.text) {
				return fail("%q is not inside deployments.%s.domains", a.text, p.d.Name)
			}
		}
	case listen:
		if strings.HasPrefix(arg, "unix:") {
			return fail("unix sockets are not allowed")
		}
	case servePath:
		if err := underRoots(arg, p.d.Serve, n.name != "auth_basic_user_file"); err != nil {
			return fail("%v (deployments.%s.serve)", err, p.d.Name)
		}
	case logPath:
		if n.name == "access_log" && arg == "off" && len(n.args) == 1 {
			return nil
		}
		if err := underRoots(arg, []string{p.logDir}, false); err != nil {
			return fail("%v", err)
		}
		for _, a := range n.args[1:] {
			if strings.Contains(a.text, "/") && !strings.HasPrefix(a.text, "if=") {
				return fail("%q: only a format name and buffer=, gzip, flush=, if= may follow the path", a.text)
			}
		}
	case certPath:
		if ctx == "snippet" {
			return fail("certificates belong in the site file itself")
		}
		if err := p.certFile(arg); err != nil {
			return fail("%v", err)
		}
	case include:
		return p.include(n, arg, depth)
	case pass:
		return p.upstream(n, arg, n.name, ups)
	}
	return nil
}

// quoteName quotes a directive name for a message.
func quoteName(s string) string { return fmt.Sprintf("%q", s) }

// cleanPath says why p is not an absolute, clean path without variables.
// A trailing "/" is allowed when dir.
func cleanPath(p string, dir bool) error {
	switch {
	case p == "":
		return fmt.Errorf("a path is required")
	case strings.Contains(p, "$"):
		return fmt.Errorf("variables are not allowed in a path")
	case strings.Contains(p, "\\"):
		return fmt.Errorf("backslashes are not allowed in a path")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q: the path must be absolute", p)
	}
	c := p
	if dir && len(c) > 1 {
		c = strings.TrimSuffix(c, "/")
	}
	if filepath.Clean(c) != c {
		return fmt.Errorf("%q: the path must be clean (no \"..\", \".\" or \"//\")", p)
	}
	return nil
}

// underRoots checks that p is a clean absolute path in one of roots, or
// one of them itself when dir (root, alias).
func underRoots(p string, roots []string, dir bool) error {
	if err := cleanPath(p, dir); err != nil {
		return err
	}
	c := filepath.Clean(p)
	for _, r := range roots {
		r = filepath.Clean(r)
		if (dir && c == r) || strings.HasPrefix(c, strings.TrimSuffix(r, "/")+"/") {
			return nil
		}
	}
	if len(roots) == 0 {
		return fmt.Errorf("%q: no directory is allowed", p)
	}
	return fmt.Errorf("%q is outside %s", p, strings.Join(roots, ", "))
}

// certFile checks that p is a file in cert_dir/NAME/ for a certificate
// name NAME inside the deployment's domains.
func (p *Policy) certFile(path string) error {
	if err := cleanPath(path, false); err != nil {
		return err
	}
	rest, ok := strings.CutPrefix(path, p.certDir+"/")
	name, file, _ := strings.Cut(rest, "/")
	if !ok || file == "" || !event.ValidCertName(name) || !p.d.OwnsName(name) {
		return fmt.Errorf("%q is not in %s/NAME/ for a certificate name inside deployments.%s.domains", path, p.certDir, p.d.Name)
	}
	return nil
}

// include checks an include directive: one snippet of this deployment,
// whose content is checked where it is included.
func (p *Policy) include(n *node, arg string, depth int) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("line %d: \"include\": %s", n.line, fmt.Sprintf(format, args...))
	}
	if len(n.args) != 1 {
		return fail("takes one file")
	}
	if strings.ContainsAny(arg, "*?[") {
		return fail("%q: glob includes are not allowed", arg)
	}
	name, ok := strings.CutPrefix(arg, p.snippetsDir+"/")
	if !ok && p.relSnippets != "" {
		name, ok = strings.CutPrefix(arg, p.relSnippets)
	}
	if !ok {
		return fail("%q: include only a snippet of this deployment (%s/FILE)", arg, p.snippetsDir)
	}
	if _, mine := p.snippets[name]; !mine || !snippetRE.MatchString(name) {
		return fail("%q is not a snippet of this deployment (%s/FILE, from its snippets/ directory)", arg, p.snippetsDir)
	}
	if depth >= maxIncludeDepth {
		return fail("snippets nested more than %d deep", maxIncludeDepth)
	}
	nodes, err := parseTree(p.snippets[name])
	if err != nil {
		return fail("snippet %s: %v", name, err)
	}
	if err := p.check(nodes, "snippet", nil, depth+1); err != nil {
		return fail("snippet %s: %v", name, err)
	}
	return nil
}

// upstream checks the address of a *_pass directive (directive) or of an
// upstream block's server (directive ""): a variable in the address, a
// loopback address, a unix socket or any address not listed in the
// deployment's upstreams is refused; ups are the file's upstream blocks,
// which *_pass may name.
func (p *Policy) upstream(n *node, arg, directive string, ups map[string]bool) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s: %s", n.line, quoteName(n.name), fmt.Sprintf(format, args...))
	}
	schemes := map[string][]string{
		"proxy_pass": {"http", "https"}, "grpc_pass": {"", "grpc", "grpcs"},
		"uwsgi_pass": {"", "uwsgi", "suwsgi"},
	}[directive]
	if schemes == nil {
		schemes = []string{""}
	}
	scheme, rest, found := strings.Cut(arg, "://")
	if !found {
		scheme, rest = "", arg
	}
	if !slices.Contains(schemes, scheme) {
		return fail("%q: the address must start with %s", arg, strings.Join(slices.DeleteFunc(slices.Clone(schemes), func(s string) bool { return s == "" }), ":// or ")+"://")
	}
	var addr string
	if sock, ok := strings.CutPrefix(rest, "unix:"); ok {
		if directive == "proxy_pass" {
			sock, _, _ = strings.Cut(sock, ":")
		}
		addr = "unix:" + sock
	} else {
		addr, _, _ = strings.Cut(rest, "/")
	}
	if strings.ContainsAny(addr, "$\\") {
		return fail("%q: variables are not allowed in the address of an upstream", arg)
	}
	if directive != "" && ups[addr] {
		return nil
	}
	norm, err := config.NormalizeUpstream(addr)
	if _, _, perr := net.SplitHostPort(addr); err != nil && perr != nil && !strings.HasPrefix(addr, "unix:") {
		// nginx's default port, where it has one.
		port := map[string]string{"": "80", "http": "80", "https": "443"}[scheme]
		if directive != "" && directive != "proxy_pass" {
			port = "" // nginx requires a port there
		}
		if port != "" {
			norm, err = config.NormalizeUpstream(addr + ":" + port)
		}
	}
	if err != nil {
		return fail("%q: not an upstream address dh-nginx can check", arg)
	}
	if p.d.AllowsUpstream(norm) {
		return nil
	}
	what := "upstream " + norm
	switch {
	case strings.HasPrefix(norm, "unix:"):
		what = "unix socket " + strings.TrimPrefix(norm, "unix:")
	case loopback(norm):
		what = "loopback upstream " + norm
	}
	return fail("%s is not in deployments.%s.upstreams", what, p.d.Name)
}

// loopback reports whether host:port names this host.
func loopback(hostport string) bool {
	host := hostport[:strings.LastIndex(hostport, ":")]
	host = strings.Trim(host, "[]")
	if a, err := netip.ParseAddr(host); err == nil {
		return a.IsLoopback() || a.IsUnspecified()
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// sitePolicy returns the policy of deployment d for a checkout's
// snippets, and why each refused snippet is refused (by file name). A
// refused snippet is not installed and no site may include it.
func sitePolicy(cfg *config.Config, d *config.Deployment, snippets []file) (*Policy, map[string]string) {
	ok := map[string][]byte{}
	for _, s := range snippets {
		if s.problem == "" {
			ok[s.name] = s.data
		}
	}
	p := NewPolicy(cfg, d, ok)
	refused := map[string]string{}
	for name, data := range ok {
		if err := p.CheckSnippet(data); err != nil {
			refused[name] = err.Error()
		}
	}
	for name := range refused {
		delete(ok, name)
	}
	return p, refused
}
