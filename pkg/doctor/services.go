package doctor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/setup"
)

// grant is one privilege roles.sql gives a role.
type grant struct {
	role, privilege, object string
	sequence                bool
}

var grantRE = regexp.MustCompile(`(?m)^GRANT ([A-Z, ]+) ON (SEQUENCE )?([a-z_, ]+) TO ([^;]+);`)

// grants are the GRANT statements of roles.sql, one per role, privilege
// and object.
func grants() ([]grant, error) {
	sql, err := setup.RolesSQL()
	if err != nil {
		return nil, err
	}
	var gs []grant
	for _, m := range grantRE.FindAllStringSubmatch(sql, -1) {
		for _, role := range strings.Split(m[4], ",") {
			role = strings.Trim(strings.TrimSpace(role), `"`)
			for _, priv := range strings.Split(m[1], ",") {
				for _, obj := range strings.Split(m[3], ",") {
					gs = append(gs, grant{role, strings.TrimSpace(priv), strings.TrimSpace(obj), m[2] != ""})
				}
			}
		}
	}
	return gs, nil
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func databaseChecks(ctx context.Context, h *Host) []Result {
	if h.DB == nil {
		return []Result{fail("database_url", "not usable by setup and doctor", "a local database: database_url = \"postgres:///dh_deployer?host=/run/postgresql&sslmode=disable\"")}
	}
	if err := h.DB.Reachable(ctx); err != nil {
		return []Result{fromErr("reachable", "", err, "")}
	}
	rs := []Result{ok("reachable", "PostgreSQL answers at "+h.DB.Host)}
	if exists, err := h.DB.Exists(ctx); err != nil || !exists {
		return append(rs, fail("exists", "no database "+h.DB.Name, "dh-route setup"))
	}
	v, dirty, err := h.DB.Version(ctx)
	switch {
	case err != nil:
		rs = append(rs, fail("migrations", "no schema: "+err.Error(), "dh-route setup"))
	case dirty:
		// No command fixes it: the hint says what to do by hand.
		rs = append(rs, fail("migrations", fmt.Sprintf("version %d is dirty (migration %d did not finish)", v, v),
			fmt.Sprintf("finish or undo migration %d by hand, then: sudo -u postgres psql -d %s -c 'UPDATE schema_migrations SET version = N, dirty = false'", v, h.DB.Name)))
	case v != setup.Latest():
		rs = append(rs, fail("migrations", fmt.Sprintf("version %d, this binary's is %d", v, setup.Latest()), "dh-route setup"))
	default:
		rs = append(rs, ok("migrations", fmt.Sprintf("version %d, current", v)))
	}
	gs, err := grants()
	if err != nil {
		return append(rs, fail("roles", err.Error(), reinstall))
	}
	// One query: for each grant, whether the role exists (NULL if not:
	// has_*_privilege fails for a missing role) and has it.
	var sb strings.Builder
	for _, g := range gs {
		fn := "has_table_privilege"
		if g.sequence {
			fn = "has_sequence_privilege"
		}
		fmt.Fprintf(&sb, "SELECT %s, %s, %s, CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN %s(%s, %s, %s) ELSE NULL END;\n",
			quote(g.role), quote(g.privilege), quote(g.object), quote(g.role), fn, quote(g.role), quote(g.object), quote(g.privilege))
	}
	out, err := h.DB.Query(ctx, h.DB.Name, sb.String())
	if err != nil {
		return append(rs, fail("roles", err.Error(), "dh-route setup"))
	}
	lacks := map[string][]string{}
	var roles []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 4 {
			continue
		}
		if _, seen := lacks[f[0]]; !seen {
			roles = append(roles, f[0])
			lacks[f[0]] = nil
		}
		switch f[3] {
		case "":
			lacks[f[0]] = []string{"the role itself"}
		case "f":
			if len(lacks[f[0]]) == 0 || lacks[f[0]][0] != "the role itself" {
				lacks[f[0]] = append(lacks[f[0]], f[1]+" on "+f[2])
			}
		}
	}
	for _, role := range roles {
		if l := lacks[role]; len(l) > 0 {
			rs = append(rs, fail("role "+role, "lacks "+strings.Join(l, ", "), "dh-route setup"))
		} else {
			rs = append(rs, ok("role "+role, "exists with every grant of roles.sql"))
		}
	}
	// Each deployment's own role, a member of dh-deploy.
	for _, name := range h.Cfg.DeploymentNames() {
		d, _ := h.Cfg.Deployment(name)
		u := d.RunsAs()
		if u == "dh-deploy" {
			continue
		}
		out, err := h.DB.Query(ctx, h.DB.Name, `SELECT pg_has_role(r.oid, 'dh-deploy', 'MEMBER') FROM pg_roles r WHERE r.rolname = :'u' AND r.rolcanlogin;`, "u="+u)
		if err != nil || strings.TrimSpace(out) != "t" {
			rs = append(rs, fail("role "+u, "missing, or not a login role in dh-deploy (deployment "+name+")",
				fmt.Sprintf(`sudo -u postgres psql -d %s -c 'CREATE ROLE "%s" LOGIN IN ROLE "dh-deploy"'`, h.DB.Name, u)))
		} else {
			rs = append(rs, ok("role "+u, "login role in dh-deploy (deployment "+name+")"))
		}
	}
	return rs
}

// units are the units to check: the package's enabled ones (and the
// deployments' instances, and the git hook's socket when receive.hook_users
// is set), and those started on demand or not in use.
func (h *Host) units() (enabled, onDemand []string) {
	enabled = append([]string{}, setup.Units...)
	hook := "dh-receive-hook.socket"
	if len(h.Cfg.Receive.HookUsers) > 0 {
		enabled = append(enabled, hook)
		hook = ""
	}
	for _, name := range h.Cfg.DeploymentNames() {
		if d, _ := h.Cfg.Deployment(name); d.IsEnabled() {
			enabled = append(enabled, "dh-deploy@"+name+".service")
		}
	}
	onDemand = []string{"dh-receive.service", "dh-cert-renew.service", "dh-certbot.service", "dh-nginx-test.service"}
	if hook != "" {
		onDemand = append(onDemand, hook) // enabled only with receive.hook_users
	}
	return enabled, onDemand
}

func (h *Host) unitProps(ctx context.Context, unit string) map[string]string {
	out, _ := h.Run.Run(ctx, nil, "systemctl", "show", "--property=LoadState,UnitFileState,ActiveState,SubState,Type", "--", unit)
	props := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = v
		}
	}
	return props
}

const reinstall = "apt-get install --reinstall dh-deployer"

func unitChecks(ctx context.Context, h *Host) []Result {
	if !h.Booted {
		return []Result{ok("systemd", "not a systemd host: no units to check (docs/operations.md, Without systemd)")}
	}
	enabled, onDemand := h.units()
	var rs []Result
	for _, u := range enabled {
		p := h.unitProps(ctx, u)
		switch {
		case p["LoadState"] != "loaded":
			fix := reinstall
			if strings.HasPrefix(u, "dh-deploy@") {
				fix = "systemctl daemon-reload"
			}
			rs = append(rs, fail(u, "not installed ("+p["LoadState"]+")", fix))
		case p["UnitFileState"] != "enabled" && p["UnitFileState"] != "static":
			rs = append(rs, fail(u, "installed, "+p["UnitFileState"], "systemctl enable --now "+u))
		case p["ActiveState"] == "failed":
			rs = append(rs, fail(u, "installed, enabled, failed", "systemctl restart "+u))
		case p["ActiveState"] != "active":
			rs = append(rs, fail(u, "installed, enabled, "+p["ActiveState"], "systemctl start "+u))
		case p["Type"] == "notify" && p["SubState"] != "running":
			rs = append(rs, fail(u, "installed, enabled, active, not ready ("+p["SubState"]+")", "journalctl -u "+u+" -n 30"))
		case p["Type"] == "notify":
			rs = append(rs, ok(u, "installed, enabled, running, ready"))
		default:
			rs = append(rs, ok(u, "installed, enabled, "+p["SubState"]))
		}
	}
	for _, u := range onDemand {
		if p := h.unitProps(ctx, u); p["LoadState"] != "loaded" {
			rs = append(rs, fail(u, "not installed ("+p["LoadState"]+")", reinstall))
		} else {
			rs = append(rs, ok(u, "installed (started on demand)"))
		}
	}
	return rs
}

func nginxChecks(ctx context.Context, h *Host) []Result {
	var rs []Result
	for _, prog := range []string{"nginx", "certbot"} {
		if path, err := progpath.Find(prog); err != nil {
			rs = append(rs, fail(prog, "not installed", "apt-get install -y "+prog))
		} else {
			rs = append(rs, ok(prog, path))
		}
	}
	for _, dir := range []string{h.Cfg.Nginx.ConfDir, h.Cfg.Nginx.SnippetsDir} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			rs = append(rs, fail(dir, "missing", "apt-get install -y nginx"))
			continue
		}
		if missing, err := missingACL(ctx, h, dir, "u:dh-nginx:rwX,d:u:dh-nginx:rwX"); err != nil || len(missing) > 0 {
			rs = append(rs, fail(dir, "dh-nginx may not write it (ACL)", h.Installed.ACLScript+" nginx"))
		} else {
			rs = append(rs, ok(dir, "dh-nginx may write it (ACL)"))
		}
	}
	return rs
}

func deploymentChecks(ctx context.Context, h *Host) []Result {
	var rs []Result
	names := h.Cfg.DeploymentNames()
	sort.Strings(names)
	for _, name := range names {
		d, _ := h.Cfg.Deployment(name)
		u := d.RunsAs()
		if !setup.UserExists(u) || !setup.InGroup(u, setup.Group) {
			rs = append(rs, fail(name, "user "+u+" missing or not in "+setup.Group,
				fmt.Sprintf("useradd --system --gid %s --create-home --home-dir /var/lib/%s --shell /usr/sbin/nologin %s", setup.Group, u, u)))
			continue
		}
		var problems []string
		fix := ""
		if fi, err := os.Stat(d.Path); err != nil {
			problems, fix = append(problems, "path "+d.Path+" missing"), fmt.Sprintf("install -d -o %s -g %s -m 0755 %s", u, setup.Group, d.Path)
		} else if owner, _ := setup.Owner(fi); owner != u {
			problems, fix = append(problems, "path "+d.Path+" belongs to "+owner), fmt.Sprintf("chown -R %s %s", u, d.Path)
		}
		// Its queue and run logs, both made by the ACL script.
		queue, logs := h.Cfg.QueuePath(name), config.RunLogDir(h.Cfg.StateDir, name)
		for _, dir := range []string{queue, logs} {
			if fi, err := os.Stat(dir); err != nil {
				problems, fix = append(problems, dir+" missing"), fmt.Sprintf("%s deployment %s %s", h.Installed.ACLScript, name, u)
			} else if owner, _ := setup.Owner(fi); owner != u {
				problems, fix = append(problems, dir+" belongs to "+owner), fmt.Sprintf("%s deployment %s %s", h.Installed.ACLScript, name, u)
			}
		}
		if len(problems) > 0 {
			rs = append(rs, fail(name, strings.Join(problems, "; "), fix))
		} else {
			rs = append(rs, ok(name, fmt.Sprintf("user %s, path %s, queue %s, logs %s", u, d.Path, queue, logs)))
		}
		if err := setup.CloneAccess(ctx, h.Run, u, d.FetchURL(), false); err != nil {
			fix := fmt.Sprintf("sudo -u %s git ls-remote %s", u, d.FetchURL())
			if strings.HasPrefix(d.FetchURL(), "/") {
				fix = fmt.Sprintf("sudo -u %s git config --global --add safe.directory %s", u, d.FetchURL())
			}
			rs = append(rs, fail(name+" clone", err.Error(), fix))
		} else {
			rs = append(rs, ok(name+" clone", u+" can read "+d.FetchURL()))
		}
	}
	return rs
}

// ReceiveSocket is where dh-receive.socket listens.
const ReceiveSocket = "/run/dh-receive.sock"

func webhookChecks(ctx context.Context, h *Host) []Result {
	network, addr := "tcp", h.Cfg.Receive.Listen
	switch {
	case addr == "systemd":
		network, addr = "unix", ReceiveSocket
	case strings.HasPrefix(addr, "/"):
		network = "unix"
	}
	fix := "systemctl restart dh-receive.socket"
	if !h.Booted {
		fix = "start dh-receive (docs/operations.md, Without systemd)"
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		return []Result{fail("healthz", fmt.Sprintf("%s %s: %v", network, addr, err), fix)}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return []Result{fail("healthz", fmt.Sprintf("%s %s answers %s", network, addr, resp.Status), "curl --unix-socket "+addr+" http://localhost/healthz")}
	}
	return []Result{ok("healthz", network+" "+addr+" answers 200")}
}
