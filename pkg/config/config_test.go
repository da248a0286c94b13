package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// designExample is the configuration of DESIGN.md, "The shape of the
// configuration and the command line", which operators' docs rely on.
const designExample = `# /etc/dh-deployer/config.toml (path also from -c/--config or DH_CONFIG)
queue_dir    = "/var/spool/dh-deployer"   # one subdirectory per queue
state_dir    = "/var/lib/dh-deployer"     # run logs, nginx backups, ACME webroot, ...
database_url = "postgres:///dh_deployer?host=/run/postgresql&sslmode=disable"   # DH_DATABASE_URL overrides

[receive]
listen       = "127.0.0.1:3400"           # or a unix socket path, or systemd socket activation
secret_files = ["/etc/dh-deployer/webhook-secret"]   # any of them may sign (rotation)

[deployments.api]
repository = "ducompsoc/durhack"           # owner/name as in payload.repository.full_name
branches   = ["main"]
path       = "/var/www/api.durhack.com"
clone_url  = "https://github.com/ducompsoc/durhack.git"   # optional; any git URL or local path
steps      = [["pnpm", "install", "--frozen-lockfile"], ["pnpm", "build"]]

[deployments.sites]
kind       = "nginx"
repository = "ducompsoc/durhack-nginx"
branches   = ["main"]
path       = "/srv/durhack-nginx"
sites      = [{ rule = "include", select = ["api.durhack.com"] }]
`

const examplePath = "../../docs/config.example.toml"

// writeConfig writes doc to a file in a new temporary directory.
func writeConfig(t testing.TB, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// deployment returns a [deployments.NAME] table with the given key lines,
// adding a valid repository, branches and path unless given.
func deployment(name string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[deployments.%s]\n", name)
	for _, def := range []string{`repository = "owner/repo"`, `branches = ["main"]`, `path = "/srv/` + name + `"`} {
		key, _, _ := strings.Cut(def, " ")
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, key+" ") }) {
			b.WriteString(def + "\n")
		}
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// nginxDeployment is an nginx-kind deployment with every site selected.
func nginxDeployment(name string, lines ...string) string {
	return deployment(name, append([]string{`kind = "nginx"`, `sites = [{ rule = "include", select = ["*"] }]`}, lines...)...)
}

// web is the nginx deployment "web".
func web(lines ...string) string { return nginxDeployment("web", lines...) }

func TestLoadDesignExample(t *testing.T) {
	path := writeConfig(t, designExample)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%q) = %v; want no error", path, err)
	}
	if c.File != path {
		t.Errorf("File = %q; want %q", c.File, path)
	}
	if got, want := c.DeploymentNames(), []string{"api", "sites"}; !slices.Equal(got, want) {
		t.Errorf("DeploymentNames() = %q; want %q", got, want)
	}
	api, ok := c.Deployment("api")
	if !ok {
		t.Fatal("Deployment(api) not found")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"api.Name", api.Name, "api"},
		{"api.Kind", api.Kind, KindSteps},
		{"api.Events", fmt.Sprint(api.Events), "[push]"},
		{"api.IsEnabled", api.IsEnabled(), true},
		{"api.Coalesces", api.Coalesces(), true},
		{"api.Timeout", api.Timeout, 30 * time.Minute},
		{"api.StepTimeout", api.StepTimeout, 10 * time.Minute},
		{"api.CleanUntracked", api.CleanUntracked, false},
		{"api.Steps", fmt.Sprint(api.Steps), "[[pnpm install --frozen-lockfile] [pnpm build]]"},
		{"api.FetchURL", api.FetchURL(), "https://github.com/ducompsoc/durhack.git"},
		{"sites.Kind", c.Deployments["sites"].Kind, KindNginx},
		{"sites.FetchURL", c.Deployments["sites"].FetchURL(), "https://github.com/ducompsoc/durhack-nginx.git"},
		{"Receive.Listen", c.Receive.Listen, "127.0.0.1:3400"},
		{"Receive.Path", c.Receive.Path, "/github-webhook"},
		{"Receive.MaxBody", c.Receive.MaxBody, int64(26214400)},
		{"Receive.ReadHeaderTimeout", c.Receive.ReadHeaderTimeout, 5 * time.Second},
		{"Receive.MaxQueueAge", c.Receive.MaxQueueAge, 5 * time.Minute},
		{"Retention.Deliveries", c.Retention.Deliveries, 90 * 24 * time.Hour},
		{"Retention.Runs", c.Retention.Runs, 365 * 24 * time.Hour},
		{"Retention.KeepSucceeded", c.Retention.KeepSucceeded, 5},
		{"Receive.MinFreeBytes", c.Receive.MinFreeBytes, int64(100 << 20)},
		{"GitHub.APIURL", c.GitHub.APIURL, "https://api.github.com"},
		{"GitHub.StatusContext", c.GitHub.StatusContext, "dh-deployer"},
		{"QueuePath(api)", c.QueuePath("api"), "/var/spool/dh-deployer/api"},
		{"QueuePath(main)", c.QueuePath(MainQueue), "/var/spool/dh-deployer/main"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v; want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestLoadShippedExample(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%q) = %v; want no error", examplePath, err)
	}
	for _, name := range []string{"api", "sites"} {
		if _, ok := c.Deployment(name); !ok {
			t.Errorf("Load(%q): no deployment %q", examplePath, name)
		}
	}
	// Every key of the structs is shown, so the example documents them all.
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tab := range tables {
		for _, key := range keysOf(tab.typ) {
			re := regexp.MustCompile(`(?m)(^(# )?|[{,] )` + key + ` = |[.\[]` + key + `[.\]]`)
			if !re.Match(data) {
				t.Errorf("%s: key %q of %s is not shown", examplePath, key, tab.name)
			}
		}
	}
}

func TestLoadUnknownKey(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantLine int
		wantKey  string
		wantHint string
	}{
		{"deployment key", "queue_dir = \"/q\"\n\n" + deployment("api", `brnach = ["main"]`),
			7, "deployments.api.brnach", `did you mean "branches"?`},
		{"top-level key", "# comment\nqeue_dir = \"/q\"\n",
			2, "qeue_dir", `did you mean "queue_dir"?`},
		{"receive key", "[receive]\nlisten = \"127.0.0.1:1\"\nsecret_file = [\"/s\"]\n",
			3, "receive.secret_file", `did you mean "secret_files"?`},
		{"misspelt table", "\n[recieve]\nlisten = \"127.0.0.1:1\"\n",
			2, "recieve", `did you mean "receive"?`},
		{"dotted key", "receive.lisen = \"127.0.0.1:1\"\n",
			1, "receive.lisen", `did you mean "listen"?`},
		{"other case", deployment("api", `Branches = ["main"]`),
			5, "deployments.api.Branches", `did you mean "branches"?`},
		{"key of another table", "listen = \"127.0.0.1:1\"\n",
			1, "listen", `"listen" is a key of [receive]`},
		{"inside a sites rule", deployment("web", `kind = "nginx"`, `sites = [{ rule = "include", select = ["a"] },`, `  { rule = "exclude", selcet = ["b"] }]`),
			7, "deployments.web.sites.selcet", `did you mean "select"?`},
		{"nothing close", "[github]\nzzzzzz = 1\n",
			2, "github.zzzzzz", ""},
		{"the old chat URL", "[notify]\nurl_file = \"/etc/dh-deployer/notify-url\"\n",
			2, "notify.url_file", movedKeys["notify.url_file"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			c, err := Load(path)
			want := fmt.Sprintf("config: %s:%d: unknown key %q", path, tt.wantLine, tt.wantKey)
			if err == nil || err.Error() != want {
				t.Fatalf("Load(%q) = %v, %v; want %v", path, c, err, want)
			}
			if code := exitCode(err); code != exitConfig {
				t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
			}
			if hint := hint.Of(err); hint != tt.wantHint {
				t.Errorf("Load(%q): hint %q; want %q", path, hint, tt.wantHint)
			}
		})
	}
}

func TestLoadUnknownKeysAllReported(t *testing.T) {
	path := writeConfig(t, "qeue_dir = \"/q\"\n[recieve]\nlisten = \"x\"\nport = 1\n")
	_, err := Load(path)
	for _, want := range []string{`:1: unknown key "qeue_dir"`, `:2: unknown key "recieve"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v; want %v", path, err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "recieve.listen") {
		t.Errorf("Load(%q) = %v; want only the outermost unknown key", path, err)
	}
	if code := exitCode(err); code != exitConfig {
		t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
	}
}

func TestLoadDecodeErrors(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		want     string // after "config: PATH"
		wantHint string
	}{
		{"syntax", "queue_dir = \"/q\"\n\n[receive]\nlisten = = 1\n", `:4:10: expected value but found '=' instead`, ""},
		{"unterminated string", "queue_dir = \"/q\n", `:1:`, ""},
		{"wrong type", deployment("api", `steps = "make"`), `:5: deployments.api.steps: wrong type: want an array of arrays`, ""},
		{"table for a string", "queue_dir = { a = 1 }\n", `:1: queue_dir: wrong type: want a string`, ""},
		{"bad duration", deployment("api", `timeout = "5 min"`), `:5:`, `write a duration such as "30s", "10m" or "1h30m"`},
		{"duration as number", "[receive]\nread_timeout = 30\n", `:2: receive.read_timeout: a duration must be a string`, `write a duration such as "30s", "10m" or "1h30m"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			_, err := Load(path)
			want := "config: " + path + tt.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Load(%q) = %v; want %v…", path, err, want)
			}
			if code := exitCode(err); code != exitConfig {
				t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
			}
			if tt.wantHint != "" && hint.Of(err) != tt.wantHint {
				t.Errorf("Load(%q): hint %q; want %q", path, hint.Of(err), tt.wantHint)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	want := "config: " + path + ": no such file"
	if err == nil || err.Error() != want {
		t.Fatalf("Load(%q) = %v; want %v", path, err, want)
	}
	if code := exitCode(err); code != exitConfig {
		t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
	}
	if hint := hint.Of(err); !strings.Contains(hint, "-c FILE") || !strings.Contains(hint, "DH_CONFIG") {
		t.Errorf("Load(%q): hint %q; want it to mention -c FILE and DH_CONFIG", path, hint)
	}
}

func TestLoadInvalid(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	tests := []struct {
		name string
		doc  string
		want string // a line of the error, after "config: PATH:LINE: "
	}{
		{"bad name", deployment("Api"), `deployments.Api: name must match [a-z0-9][a-z0-9-]*`},
		{"name with underscore", deployment("my_app"), `deployments.my_app: name must match`},
		{"name starting with dash", "[deployments.-x]\nrepository = \"a/b\"\nbranches = [\"main\"]\npath = \"/srv/x\"\n", `deployments.-x: name must match`},
		{"long name", deployment(long), `deployments.` + long + `: name longer than 64 bytes`},
		{"reserved main", deployment("main"), `deployments.main: name "main" is reserved`},
		{"reserved nginx", deployment("nginx"), `deployments.nginx: name "nginx" is reserved`},
		{"reserved cert", deployment("cert"), `deployments.cert: name "cert" is reserved`},
		{"reserved failed", deployment("failed"), `deployments.failed: name "failed" is reserved`},
		{"reserved tmp", deployment("tmp"), `deployments.tmp: name "tmp" is reserved`},
		{"relative path", deployment("api", `path = "srv/api"`), `deployments.api.path: must be absolute`},
		{"missing path", "[deployments.api]\nrepository = \"a/b\"\nbranches = [\"main\"]\n", `deployments.api.path: must be set`},
		{"root path", deployment("api", `path = "/"`), `deployments.api.path: must not be the root directory`},
		{"unclean path", deployment("api", `path = "/srv/api/"`), `deployments.api.path: must be clean`},
		{"shared path", deployment("a", `path = "/srv/x"`) + deployment("b", `path = "/srv/x"`), `deployments.b.path: same checkout as deployments.a`},
		{"relative queue_dir", "queue_dir = \"spool\"\n", `queue_dir: must be absolute`},
		{"status_url not http", "[receive]\nstatus_url = \"https://127.0.0.1:3401\"\n", `receive.status_url: "https://127.0.0.1:3401" must be http://HOST:PORT (status.listen) or unix:/PATH`},
		{"status_url with a path", "[receive]\nstatus_url = \"http://127.0.0.1:3401/x?y\"\n", `receive.status_url: "http://127.0.0.1:3401/x?y" must be`},
		{"status_url TCP without token", "[receive]\nstatus_url = \"http://127.0.0.1:3401\"\n", `receive.status_url: "http://127.0.0.1:3401" is a TCP address, and receive.status_token_file is not set`},
		{"status_url relative unix", "[receive]\nstatus_url = \"unix:run/status.sock\"\n", `receive.status_url: unix: must be followed by an absolute socket path`},
		{"status_url with a password", "[receive]\nstatus_url = \"http://dh:s3cret-token@127.0.0.1:3401\"\n", `receive.status_url: "http://dh:xxxxx@127.0.0.1:3401" must be http://HOST:PORT (status.listen) or unix:/PATH`},
		{"status_url unparsed with a password", "[receive]\nstatus_url = \"http://dh:s3cret-token@127.0.0.1:port\"\n", `receive.status_url: "xxxxx@127.0.0.1:port" must be`},
		{"status_page_url with a password", "[receive]\nstatus_page_url = \"https://dh:s3cret-token@status.example.org\"\n", `receive.status_page_url: "https://dh:xxxxx@status.example.org" must be an http or https URL without`},
		{"status_page_url not http", "[receive]\nstatus_page_url = \"ftp://x\"\n", `receive.status_page_url: "ftp://x" must be an http or https URL`},
		{"max_waiting zero", "[receive]\nmax_waiting = 0\n", `receive.max_waiting: must be positive`},
		{"empty state_dir", "state_dir = \"\"\n", `state_dir: must be set`},
		{"empty step", deployment("api", `steps = [["make"], []]`), `deployments.api.steps[1]: empty step`},
		{"empty argv0", deployment("api", `steps = [["", "build"]]`), `deployments.api.steps[0]: empty program name`},
		{"NUL in step", deployment("api", `steps = [["make", "a\u0000b"]]`), `deployments.api.steps[0]: argument contains a NUL byte`},
		{"repository without owner", deployment("api", `repository = "durhack"`), `deployments.api.repository: "durhack" is not a GitHub repository`},
		{"repository with three parts", deployment("api", `repository = "a/b/c"`), `deployments.api.repository: "a/b/c" is not a GitHub repository`},
		{"repository dot-dot", deployment("api", `repository = "../b"`), `deployments.api.repository: "../b" is not a GitHub repository`},
		{"repository dot", deployment("api", `repository = "a/."`), `deployments.api.repository: "a/." is not a GitHub repository`},
		{"repository space", deployment("api", `repository = "a b/c"`), `deployments.api.repository: "a b/c" is not a GitHub repository`},
		{"repository empty part", deployment("api", `repository = "a/"`), `deployments.api.repository: "a/" is not a GitHub repository`},
		{"missing repository", "[deployments.api]\nbranches = [\"main\"]\npath = \"/srv/api\"\n", `deployments.api.repository: must be set`},
		{"sites on kind steps", deployment("api", `sites = [{ rule = "include", select = ["*"] }]`), `deployments.api.sites: only for kind "nginx"`},
		{"steps on kind nginx", deployment("web", `kind = "nginx"`, `steps = [["make"]]`, `sites = [{ rule = "include", select = ["*"] }]`), `deployments.web.steps: not allowed for kind "nginx"`},
		{"nginx without sites", deployment("web", `kind = "nginx"`), `deployments.web.sites: required for kind "nginx"`},
		{"bad site rule", deployment("web", `kind = "nginx"`, `sites = [{ rule = "add", select = ["*"] }]`), `deployments.web.sites[0]: rule must be "include" or "exclude", not "add"`},
		{"empty site select", deployment("web", `kind = "nginx"`, `sites = [{ rule = "include", select = [] }]`), `deployments.web.sites[0]: select must not be empty`},
		{"bad site pattern", deployment("web", `kind = "nginx"`, `sites = [{ rule = "include", select = ["a["] }]`), `deployments.web.sites[0]: bad site name or pattern "a[" in select`},
		{"bad strategy", deployment("api", `strategy = "blue-green"`), `deployments.api.strategy: must be "releases" or "in-place", not "blue-green"`},
		{"releases on kind nginx", deployment("web", `kind = "nginx"`, `strategy = "releases"`, `sites = [{ rule = "include", select = ["*"] }]`), `deployments.web.strategy: "releases" is only for kind "steps"`},
		{"activate in place", deployment("api", `strategy = "in-place"`, `activate = [["true"]]`), `deployments.api.activate: only for strategy "releases"`},
		{"shared escapes", deployment("api", `shared = ["../etc"]`), `deployments.api.shared[0]: "../etc" must be a clean relative path inside the release`},
		{"shared absolute", deployment("api", `shared = ["/etc"]`), `deployments.api.shared[0]: "/etc" must be a clean relative path`},
		{"carry .git", deployment("api", `carry = [".git/hooks"]`), `deployments.api.carry[0]: ".git/hooks" is git's`},
		{"carry inside shared", deployment("api", `shared = ["storage"]`, `carry = ["storage/cache"]`), `deployments.api.carry[0]: "storage/cache" overlaps "storage" of shared`},
		{"releases_dir inside path", deployment("api", `path = "/srv/api"`, `releases_dir = "/srv/api/releases"`), `deployments.api.releases_dir: must not be path, nor inside it or hold it`},
		{"keep no release", deployment("api", `keep_releases = 0`), `deployments.api.keep_releases: must be at least 1`},
		{"health url and command", deployment("api", `health_url = "http://127.0.0.1/"`, `health_command = ["true"]`), `deployments.api.health_command: set health_url or health_command, not both`},
		{"health url not http", deployment("api", `health_url = "file:///etc/passwd"`), `deployments.api.health_url: "file:///etc/passwd" is not an http or https URL`},
		{"empty activate", deployment("api", `activate = [[]]`), `deployments.api.activate[0]: empty step`},
		{"domains on kind steps", deployment("api", `domains = ["a.test"]`), `deployments.api.domains: only for kind "nginx"`},
		{"upstreams on kind steps", deployment("api", `upstreams = ["a.test:80"]`), `deployments.api.upstreams: only for kind "nginx"`},
		{"upper-case domain", web(`domains = ["Example.org"]`), `deployments.web.domains[0]: "Example.org" is not a lower-case host name`},
		{"bare wildcard domain", web(`domains = ["*.org", "*"]`), `deployments.web.domains[1]: "*" is not a lower-case host name`},
		{"middle wildcard domain", web(`domains = ["a.*.org"]`), `deployments.web.domains[0]: "a.*.org" is not`},
		{"same domain twice", web(`domains = ["a.test"]`) + nginxDeployment("web2", `domains = ["a.test"]`), `deployments.web2.domains[0]: "a.test" overlaps "a.test" of deployments.web`},
		{"name under a wildcard", web(`domains = ["*.example.test"]`) + nginxDeployment("web2", `domains = ["api.example.test"]`), `deployments.web2.domains[0]: "api.example.test" overlaps "*.example.test" of deployments.web`},
		{"nested wildcards", web(`domains = ["*.a.example.test"]`) + nginxDeployment("web2", `domains = ["b.test", "*.example.test"]`), `deployments.web2.domains[1]: "*.example.test" overlaps "*.a.example.test" of deployments.web`},
		{"relative serve", web(`serve = ["srv/www"]`), `deployments.web.serve[0]: must be an absolute path`},
		{"unclean serve", web(`serve = ["/srv/www/../etc"]`), `deployments.web.serve[0]: must be clean`},
		{"serve root", web(`serve = ["/"]`), `deployments.web.serve[0]: must not be the root directory`},
		{"serve holds state", web(`serve = ["/var/lib"]`), `deployments.web.serve[0]: holds /var/lib/dh-deployer`},
		{"serve holds etc", web(`serve = ["/etc/nginx"]`), `deployments.web.serve[0]: holds /etc/nginx/conf.d`},
		{"serve holds a checkout", web(`serve = ["/srv"]`) + deployment("api"), `deployments.web.serve[0]: holds the checkout of deployments.api`},
		{"upstream without port", web(`upstreams = ["app.internal"]`), `deployments.web.upstreams[0]: "app.internal": not host:port`},
		{"upstream port 0", web(`upstreams = ["10.0.0.1:0"]`), `deployments.web.upstreams[0]: "10.0.0.1:0": port must be a number from 1 to 65535`},
		{"upstream variable", web(`upstreams = ["$host:80"]`), `deployments.web.upstreams[0]: "$host:80": bad host name`},
		{"relative unix upstream", web(`upstreams = ["unix:app.sock"]`), `deployments.web.upstreams[0]: "unix:app.sock": a unix socket must be an absolute, clean path`},
		{"unsafe log_format", web(`unsafe_directives = ["ssi", "log_format"]`), `deployments.web.unsafe_directives[1]: "log_format" can never be allowed`},
		{"unsafe lua", web(`unsafe_directives = ["content_by_lua_block"]`), `deployments.web.unsafe_directives[0]: "content_by_lua_block" can never be allowed`},
		{"unsafe include", web(`unsafe_directives = ["include"]`), `deployments.web.unsafe_directives[0]: "include" can never be allowed`},
		{"unsafe bad name", web(`unsafe_directives = ["Ssi"]`), `deployments.web.unsafe_directives[0]: "Ssi" is not a directive name`},
		// Issue 14, attack 3: an nginx deployment's user is its own.
		{"nginx sharing dh-deploy", deployment("api") + deployment("web", `kind = "nginx"`, `user = "dh-deploy"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.web.user: "dh-deploy" is also the user of deployments.api; an nginx deployment needs a user of its own`},
		{"nginx sharing a user", deployment("api", `user = "www-x"`) + deployment("web", `kind = "nginx"`, `user = "www-x"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.web.user: "www-x" is also the user of deployments.api`},
		{"nginx default user taken", deployment("api", `user = "dh-deploy-web"`) + deployment("web", `kind = "nginx"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.web.user: "dh-deploy-web" is also the user of deployments.api`},
		{"nginx as a stage user", deployment("web", `kind = "nginx"`, `user = "dh-cert"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.web.user: "dh-cert" is a dh-deployer stage's user`},
		{"nginx as root", deployment("web", `kind = "nginx"`, `user = "root"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.web.user: "root" is a dh-deployer stage's user`},
		{"nginx long name without user", deployment("a-very-long-deployment-name", `kind = "nginx"`, `sites = [{ rule = "include", select = ["*"] }]`),
			`deployments.a-very-long-deployment-name.user: required for kind "nginx" with a name this long`},
		{"step_timeout > timeout", deployment("api", `timeout = "5m"`, `step_timeout = "6m"`), `deployments.api.step_timeout: 6m0s is longer than timeout (5m0s)`},
		{"zero timeout", deployment("api", `timeout = "0s"`), `deployments.api.timeout: must be positive`},
		{"negative step_timeout", deployment("api", `step_timeout = "-1s"`), `deployments.api.step_timeout: must be positive`},
		{"env overriding DH_", deployment("api", `environment = { DH_DEPLOYMENT = "x" }`), `deployments.api.environment.DH_DEPLOYMENT: DH_* variables are set by dh-deploy`},
		{"bad env name", deployment("api", `environment = { "1X" = "x" }`), `deployments.api.environment.1X: not a valid environment variable name`},
		{"env name with dash", deployment("api", `environment = { "A-B" = "x" }`), `deployments.api.environment.A-B: not a valid environment variable name`},
		{"unknown kind", deployment("api", `kind = "docker"`), `deployments.api.kind: must be "steps", "nginx" or "self", not "docker"`},
		{"no branch or tag", deployment("api", `branches = []`), `deployments.api: follows no branch or tag`},
		{"bad branch pattern", deployment("api", `branches = ["main", "rel-["]`), `deployments.api.branches[1]: bad pattern "rel-["`},
		{"branch as ref", deployment("api", `branches = ["refs/heads/main"]`), `deployments.api.branches[0]: must be a name, not a ref`},
		{"branch starting with dash", deployment("api", `branches = ["-f"]`), `deployments.api.branches[0]: must not start with "-"`},
		{"empty tag", deployment("api", `tags = [""]`), `deployments.api.tags[0]: must not be empty`},
		{"clone_url option", deployment("api", `clone_url = "--upload-pack=x"`), `deployments.api.clone_url: must not start with "-"`},
		{"clone_url relative", deployment("api", `clone_url = "repo.git"`), `deployments.api.clone_url: must be a URL, [user@]host:path, or an absolute path`},
		{"no events", deployment("api", `events = []`), `deployments.api.events: must not be empty`},
		{"bad event", deployment("api", `events = ["Push!"]`), `deployments.api.events[0]: "Push!" is not a GitHub event name`},
		{"bad user", deployment("api", `user = "Root User"`), `deployments.api.user: not a valid Unix user name`},
		{"bad CIDR", "[receive]\nallow = [\"10.0.0.0/8\", \"10.1.2.3/40\"]\n", `receive.allow[1]: "10.1.2.3/40" is not a CIDR network`},
		{"bad address", "[receive]\nallow = [\"example.com\"]\n", `receive.allow[0]: "example.com" is not a CIDR network or an address`},
		{"bad listen", "[receive]\nlisten = \"3400\"\n", `receive.listen: must be host:port, an absolute unix socket path, or "systemd"`},
		{"bad port", "[receive]\nlisten = \"127.0.0.1:http\"\n", `receive.listen: port "http" must be a number from 0 to 65535`},
		{"long socket path", "[receive]\nlisten = \"/" + strings.Repeat("s", 110) + "\"\n", `receive.listen: unix socket path longer than 107 bytes`},
		{"bad webhook path", "[receive]\npath = \"hook\"\n", `receive.path: must be a URL path starting with "/"`},
		{"secret file leaving credentials", "[receive]\nsecret_files = [\"../secret\"]\n", `receive.secret_files[0]: must be absolute, or a name inside $CREDENTIALS_DIRECTORY`},
		{"zero max_body", "[receive]\nmax_body = 0\n", `receive.max_body: must be positive`},
		{"trusted_proxies as a count", "[receive]\ntrusted_proxies = 1\n", `receive.trusted_proxies: wrong type: want an array of strings`},
		{"trusted_proxies not a network", "[receive]\ntrusted_proxies = [\"nginx\"]\n", `receive.trusted_proxies[0]: "nginx" is not a CIDR network or an address (or "unix" for a unix-socket peer)`},
		{"max_in_flight below max_body", "[receive]\nmax_in_flight = 1024\n", `receive.max_in_flight: must be at least max_body (26214400)`},
		{"hook user not a user name", "[receive.hook_users]\n\"Git Host\" = [\"local/app\"]\n", `receive.hook_users.Git Host: is not a Unix user name`},
		{"hook repository not owner/name", "[receive.hook_users]\ngit = [\"app\"]\n", `receive.hook_users.git[0]: "app" is not owner/name`},
		{"retention inside the redelivery window", "[retention]\nruns = \"24h\"\n", `retention.runs: 24h0m0s is shorter than GitHub's redelivery window`},
		{"retention keeping no live run", "[retention]\nkeep_succeeded = 0\n", `retention.keep_succeeded: must be at least 1`},
		{"retention batch of nothing", "[retention]\nbatch = 0\n", `retention.batch: must be from 1 to 100000 rows`},
		{"relative allow_file", "[receive]\nallow_file = \"allow\"\n", `receive.allow_file: must be absolute`},
		{"mysql database", "database_url = \"mysql://u:hunter2@h/db\"\n", `database_url: scheme must be postgres or postgresql`},
		{"api_url with token", "[github]\napi_url = \"https://tok:x@api.github.com\"\n", `github.api_url: must not contain user information`},
		{"api_url not http", "[github]\napi_url = \"ftp://api.github.com\"\n", `github.api_url: must be an http or https URL`},
		{"bad target_url", "[github]\ntarget_url = \"https://x/{{.Deployment\"\n", `github.target_url: bad template`},
		{"empty status_context", "[github]\nstatus_context = \"\"\n", `github.status_context: must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, nil; want %v", path, c, tt.want)
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				_, rest, ok := strings.Cut(line, path)
				if !ok || !strings.HasPrefix(line, "config: ") {
					t.Errorf("Load(%q): error line %q does not start with %q", path, line, "config: "+path)
					continue
				}
				rest = strings.TrimLeft(rest, ":0123456789 ")
				if strings.HasPrefix(rest, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("Load(%q) = %v; want %v", path, err, tt.want)
			}
			if code := exitCode(err); code != exitConfig {
				t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load(%q) = %v; shows the database password", path, err)
			}
		})
	}
}

func TestLoadInvalidLine(t *testing.T) {
	doc := "# api\n" + deployment("api", `clean_untracked = true`, `path = "srv/api"`)
	path := writeConfig(t, doc)
	_, err := Load(path)
	want := "config: " + path + ":6: deployments.api.path: must be absolute"
	if err == nil || err.Error() != want {
		t.Fatalf("Load(%q) = %v; want %v", path, err, want)
	}
	// A missing key is reported at its table.
	path = writeConfig(t, "\n\n[deployments.api]\nbranches = [\"main\"]\npath = \"/srv/api\"\n")
	_, err = Load(path)
	want = "config: " + path + ":3: deployments.api.repository: must be set"
	if err == nil || err.Error() != want {
		t.Fatalf("Load(%q) = %v; want %v", path, err, want)
	}
}

func TestLoadSeveralProblems(t *testing.T) {
	path := writeConfig(t, "queue_dir = \"q\"\n"+deployment("Bad", `path = "x"`))
	_, err := Load(path)
	if err == nil {
		t.Fatalf("Load(%q) = nil; want errors", path)
	}
	for _, want := range []string{"queue_dir: must be absolute", "deployments.Bad: name must match", "deployments.Bad.path: must be absolute"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v; want %v", path, err, want)
		}
	}
	if code := exitCode(err); code != exitConfig {
		t.Errorf("Load(%q): exit code %d; want %d", path, code, exitConfig)
	}
}

func TestLoadDefaults(t *testing.T) {
	tests := []struct {
		name            string
		lines           []string
		timeout, stepTO time.Duration
		enabled, coal   bool
		events          string
	}{
		{"all defaults", nil, 30 * time.Minute, 10 * time.Minute, true, true, "[push]"},
		{"short timeout", []string{`timeout = "5m"`}, 5 * time.Minute, 5 * time.Minute, true, true, "[push]"},
		{"long timeout", []string{`timeout = "2h"`}, 2 * time.Hour, 10 * time.Minute, true, true, "[push]"},
		{"explicit", []string{`timeout = "1h"`, `step_timeout = "1h"`, `enabled = false`, `coalesce = false`, `events = ["push", "release"]`},
			time.Hour, time.Hour, false, false, "[push release]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(deployment("api", tt.lines...)))
			if err != nil {
				t.Fatalf("Parse = %v; want no error", err)
			}
			d := c.Deployments["api"]
			got := fmt.Sprintf("%v %v %v %v %v", d.Timeout, d.StepTimeout, d.IsEnabled(), d.Coalesces(), d.Events)
			want := fmt.Sprintf("%v %v %v %v %s", tt.timeout, tt.stepTO, tt.enabled, tt.coal, tt.events)
			if got != want {
				t.Errorf("Parse(%q) = %s; want %s", tt.lines, got, want)
			}
		})
	}
}

func TestDatabaseURLEnv(t *testing.T) {
	path := writeConfig(t, designExample)
	const url = "postgres://deployer@db.internal/dh?sslmode=require"
	t.Setenv(EnvDatabaseURL, url)
	c, err := Load(path)
	if err != nil || c.DatabaseURL != url {
		t.Fatalf("Load(%q) = %v, %v; want database_url %q", path, c, err, url)
	}
	// Parse does not read the environment.
	c, err = Parse(path, []byte(designExample))
	if err != nil || c.DatabaseURL != DefaultDatabaseURL {
		t.Fatalf("Parse(%q) = %v, %v; want database_url %q", path, c, err, DefaultDatabaseURL)
	}
	// The override is validated too.
	t.Setenv(EnvDatabaseURL, "mysql://x/y")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "database_url: scheme") {
		t.Fatalf("Load(%q) with DH_DATABASE_URL=mysql://x/y = %v; want a database_url error", path, err)
	}
	t.Setenv(EnvDatabaseURL, "")
	if c, err := Load(path); err != nil || c.DatabaseURL != DefaultDatabaseURL {
		t.Fatalf("Load(%q) with DH_DATABASE_URL empty = %v; want database_url %q", path, err, DefaultDatabaseURL)
	}
}

func TestPath(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvConfig {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		flag, env, want string
	}{
		{"", "", DefaultPath},
		{"", "/etc/other.toml", "/etc/other.toml"},
		{"/x.toml", "/etc/other.toml", "/x.toml"},
		{"rel.toml", "", "rel.toml"},
	}
	for _, tt := range tests {
		if got := Path(tt.flag, env(tt.env)); got != tt.want {
			t.Errorf("Path(%q, DH_CONFIG=%q) = %q; want %q", tt.flag, tt.env, got, tt.want)
		}
	}
	if got := Path("", nil); got != DefaultPath {
		t.Errorf("Path(%q, nil) = %q; want %q", "", got, DefaultPath)
	}
}

func TestValidateInGo(t *testing.T) {
	c := Default()
	c.Deployments = map[string]*Deployment{
		"api": {Repository: "a/b", Branches: []string{"main"}, Path: "/srv/api"},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v; want nil", err)
	}
	d := c.Deployments["api"]
	if d.Name != "api" || d.Kind != KindSteps || d.Timeout != DefaultTimeout || !d.IsEnabled() {
		t.Errorf("Validate() left %+v; want defaults applied", d)
	}
	c.Deployments["api"].Path = "rel"
	err := c.Validate()
	if want := "config: deployments.api.path: must be absolute"; err == nil || err.Error() != want {
		t.Errorf("Validate() = %v; want %v", err, want)
	}
	if code := exitCode(err); code != exitConfig {
		t.Errorf("Validate(): exit code %d; want %d", code, exitConfig)
	}
}

func TestDeploymentMatching(t *testing.T) {
	d := &Deployment{
		Repository: "DUCompSoc/DurHack",
		Branches:   []string{"main", "release-*"},
		Tags:       []string{"v*"},
		Events:     []string{"push"},
		Sites: []SiteRule{
			{Rule: "include", Select: []string{"*"}},
			{Rule: "exclude", Select: []string{"staging.*", "old.durhack.com"}},
			{Rule: "include", Select: []string{"staging.durhack.com"}},
		},
	}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"MatchesRepository(ducompsoc/durhack)", d.MatchesRepository("ducompsoc/durhack"), true},
		{"MatchesRepository(ducompsoc/durhack-nginx)", d.MatchesRepository("ducompsoc/durhack-nginx"), false},
		{"FollowsBranch(main)", d.FollowsBranch("main"), true},
		{"FollowsBranch(release-1)", d.FollowsBranch("release-1"), true},
		{"FollowsBranch(release-1/x)", d.FollowsBranch("release-1/x"), false},
		{"FollowsBranch(dev)", d.FollowsBranch("dev"), false},
		{"FollowsTag(v1.0)", d.FollowsTag("v1.0"), true},
		{"FollowsTag(main)", d.FollowsTag("main"), false},
		{"TakesEvent(push)", d.TakesEvent("push"), true},
		{"TakesEvent(ping)", d.TakesEvent("ping"), false},
		{"SelectsSite(api.durhack.com)", d.SelectsSite("api.durhack.com"), true},
		{"SelectsSite(staging.api.com)", d.SelectsSite("staging.api.com"), false},
		{"SelectsSite(old.durhack.com)", d.SelectsSite("old.durhack.com"), false},
		{"SelectsSite(staging.durhack.com)", d.SelectsSite("staging.durhack.com"), true},
		{"no rules: SelectsSite(x)", (&Deployment{}).SelectsSite("x"), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestAllowedPrefixes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("# GitHub hooks\n192.30.252.0/22\n\n  2a0a:a440::/29  # v6\n10.1.2.3\n"), 0o644)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("10.0.0.0/8\nnot-a-net\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing\n"), 0o644)
	tests := []struct {
		allow   []string
		file    string
		want    string
		wantErr string
	}{
		{nil, "", "[]", ""},
		{[]string{"10.0.0.1/8", "::1"}, "", "[10.0.0.0/8 ::1/128]", ""},
		{[]string{"127.0.0.1"}, good, "[127.0.0.1/32 192.30.252.0/22 2a0a:a440::/29 10.1.2.3/32]", ""},
		{nil, bad, "", bad + ":2: \"not-a-net\" is not a CIDR network or an address"},
		{nil, empty, "", "no networks"},
		{nil, filepath.Join(dir, "missing"), "", "no such file"},
	}
	for _, tt := range tests {
		r := &Receive{Allow: tt.allow, AllowFile: tt.file}
		got, err := r.AllowedPrefixes()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != exitConfig {
				t.Errorf("AllowedPrefixes(%q, %q) = %v, %v; want error %v", tt.allow, tt.file, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("AllowedPrefixes(%q, %q) = %v, %v; want %v", tt.allow, tt.file, got, err, tt.want)
		}
	}
	if p, _ := (&Receive{Allow: []string{"::ffff:1.2.3.4"}}).AllowedPrefixes(); len(p) != 1 || p[0] != netip.MustParsePrefix("1.2.3.4/32") {
		t.Errorf("AllowedPrefixes(::ffff:1.2.3.4) = %v; want [1.2.3.4/32]", p)
	}
}

func TestListenNetwork(t *testing.T) {
	tests := []struct{ listen, network, address string }{
		{"127.0.0.1:3400", "tcp", "127.0.0.1:3400"},
		{"/run/dh-receive.sock", "unix", "/run/dh-receive.sock"},
		{"systemd", ListenSystemd, ""},
	}
	for _, tt := range tests {
		n, a := (&Receive{Listen: tt.listen}).ListenNetwork()
		if n != tt.network || a != tt.address {
			t.Errorf("ListenNetwork(%q) = %q, %q; want %q, %q", tt.listen, n, a, tt.network, tt.address)
		}
	}
}

func TestWebhookSecrets(t *testing.T) {
	const good = "c2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2g="
	dir := t.TempDir()
	creds := t.TempDir()
	write := func(dir, name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	okFile := write(dir, "ok", good+"\n")
	crlf := write(dir, "crlf", good+"\r\n")
	twoNL := write(dir, "two", good+"\n\n")
	second := write(dir, "second", "another-"+good)
	write(creds, "webhook-secret", good)
	getenv := func(k string) string {
		if k == EnvCredentials {
			return creds
		}
		return ""
	}
	tests := []struct {
		name    string
		files   []string
		getenv  func(string) string
		want    []string
		wantErr string
		hint    string
	}{
		{"ok", []string{okFile}, nil, []string{good}, "", ""},
		{"crlf trimmed", []string{crlf}, nil, []string{good}, "", ""},
		{"one newline trimmed", []string{twoNL}, nil, []string{good + "\n"}, "", ""},
		{"rotation", []string{okFile, second}, nil, []string{good, "another-" + good}, "", ""},
		{"credentials directory", []string{"webhook-secret"}, getenv, []string{good}, "", ""},
		{"relative without credentials or file", []string{"webhook-secret"}, nil, nil, `relative, and neither $CREDENTIALS_DIRECTORY nor a configuration file`, "LoadCredential="},
		{"none configured", nil, nil, nil, "receive.secret_files: no webhook secret configured", "head -c 32 /dev/urandom | base64"},
		{"missing", []string{filepath.Join(dir, "missing")}, nil, nil, filepath.Join(dir, "missing") + ": no such file", ""},
		{"missing in credentials", []string{"nope"}, getenv, nil, filepath.Join(creds, "nope") + ": no such file", ""},
		{"directory", []string{dir}, nil, nil, dir + ": not a regular file", ""},
		{"empty", []string{write(dir, "empty", "")}, nil, nil, "empty", "head -c 32 /dev/urandom | base64"},
		{"only newline", []string{write(dir, "nl", "\n")}, nil, nil, "empty", ""},
		{"short", []string{write(dir, "short", "k3y-8a7f\n")}, nil, nil, "secret shorter than 16 bytes", "generate one with: head -c 32 /dev/urandom | base64"},
		{"placeholder changeme", []string{write(dir, "ph1", "please-CHANGEME-before-use\n")}, nil, nil, "holds a placeholder", ""},
		{"placeholder example", []string{write(dir, "ph2", "an-example-secret-value")}, nil, nil, "holds a placeholder", ""},
		{"placeholder word", []string{write(dir, "ph3", "Password\n")}, nil, nil, "holds a placeholder", ""},
		{"placeholder x", []string{write(dir, "ph4", "xxxxxxxxxxxxxxxx")}, nil, nil, "holds a placeholder", ""},
		{"repeated byte", []string{write(dir, "rep", strings.Repeat("a", 40))}, nil, nil, "holds one byte repeated", ""},
		{"too large", []string{write(dir, "big", strings.Repeat("ab", 40<<10))}, nil, nil, "larger than", ""},
		{"one bad of two", []string{okFile, write(dir, "bad", "secret")}, nil, nil, "holds a placeholder", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Receive.SecretFiles = tt.files
			got, err := c.WebhookSecrets(tt.getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WebhookSecrets(%q) = %q, %v; want %v", tt.files, got, err, tt.wantErr)
				}
				if code := exitCode(err); code != exitConfig {
					t.Errorf("WebhookSecrets(%q): exit code %d; want %d", tt.files, code, exitConfig)
				}
				if !strings.HasPrefix(err.Error(), "config: ") {
					t.Errorf("WebhookSecrets(%q) = %v; want it to start with %q", tt.files, err, "config: ")
				}
				if tt.hint != "" && !strings.Contains(hint.Of(err), tt.hint) {
					t.Errorf("WebhookSecrets(%q): hint %q; want %q", tt.files, hint.Of(err), tt.hint)
				}
				return
			}
			if err != nil {
				t.Fatalf("WebhookSecrets(%q) = %v; want %q", tt.files, err, tt.want)
			}
			var gotS []string
			for _, s := range got {
				gotS = append(gotS, string(s))
			}
			if !slices.Equal(gotS, tt.want) {
				t.Errorf("WebhookSecrets(%q) = %q; want %q", tt.files, gotS, tt.want)
			}
		})
	}
}

func TestSecretNeverShown(t *testing.T) {
	// Refused secrets are not echoed in messages.
	dir := t.TempDir()
	for _, secret := range []string{"tiny-9f3a", "my-placeholder-secret-value", strings.Repeat("z", 32)} {
		p := filepath.Join(dir, "s")
		os.WriteFile(p, []byte(secret), 0o600)
		_, err := ReadSecretFile(p)
		if err == nil {
			t.Fatalf("ReadSecretFile(%q) = nil; want an error", p)
		}
		if strings.Contains(err.Error()+hint.Of(err), secret) {
			t.Errorf("ReadSecretFile(%q) = %v; shows the secret", p, err)
		}
	}
}

func TestGitHubToken(t *testing.T) {
	c := Default()
	if tok, err := c.GitHubToken(nil); tok != nil || err != nil {
		t.Errorf("GitHubToken() without token_file = %q, %v; want nil, nil", tok, err)
	}
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("ghp_0123456789abcdefghijABCDEFGHIJ012345\n"), 0o600)
	c.GitHub.TokenFile = p
	tok, err := c.GitHubToken(nil)
	if err != nil || string(tok) != "ghp_0123456789abcdefghijABCDEFGHIJ012345" {
		t.Errorf("GitHubToken() = %q, %v; want the token", tok, err)
	}
}

func TestCredentialPath(t *testing.T) {
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "webhook-secret"), nil, 0o600)
	c := &Config{File: filepath.Join(etc, "config.toml")}
	creds := func(k string) string {
		if k == EnvCredentials {
			return "/run/credentials/dh-receive.service"
		}
		return ""
	}
	shell := func(string) string { return "" }
	tests := []struct {
		name    string
		getenv  func(string) string
		want    string
		wantErr string
	}{
		{"/etc/x", creds, "/etc/x", ""},
		{"x", creds, "/run/credentials/dh-receive.service/x", ""},
		{"../x", creds, "", "must be absolute, or a name inside"},
		{"webhook-secret", shell, filepath.Join(etc, "webhook-secret"), ""},
		{"webhook-secret", nil, filepath.Join(etc, "webhook-secret"), ""},
		{"github-token", shell, "", "$CREDENTIALS_DIRECTORY is not set (not run by systemd with LoadCredential=github-token:...), and there is no " + filepath.Join(etc, "github-token")},
		{"../webhook-secret", shell, "", "must be absolute, or a name inside"},
	}
	for _, tt := range tests {
		got, err := c.CredentialPath(tt.name, tt.getenv)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CredentialPath(%q) = %q, %v; want %q, %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && exitCode(err) != exitConfig {
			t.Errorf("CredentialPath(%q): exit code %d; want %d", tt.name, exitCode(err), exitConfig)
		}
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "abc", 0},
		{"brnach", "branch", 1},
		{"brnach", "branches", 3},
		{"recieve", "receive", 1},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzLoad: Load never panics; every error is a Config error (exit 78)
// that names the file, with no Config beside it; a configuration that
// loads passes Validate; loading twice gives the same outcome and Config.
// Seeds: docs/config.example.toml, DESIGN.md's example, a deployment
// following each fixture's repository and ref, some broken files, and
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, path := range []string{examplePath} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(designExample))
	f.Add([]byte(deployment("api", `brnach = ["main"]`, `sites = [{ rule = "include", selcet = ["x"] }]`)))
	f.Add([]byte("[[deployments.x.sites]]\nrule = 1\n[deployments.\"a,b\"]\nc = 1\n"))
	f.Add([]byte("a = = 1\n"))
	for _, fx := range testenv.Fixtures(f) {
		if fx.Repository == "-" || !strings.HasPrefix(fx.Ref, "refs/") {
			continue
		}
		kind, name, _ := strings.Cut(strings.TrimPrefix(fx.Ref, "refs/"), "/")
		key := "branches"
		if kind == "tags" {
			key = "tags"
		}
		f.Add([]byte(deployment("app", fmt.Sprintf("repository = %q", fx.Repository), fmt.Sprintf("%s = [%q]", key, name),
			`events = ["push"]`, `timeout = "5m"`)))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			if code := exitCode(err); code != exitConfig {
				t.Fatalf("Load(%q) = %v; exit code %d, want %d", data, err, code, exitConfig)
			}
			if c != nil {
				t.Fatalf("Load(%q) = %v, %v; want a nil Config with the error", data, c, err)
			}
			if !strings.HasPrefix(err.Error(), "config: "+path) {
				t.Fatalf("Load(%q) = %v; want an error naming %s", data, err, path)
			}
		} else if err := c.Validate(); err != nil {
			t.Fatalf("Load(%q) passed, but Validate() = %v", data, err)
		}
		// Which of several type errors is named can vary from one Load to
		// the next (the decoder walks a Go map), so only the outcome and
		// the Config are compared.
		c2, err2 := Load(path)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(c, c2) {
			t.Fatalf("Load(%q) twice = %v, %v; then %v, %v", data, c, err, c2, err2)
		}
	})
}

// TestRootWorkDefaults: the defaults of root work follow the host, decided
// by Load once: systemctl (polkit, root units) under systemd, sudo
// elsewhere; a key in the file always wins.
func TestRootWorkDefaults(t *testing.T) {
	self := deployment("me", `kind = "self"`, `steps = [["make", "build"]]`)
	tests := []struct {
		name   string
		booted bool
		doc    string
		want   string
	}{
		{"no systemd", false, self,
			`[sudo -n /usr/sbin/nginx -t] "" [sudo -n /usr/bin/systemctl reload nginx] [sudo -n /usr/bin/certbot] [] "" ` +
				`[[sudo -n /usr/bin/systemctl restart dh-receive dh-route dh-nginx dh-cert]] [sudo -n /usr/bin/systemctl --no-block restart dh-deploy@me]`},
		{"systemd", true, self,
			`[systemctl --no-ask-password start dh-nginx-test.service] "/run/dh-deployer/nginx-test.log" ` +
				`[systemctl --no-ask-password reload nginx.service] [sudo -n /usr/bin/certbot] ` +
				`[systemctl --no-ask-password start dh-certbot.service] "/run/dh-deployer/certbot.log" ` +
				`[[systemctl --no-ask-password restart dh-receive.service dh-route.service dh-nginx.service dh-cert.service]] ` +
				`[systemctl --no-ask-password --no-block restart dh-deploy@*.service]`},
		{"systemd, keys given", true, "[nginx]\ntest_command = [\"/bin/true\"]\nreload_command = [\"/bin/true\", \"r\"]\n" +
			"[cert]\ncommand = [\"/usr/bin/certbot\"]\n" +
			deployment("me", `kind = "self"`, `self = { restart = [["/bin/true"]], restart_self = ["/bin/true"] }`),
			`[/bin/true] "" [/bin/true r] [/usr/bin/certbot] [] "" [[/bin/true]] [/bin/true]`},
		{"systemd, outputs given", true, "[nginx]\ntest_output = \"/run/t.log\"\n[cert]\nrequest_output = \"/run/c.log\"\n" + self,
			`[systemctl --no-ask-password start dh-nginx-test.service] "/run/t.log" ` +
				`[systemctl --no-ask-password reload nginx.service] [sudo -n /usr/bin/certbot] ` +
				`[systemctl --no-ask-password start dh-certbot.service] "/run/c.log" ` +
				`[[systemctl --no-ask-password restart dh-receive.service dh-route.service dh-nginx.service dh-cert.service]] ` +
				`[systemctl --no-ask-password --no-block restart dh-deploy@*.service]`},
	}
	defer func(b func() bool) { booted = b }(booted)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			booted = func() bool { return tt.booted }
			c, err := Load(writeConfig(t, tt.doc))
			if err != nil {
				t.Fatalf("Load = %v; want no error", err)
			}
			s := c.Deployments["me"].Self
			got := fmt.Sprintf("%v %q %v %v %v %q %v %v", c.Nginx.TestCommand, c.Nginx.TestOutput, c.Nginx.ReloadCommand,
				c.Cert.Command, c.Cert.RequestCommand, c.Cert.RequestOutput, s.Restart, s.RestartSelf)
			if got != tt.want {
				t.Errorf("Load (booted %v) =\n%s\nwant\n%s", tt.booted, got, tt.want)
			}
			if c.Cert.Certbot != "/usr/bin/certbot" {
				t.Errorf("cert.certbot = %q; want /usr/bin/certbot", c.Cert.Certbot)
			}
		})
	}
}

// A queue_dir on tmpfs (here /dev/shm, existing or not yet) is refused,
// naming the key that allows it; with queue_dir_throwaway it loads.
func TestQueueDirOnTmpfs(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "dh-config-test.")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	for _, dir := range []string{shm, filepath.Join(shm, "spool", "dh-deployer")} {
		_, err := Load(writeConfig(t, fmt.Sprintf("queue_dir = %q\n", dir)))
		if exitCode(err) != exitConfig || !strings.Contains(err.Error(), "tmpfs") ||
			!strings.Contains(hint.Of(err), "queue_dir_throwaway = true") {
			t.Errorf("Load(queue_dir = %s) = %v (hint %q); want a config error saying tmpfs, hinting queue_dir_throwaway = true",
				dir, err, hint.Of(err))
		}
		if _, err := Load(writeConfig(t, fmt.Sprintf("queue_dir = %q\nqueue_dir_throwaway = true\n", dir))); err != nil {
			t.Errorf("Load(queue_dir = %s, queue_dir_throwaway) = %v; want nil", dir, err)
		}
	}
	if _, err := Load(writeConfig(t, fmt.Sprintf("queue_dir = %q\n", t.TempDir()))); err != nil {
		t.Errorf("Load(queue_dir on %s) = %v; want nil", t.TempDir(), err)
	}
}

func TestRunsAs(t *testing.T) {
	doc := deployment("api") + deployment("own", `user = "www-own"`) +
		deployment("web", `kind = "nginx"`, `sites = [{ rule = "include", select = ["*"] }]`) +
		deployment("shop", `kind = "nginx"`, `user = "www-shop"`, `sites = [{ rule = "include", select = ["*"] }]`)
	c, err := Load(writeConfig(t, doc))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	for name, want := range map[string]string{"api": "dh-deploy", "own": "www-own", "web": "dh-deploy-web", "shop": "www-shop"} {
		if got := c.Deployments[name].RunsAs(); got != want {
			t.Errorf("deployments.%s.RunsAs() = %q; want %q", name, got, want)
		}
	}
}

// The old integer form of trusted_proxies is refused with a hint saying
// how to write the list (issue 17, finding 3).
func TestTrustedProxiesCountMigrates(t *testing.T) {
	path := writeConfig(t, "[receive]\ntrusted_proxies = 1\n")
	_, err := Load(path)
	if hint := hint.Of(err); exitCode(err) != exitConfig || !strings.Contains(hint, `trusted_proxies = ["127.0.0.1", "::1"]`) {
		t.Errorf("Load(trusted_proxies = 1) = %v (hint %q); want a config error with a hint showing the list", err, hint)
	}
	c, err := Parse("ok.toml", []byte("[receive]\ntrusted_proxies = [\"unix\", \"10.0.0.0/8\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, unix, err := c.Receive.TrustedProxyPrefixes()
	if err != nil || !unix || len(ps) != 1 || ps[0].String() != "10.0.0.0/8" {
		t.Errorf("TrustedProxyPrefixes() = %v, %v, %v; want [10.0.0.0/8], true, nil", ps, unix, err)
	}
}

// exitConfig is the exit status of a configuration error (pkg/cli, which
// this package's tests cannot import: it imports config).
const exitConfig = 78

// exitCode is the exit status pkg/cli gives err, as far as this package
// classifies it: 78 for an *Error, else 1.
func exitCode(err error) int {
	if errors.As(err, new(*Error)) {
		return exitConfig
	}
	return 1
}

// TestNotifyTargets: targets are checked as a whole, each problem named
// at its key; a deployment without notify inherits default_targets.
func TestNotifyTargets(t *testing.T) {
	const good = `[notify]
default_targets = ["chat"]
[notify.targets.chat]
kind = "discord"
url_file = "chat-url"
[notify.targets.mail]
kind = "email"
to = ["ops@example.org"]
from = "deploy@example.org"
smtp = "mail.example.org:587"
on = ["success"]
`
	c, err := Load(writeConfig(t, good+deployment("api")+deployment("web", `notify = ["mail"]`)+deployment("quiet", `notify = []`)))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"api": "[chat]", "web": "[mail]", "quiet": "[]"} {
		if got := fmt.Sprint(c.Deployments[name].Notify); got != want {
			t.Errorf("deployments.%s.notify = %s; want %s", name, got, want)
		}
	}
	if on := c.Notify.Targets["chat"].On; !slices.Equal(on, DefaultOn) || !*c.Notify.Targets["mail"].StartTLS || c.Notify.CertExpiryDays != 14 {
		t.Errorf("defaults: on %v, starttls %v, cert_expiry_days %d; want %v, true, 14", on, *c.Notify.Targets["mail"].StartTLS, c.Notify.CertExpiryDays, DefaultOn)
	}
	for _, tc := range []struct{ doc, want string }{
		{good + deployment("api", `notify = ["chta"]`), `deployments.api.notify[0]: no target "chta"`},
		{good + "[notify.targets.x]\nkind = \"sms\"\n", `notify.targets.x.kind: "sms" is not a kind of target`},
		{good + "[notify.targets.x]\nkind = \"slack\"\n", `notify.targets.x.url_file: required for kind "slack"`},
		{good + "[notify.targets.x]\nkind = \"email\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\\r\\nBcc: v@w.x\"]\n", `notify.targets.x.to[0]: "x@y.z\r\nBcc: v@w.x" is not a plain address`},
		{good + "[notify.targets.x]\nkind = \"email\"\nfrom = \"Eve <e@v.e>\"\nto = [\"x@y.z\"]\n", `notify.targets.x.from: required for kind "email": a plain address`},
		{good + "[notify.targets.x]\nkind = \"email\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nsmtp_user = \"u\"\n", `smtp_user and password_file need smtp`},
		{good + "[notify.targets.x]\nkind = \"slack\"\nurl_file = \"u\"\non = [\"sucess\"]\n", `notify.targets.x.on[0]: unknown "sucess"`},
		{good + "[notify.targets.x]\nkind = \"slack\"\nurl_file = \"u\"\nto = [\"x@y.z\"]\n", `notify.targets.x.to: only for kind "email"`},
	} {
		_, err := Load(writeConfig(t, tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitConfig {
			t.Errorf("Load(...%q) = %v; want a config error containing %q", tc.doc[len(good):], err, tc.want)
		}
	}
}
