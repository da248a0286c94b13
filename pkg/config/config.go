// Package config is the one TOML configuration file shared by every dh-*
// tool: its structs (each key is documented on its field, which is the
// reference), strict loading, defaults and validation, and the reading of
// secrets from files.
//
// Guarantees:
//
//   - Load and Parse return either a *Config that passed Validate, with every
//     default applied, or an error. They never return a partial Config.
//   - Every error they return, and every error of Validate, WebhookSecrets,
//     GitHubToken and ReadSecretFile, is a config.Error (exit 78), so a
//     tool exits 78 and systemd does not restart it (RestartPreventExitStatus).
//   - A key the structs do not know, or a known key spelled with different
//     case, is an error naming the full key path and its line
//     ("config: /etc/dh-deployer/config.toml:12: unknown key
//     "deployments.api.brnach""), with a hint suggesting the nearest
//     valid key when one is close. Syntax errors carry line and column.
//     Validation errors name the key path ("deployments.api.path: must be
//     absolute") and, where the key is in the file, its line. Several
//     validation problems are reported together (errors.Join).
//   - Secrets are never inline: they are read from files only when asked
//     (WebhookSecrets, GitHubToken), and no error message contains a secret's
//     bytes. Loading a configuration does not touch any secret file.
//   - The environment is read in two places only: DH_DATABASE_URL overrides
//     database_url (in Load), and $CREDENTIALS_DIRECTORY resolves relative
//     secret file names (through the getenv argument of the secret readers;
//     without it they are files beside the configuration file, see
//     CredentialPath).
package config

import (
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultPath is the configuration file used when neither -c/--config nor
// DH_CONFIG names one.
const DefaultPath = "/etc/dh-deployer/config.toml"

// Defaults of the top-level keys.
const (
	DefaultQueueDir    = "/var/spool/dh-deployer"
	DefaultStateDir    = "/var/lib/dh-deployer"
	DefaultDatabaseURL = "postgres:///dh_deployer?host=/run/postgresql&sslmode=disable"
)

// Environment variables the package reads.
const (
	EnvConfig      = "DH_CONFIG"             // configuration file, if no -c/--config
	EnvDatabaseURL = "DH_DATABASE_URL"       // overrides database_url
	EnvCredentials = "CREDENTIALS_DIRECTORY" // systemd LoadCredential= directory
)

// Names of the queues the stages themselves use, under queue_dir. No
// deployment may be named like one of them (nor like the queue's own
// "failed" and "tmp" subdirectories).
const (
	MainQueue  = "main"  // dh-receive → dh-route
	NginxQueue = "nginx" // dh-deploy, dh-cert → dh-nginx
	CertQueue  = "cert"  // dh-nginx → dh-cert
	// StatusQueue carries commit statuses from the deployments' workers
	// to dh-route, the only process that reads the GitHub token.
	StatusQueue = "status" // dh-deploy → dh-route
)

// Kinds of deployment.
const (
	KindSteps = "steps" // check out, then run the build steps
	KindNginx = "nginx" // check out nginx site files for dh-nginx to install
	KindSelf  = "self"  // dh-deployer itself: build, install, migrate, restart (self.go)
)

// ListenSystemd as receive.listen takes the listening socket from systemd
// socket activation ($LISTEN_FDS) instead of opening one.
const ListenSystemd = "systemd"

// Config is the whole configuration file.
type Config struct {
	// QueueDir holds one subdirectory per queue: main, nginx, cert and one
	// per deployment. Absolute. Default "/var/spool/dh-deployer".
	QueueDir string `toml:"queue_dir"`

	// QueueDirThrowaway allows queue_dir on a file system that keeps
	// nothing across a reboot or power cut (tmpfs, ramfs), where an
	// acknowledged delivery is not durable: for demos and tests only.
	// Without it the stages refuse to start there (Load checks). Default
	// false.
	QueueDirThrowaway bool `toml:"queue_dir_throwaway"`

	// StateDir holds what the stages keep between runs: run logs, nginx
	// backups, the ACME webroot. Absolute. Default "/var/lib/dh-deployer".
	StateDir string `toml:"state_dir"`

	// DatabaseURL is the Postgres connection string, as a postgres:// URL
	// or a key=value DSN. Put a password in ~/.pgpass or use peer
	// authentication over the unix socket rather than writing it here. The
	// environment variable DH_DATABASE_URL, when set and not empty,
	// overrides it. Default
	// "postgres:///dh_deployer?host=/run/postgresql&sslmode=disable".
	DatabaseURL string `toml:"database_url"`

	// Receive configures dh-receive, the webhook endpoint.
	Receive Receive `toml:"receive"`

	// GitHub configures the GitHub API calls (commit statuses).
	GitHub GitHub `toml:"github"`

	// Notify configures the notifications dh-route sends: chat webhooks
	// and email, about runs, certificates and failed entries (see
	// notify.go).
	Notify Notify `toml:"notify"`

	// Nginx configures dh-nginx (see nginx.go).
	Nginx Nginx `toml:"nginx"`

	// Cert configures dh-cert (see cert.go).
	Cert Cert `toml:"cert"`

	// Status configures dh-route's status page (see status.go).
	Status Status `toml:"status"`

	// Queues sets who may write each queue and the backlog limits (see
	// queues.go).
	Queues Queues `toml:"queues"`

	// Retention says how long dh-route keeps deliveries, routes and runs
	// (see retention.go).
	Retention Retention `toml:"retention"`

	// Deployments maps each deployment's name to its definition. The name
	// ([a-z0-9][a-z0-9-]*, at most 64 bytes, not main, nginx, cert, status, failed
	// or tmp) is also the name of its queue and of its systemd instance
	// dh-deploy@NAME.
	Deployments map[string]*Deployment `toml:"deployments"`

	// File is the path the configuration was loaded from, or the name
	// given to Parse. It is not a key of the file.
	File string `toml:"-"`
}

// Receive is the [receive] table: dh-receive's HTTP server.
type Receive struct {
	// Listen is where to serve: "host:port" (TCP; an empty host means all
	// addresses), an absolute path (a unix socket, at most 107 bytes), or
	// "systemd" (socket activation). Default "127.0.0.1:3400".
	Listen string `toml:"listen"`

	// Path is the URL path GitHub posts to. Default "/github-webhook".
	Path string `toml:"path"`

	// SecretFiles are files each holding one webhook secret (one trailing
	// newline is ignored). A delivery signed with any of them is accepted,
	// so a secret is rotated by adding the new file, changing it on GitHub,
	// then removing the old one. A relative name is a file in
	// $CREDENTIALS_DIRECTORY (systemd LoadCredential=), or else beside this
	// file (see CredentialPath). Required by
	// dh-receive; the other tools do not read them.
	SecretFiles []string `toml:"secret_files"`

	// MaxBody is the largest request body accepted, in bytes; GitHub caps
	// payloads at 25 MiB. Default 26214400.
	MaxBody int64 `toml:"max_body"`

	// ReadHeaderTimeout bounds reading a request's headers. Default "5s".
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`

	// ReadTimeout bounds reading a whole request. Default "30s".
	ReadTimeout time.Duration `toml:"read_timeout"`

	// WriteTimeout bounds handling a request and writing the response,
	// which includes the durable enqueue. Default "30s".
	WriteTimeout time.Duration `toml:"write_timeout"`

	// ShutdownTimeout is how long requests in flight may finish after
	// SIGTERM. Default "10s".
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`

	// Allow lists the networks (CIDR such as "192.30.252.0/22", or a single
	// address) whose requests are served; others get 403. Empty (and no
	// allow_file) allows every address: the signature is still checked.
	Allow []string `toml:"allow"`

	// AllowFile is an absolute path to a file with more networks for
	// Allow, one per line; blank lines and text after "#" are ignored
	// (for example GitHub's "hooks" ranges from its meta API). Optional;
	// read by dh-receive at start, see Receive.AllowedPrefixes.
	AllowFile string `toml:"allow_file"`

	// TrustedProxies lists the reverse proxies in front of dh-receive:
	// networks (CIDR, or a single address) and "unix" for a peer on a
	// unix socket (nginx behind dh-receive.socket). X-Forwarded-For is
	// read only when the connection's peer is one of them; the client is
	// then the right-most address in it that is not a trusted proxy.
	// Empty (the default) uses the connection's address and ignores the
	// header. It used to be a count of proxies: an integer is an error
	// saying how to write the list.
	TrustedProxies []string `toml:"trusted_proxies"`

	// MaxInFlight bounds the request body bytes dh-receive receives at
	// once, across requests (each counts its Content-Length, or max_body
	// without one); a request beyond it gets 503 with Retry-After. At
	// least max_body. Default 104857600 (100 MiB, four full-size
	// deliveries).
	MaxInFlight int64 `toml:"max_in_flight"`

	// HookSocket is the unix socket `dh-receive hook` (a git
	// post-receive hook) sends pushes to. dh-receive listens on it when
	// HookUsers is not empty: under socket activation (listen =
	// "systemd") it is the socket named "hook" (dh-receive-hook.socket),
	// otherwise dh-receive creates it (mode 0660). Default
	// "/run/dh-receive-hook.sock".
	HookSocket string `toml:"hook_socket"`

	// HookUsers maps a Unix user to the repositories ("owner/name", as
	// deployments name them) that user's pushes may deploy through the
	// hook socket; dh-receive identifies the user by the socket's peer
	// credentials (SO_PEERCRED), so a user cannot queue another's
	// repository. Empty (the default): no hook socket.
	HookUsers map[string][]string `toml:"hook_users"`

	// MinFreeBytes is the free space below which /healthz reports the
	// queue filesystem unhealthy, in bytes; 0 disables the check. Default
	// 104857600 (100 MiB).
	MinFreeBytes int64 `toml:"min_free_bytes"`

	// MaxQueueAge is the age of the oldest entry in queues/main beyond
	// which /healthz reports that dh-route is not keeping up. Default "5m".
	MaxQueueAge time.Duration `toml:"max_queue_age"`

	// MetricsTokenFile holds the token Prometheus must send to GET
	// /metrics as "Authorization: Bearer TOKEN" (bearer_token_file in its
	// scrape configuration); one trailing newline is ignored, and a
	// relative name is looked up as CredentialPath says. Empty, the
	// default: dh-receive serves no /metrics (404). The listener faces
	// the internet through a proxy, so the metrics need a token.
	MetricsTokenFile string `toml:"metrics_token_file"`

	// StatusURL is dh-route's status listener as dh-receive reaches it:
	// "http://HOST:PORT" or "unix:/PATH" (status.listen). dh-receive,
	// which has no database, reads there what became of a delivery
	// (/status/deliveries/ID.json) and a run's log, for POST /deploy/NAME
	// with ?wait= and for `dh-receive hook --wait`. Empty, the default:
	// no waiting (such requests get 501 naming this key).
	StatusURL string `toml:"status_url"`

	// StatusTokenFile holds the status listener's token (status.token_file
	// of dh-route, in a copy dh-receive may read), sent as "Authorization:
	// Bearer TOKEN". Required with an http status_url; a relative name is
	// looked up as CredentialPath says.
	StatusTokenFile string `toml:"status_token_file"`

	// StatusPageURL is the status page's address as people reach it (for
	// example "https://deploy.example.org", an nginx site in front of the
	// status listener); the answer to POST /deploy/NAME points its
	// Location header at STATUS_PAGE_URL/status/deliveries/ID. Default:
	// status_url when it is http, else the Location is that path alone.
	StatusPageURL string `toml:"status_page_url"`

	// MaxWaiting bounds the requests waiting for their run at once
	// (?wait= and hook --wait, each holding a connection and a goroutine
	// for up to 10 minutes); one more gets 503 with Retry-After, before
	// anything is queued. One deployment's token requests, or one hook
	// user's pushes, hold at most a quarter of them (at least one).
	// Default 32.
	MaxWaiting int `toml:"max_waiting"`
}

// GitHub is the [github] table.
type GitHub struct {
	// APIURL is the base URL of the REST API (http or https, no user
	// information). Default "https://api.github.com".
	APIURL string `toml:"api_url"`

	// TokenFile holds a token allowed to create commit statuses; one
	// trailing newline is ignored. A relative name is looked up as
	// CredentialPath says. Optional: without it no statuses are set.
	TokenFile string `toml:"token_file"`

	// StatusContext is the context (the label) of the commit statuses.
	// Default "dh-deployer".
	StatusContext string `toml:"status_context"`

	// WebURL is where the repositories' web pages are: the status page
	// links a run's commit to WEB_URL/OWNER/NAME/commit/SHA (OWNER/NAME
	// being the deployment's repository). Default "https://github.com";
	// for GitHub Enterprise "https://HOST", or another forge whose commit
	// pages have that shape (Gitea, Forgejo). Only the deployments that
	// fetch from its host (see FetchURL) get links; the others show the
	// bare commit. See CommitURL.
	WebURL string `toml:"web_url"`

	// TargetURL is a Go text/template for the statuses' details link;
	// the stage that sets statuses documents the fields it offers.
	// Optional: empty sets no link.
	TargetURL string `toml:"target_url"`
}

// Deployment is one [deployments.NAME] table.
type Deployment struct {
	// Name is the key under [deployments]; filled in by Load. It is not a
	// key of the table.
	Name string `toml:"-"`

	// Kind is "steps" (check out, then run Steps) or "nginx" (the checkout
	// holds nginx site files that dh-nginx installs, filtered by Sites).
	// Default "steps".
	Kind string `toml:"kind"`

	// Repository is the GitHub repository as "owner/name", compared
	// without regard to case with payload.repository.full_name. Required.
	Repository string `toml:"repository"`

	// Branches are the branches followed, by name without "refs/heads/".
	// An entry may be a path.Match pattern ("release-*"). A deployment
	// follows at least one branch or tag.
	Branches []string `toml:"branches"`

	// Tags are the tags followed, by name without "refs/tags/", as
	// path.Match patterns. Optional.
	Tags []string `toml:"tags"`

	// Path is the absolute, clean path of the checkout. Required; no two
	// deployments share one.
	Path string `toml:"path"`

	// CloneURL is where to fetch from: any git URL ("https://…",
	// "ssh://…", "git@host:owner/name.git") or an absolute local path; it
	// may not start with "-". Optional: default
	// "https://github.com/OWNER/NAME.git" from Repository (never a URL
	// taken from a payload); see FetchURL.
	CloneURL string `toml:"clone_url"`

	// Events are the GitHub event names the deployment takes. Default
	// ["push"].
	Events []string `toml:"events"`

	// Enabled, when false, makes dh-route skip the deployment (the
	// delivery is recorded, nothing is queued). Default true; see
	// IsEnabled.
	Enabled *bool `toml:"enabled"`

	// Steps are the build steps, run in order in the checkout after each
	// checkout, each an argv list: the first element is the program (an
	// absolute path, a name looked up in the step environment's PATH, or a
	// path relative to the checkout), the rest its arguments. No shell is
	// involved unless a step says ["sh", "-c", "…"]. A step that fails
	// fails the run. Empty means check out only. Not allowed for kind
	// "nginx".
	Steps [][]string `toml:"steps"`

	// Environment is added to the steps' environment. Names match
	// [A-Za-z_][A-Za-z0-9_]*; names starting with "DH_" are reserved for
	// the variables dh-deploy sets itself. config.toml is readable by
	// every stage and every deployment's user: no secrets here (see
	// EnvironmentFile).
	Environment map[string]string `toml:"environment"`

	// EnvironmentFile is the absolute path of a file of NAME=VALUE lines
	// (blank lines and lines starting with "#" are skipped; no quoting,
	// no expansion) added to the steps' environment after Environment:
	// the deployment's secrets. The worker reads it at each run and
	// refuses it unless it is a regular file owned by the worker's user
	// and readable by nobody else (mode 0600 or 0400), so that no other
	// deployment's build can read it. Optional.
	EnvironmentFile string `toml:"environment_file"`

	// Notify names the [notify.targets] told about this deployment's
	// runs (each target's "on" says which: success, failure). Optional:
	// default notify.default_targets; [] sends none.
	Notify []string `toml:"notify"`

	// TokenFiles hold the tokens that may trigger this deployment with
	// POST /deploy/NAME on dh-receive (Authorization: Bearer TOKEN), for CI
	// systems and scripts that cannot sign GitHub deliveries. Each file
	// holds one token, read like a webhook secret (a relative name is
	// looked up as CredentialPath says); several allow rotation.
	// Optional: without any, the deployment cannot be triggered by token.
	TokenFiles []string `toml:"token_files"`

	// User is the Unix user dh-deploy@NAME runs as: what the install
	// scripts give the systemd instance (User=); the worker never changes
	// user itself. It is also the database role (peer authentication)
	// that dh-route records as the one whose runs these are: the runs
	// table's row-level security lets a deployment's role touch only its
	// own deployments' runs, so it must be the worker's real user.
	// Optional: default "dh-deploy", and for kind "nginx"
	// "dh-deploy-NAME" (see RunsAs). An nginx deployment's user is its
	// own: no other deployment may run as it, nor may it be a stage's
	// user or root, since dh-nginx accepts an nginx-sites entry only from
	// a file this user owns (docs/nginx.md).
	User string `toml:"user"`

	// Timeout bounds one whole run (fetch, checkout, every step). Default
	// "30m".
	Timeout time.Duration `toml:"timeout"`

	// StepTimeout bounds each step and git command; at most Timeout.
	// Default "10m", or Timeout if that is shorter.
	StepTimeout time.Duration `toml:"step_timeout"`

	// CleanUntracked removes untracked and ignored files from the checkout
	// (git clean -ffdx) before the steps run. Default false, which keeps
	// build caches and files the application writes.
	CleanUntracked bool `toml:"clean_untracked"`

	// Strategy is how a kind "steps" deployment makes a commit live:
	// "releases" (the default) builds each run in a new directory under
	// ReleasesDir and then switches Path, a symbolic link, to it
	// atomically; "in-place" checks the commit out in Path itself and runs
	// the steps there. Kinds "nginx" and "self" are always "in-place".
	// See release.go and docs/deploy.md.
	Strategy string `toml:"strategy"`

	// ReleasesDir holds the releases, the local mirror of the repository
	// (repo.git) and the shared paths (shared/). Absolute and clean.
	// Default Path + ".releases". Only for strategy "releases".
	ReleasesDir string `toml:"releases_dir"`

	// KeepReleases is how many releases of succeeded runs are kept;
	// older ones are deleted after a successful switch, never the live
	// one nor the one before it. Default 5.
	KeepReleases int `toml:"keep_releases"`

	// Shared are paths, relative to a release ("storage", ".env"), that
	// live once in ReleasesDir/shared/ and are linked (a symbolic link)
	// into every release before its steps run.
	Shared []string `toml:"shared"`

	// Carry are paths, relative to a release ("node_modules"), copied
	// from the live release into the new one before its steps run, by
	// reflinks where the file system has them, else hard links: build
	// caches that the steps then update.
	Carry []string `toml:"carry"`

	// Activate are argv lists, like Steps, run in the new release after
	// the switch (typically a restart of the app's unit). If one fails,
	// Path switches back and the previous release's activation runs again.
	Activate [][]string `toml:"activate"`

	// HealthURL is fetched (GET) after the activation; a 2xx answer is
	// healthy. Optional; at most one of HealthURL and HealthCommand.
	HealthURL string `toml:"health_url"`

	// HealthCommand is an argv list run in the new release after the
	// activation; exit status 0 is healthy. Optional.
	HealthCommand []string `toml:"health_command"`

	// HealthTimeout bounds each try of the health check. Default "10s".
	HealthTimeout time.Duration `toml:"health_timeout"`

	// HealthRetries is how many more tries a failing health check gets.
	// Default 3.
	HealthRetries *int `toml:"health_retries"`

	// HealthInterval is the wait between two tries. Default "1s".
	HealthInterval time.Duration `toml:"health_interval"`

	// Coalesce lets the worker skip queued pushes that a later queued push
	// to the same branch supersedes, deploying only the newest. Default
	// true; see Coalesces.
	Coalesce *bool `toml:"coalesce"`

	// Self configures a deployment of kind "self" (see self.go); not
	// allowed for the other kinds.
	Self *Self `toml:"self"`

	// Windows limit when the worker deploys pushes: entries wait in the
	// queue outside them (coalescing still applies). Each is "DAYS
	// HH:MM-HH:MM": DAYS is "*", a day ("mon"), a range ("mon-fri") or a
	// list of those ("mon,wed,fri-sun"); the end is after the start.
	// Optional: none means any time. See windows.go.
	Windows []string `toml:"windows"`

	// TimeZone is the IANA time zone of Windows ("Europe/London").
	// Default "Local", the host's.
	TimeZone string `toml:"time_zone"`

	// Sites selects which of the checkout's sites dh-nginx installs, for
	// kind "nginx" (required there, not allowed for kind "steps"). Rules
	// apply in order and the last rule whose select matches a site
	// decides; a site no rule matches is not installed. A rule whose
	// select contains "*" matches every site and makes the rules before
	// it irrelevant. Write it as an array of inline tables:
	// sites = [{ rule = "include", select = ["api.durhack.com"] }].
	Sites []SiteRule `toml:"sites"`

	// Domains are the host names the sites of a kind "nginx" deployment
	// may serve: exact names ("example.org") and wildcards
	// ("*.example.org", every name below example.org at any depth, as
	// nginx matches it; not example.org itself). Every server_name of its
	// sites, and so every certificate it asks for, and every site's name
	// (its certificate's name) must fall inside them. No two deployments
	// may claim an overlapping name (see DomainsOverlap). Without any,
	// dh-nginx installs none of the deployment's sites. Only for kind
	// "nginx".
	Domains []string `toml:"domains"`

	// Serve are the directories the deployment's sites may serve files
	// from: every root, alias and auth_basic_user_file must lie in one of
	// them. Absolute and clean; not "/", and none may hold another
	// deployment's checkout or dh-deployer's own directories. Default
	// none: the sites may not use root or alias at all. Only for kind
	// "nginx".
	Serve []string `toml:"serve"`

	// Upstreams are the only addresses the deployment's sites may proxy
	// to (proxy_pass, fastcgi_pass, uwsgi_pass, scgi_pass, grpc_pass,
	// memcached_pass, and server in an upstream block): "host:port"
	// ("app.internal:8080", "10.0.0.5:3000", "[fd00::5]:3000") or
	// "unix:/absolute/path.sock". A loopback address or a unix socket is
	// allowed only when listed here, by its exact port or path. Default
	// none: no proxying. Only for kind "nginx".
	Upstreams []string `toml:"upstreams"`

	// UnsafeDirectives are nginx directive names the deployment's sites
	// may use beyond dh-nginx's site policy (docs/nginx.md), with their
	// arguments unchecked: whoever can push to the repository gets what
	// the directive can do as nginx. Directives that configure nginx
	// itself or run code (log_format, load_module, user, lua_*, ...) can
	// never be allowed. Default none. Only for kind "nginx".
	UnsafeDirectives []string `toml:"unsafe_directives"`
}

// SiteRule is one entry of a deployment's Sites.
type SiteRule struct {
	// Rule is "include" or "exclude".
	Rule string `toml:"rule"`

	// Select lists site names (the file names of the sites, such as
	// "api.durhack.com"), each a path.Match pattern; "*" is every site.
	// Not empty.
	Select []string `toml:"select"`
}

// Path returns the configuration file to load: flag if not empty, else
// $DH_CONFIG if not empty, else DefaultPath.
func Path(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if getenv != nil {
		if p := getenv(EnvConfig); p != "" {
			return p
		}
	}
	return DefaultPath
}

// Default returns a configuration with every top-level, [receive] and
// [github] default and no deployments.
func Default() *Config {
	return &Config{
		QueueDir:    DefaultQueueDir,
		StateDir:    DefaultStateDir,
		DatabaseURL: DefaultDatabaseURL,
		Receive: Receive{
			Listen:            "127.0.0.1:3400",
			Path:              "/github-webhook",
			MaxBody:           25 << 20,
			MaxInFlight:       100 << 20,
			HookSocket:        "/run/dh-receive-hook.sock",
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			ShutdownTimeout:   10 * time.Second,
			MinFreeBytes:      100 << 20,
			MaxQueueAge:       5 * time.Minute,
			MaxWaiting:        32,
		},
		GitHub: GitHub{
			APIURL:        "https://api.github.com",
			WebURL:        "https://github.com",
			StatusContext: "dh-deployer",
		},
		Nginx:     defaultNginx(),
		Cert:      defaultCert(),
		Retention: defaultRetention(),
		Queues:    defaultQueues(),
		Status:    Status{StallAfter: 10 * time.Minute},
	}
}

// RunLogDir is where a deployment's run logs are kept:
// <state_dir>/logs/<deployment>.
func RunLogDir(stateDir, deployment string) string {
	return filepath.Join(stateDir, "logs", deployment)
}

// Deployment returns the deployment with the given name.
func (c *Config) Deployment(name string) (*Deployment, bool) {
	d, ok := c.Deployments[name]
	return d, ok && d != nil
}

// DeploymentNames returns the names of the deployments, sorted.
func (c *Config) DeploymentNames() []string {
	names := make([]string, 0, len(c.Deployments))
	for name := range c.Deployments {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// QueuePath returns the directory of the named queue: a deployment's name
// or MainQueue, NginxQueue, CertQueue.
func (c *Config) QueuePath(name string) string {
	return filepath.Join(c.QueueDir, name)
}

// IsEnabled reports whether the deployment is enabled (Enabled unset means
// true).
func (d *Deployment) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// Coalesces reports whether superseded queued pushes may be skipped
// (Coalesce unset means true).
func (d *Deployment) Coalesces() bool { return d.Coalesce == nil || *d.Coalesce }

// MatchesRepository reports whether fullName ("owner/name", as in
// payload.repository.full_name) is the deployment's repository, ignoring
// case as GitHub does.
func (d *Deployment) MatchesRepository(fullName string) bool {
	return strings.EqualFold(d.Repository, fullName)
}

// FetchURL returns where the deployment fetches from: CloneURL, or else
// the repository on github.com over https.
func (d *Deployment) FetchURL() string {
	if d.CloneURL != "" {
		return d.CloneURL
	}
	return "https://github.com/" + d.Repository + ".git"
}

// FollowsBranch reports whether the branch (a name without "refs/heads/")
// matches one of Branches.
func (d *Deployment) FollowsBranch(branch string) bool { return matchAny(d.Branches, branch) }

// FollowsTag reports whether the tag (a name without "refs/tags/") matches
// one of Tags.
func (d *Deployment) FollowsTag(tag string) bool { return matchAny(d.Tags, tag) }

// FollowsRef reports whether a full ref ("refs/heads/BRANCH" or
// "refs/tags/TAG") is one the deployment follows.
func (d *Deployment) FollowsRef(ref string) bool {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return d.FollowsBranch(b)
	}
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return d.FollowsTag(t)
	}
	return false
}

// TakesEvent reports whether event (a GitHub event name such as "push") is
// one of Events.
func (d *Deployment) TakesEvent(event string) bool { return slices.Contains(d.Events, event) }

// SelectsSite reports whether Sites selects the named site: the last rule
// with a matching select decides, and no match means not selected.
func (d *Deployment) SelectsSite(site string) bool {
	selected := false
	for _, r := range d.Sites {
		if matchAny(r.Select, site) {
			selected = r.Rule == "include"
		}
	}
	return selected
}

// matchAny reports whether name matches one of the path.Match patterns.
// Validate has rejected malformed patterns.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
