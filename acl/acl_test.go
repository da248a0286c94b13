// Package acl_test proves, with real users, real setfacl and the shipped
// sysusers.d and tmpfiles.d files applied by acl/dh-deployer-acl, that each
// stage's user can write exactly the queues DESIGN.md gives it.
package acl_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// setup creates the stage users (removed afterwards if the test made
// them) and returns a root for DH_ROOT that every user may traverse.
func setup(t *testing.T) string {
	t.Helper()
	testenv.Command(t, "setfacl")
	testenv.Command(t, "runuser")
	made := testenv.MakeStageUsers(t, "./dh-deployer-acl", "../systemd/dh-deployer.sysusers")
	for _, name := range made { // users made now have the sysusers file's home
		u, err := user.Lookup(name)
		want := "/nonexistent"
		if name == "dh-deploy" {
			want = "/var/lib/dh-deployer/home"
		}
		if err != nil || u.HomeDir != want {
			t.Errorf("user %s: %+v, %v; want home %s", name, u, err, want)
		}
	}
	root, err := os.MkdirTemp("/tmp", "dh-acl.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	return root
}

// aclTool runs acl/dh-deployer-acl with DH_ROOT=root.
func aclTool(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("./dh-deployer-acl", args...)
	cmd.Env = append(os.Environ(), "DH_ROOT="+root, "DH_SYSUSERS=../systemd/dh-deployer.sysusers",
		"DH_TMPFILES=../systemd/dh-deployer.tmpfiles")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dh-deployer-acl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// as runs a shell command as a stage user, the way its unit runs it
// (primary group dh-deployer), and reports whether it succeeded.
func as(t *testing.T, u, script string) bool {
	t.Helper()
	cmd := exec.Command("runuser", "-u", u, "-g", "dh-deployer", "--", "sh", "-c", "umask 027; "+script)
	return cmd.Run() == nil
}

// publish is what pkg/queue does: stage in .tmp, then link into the queue.
func publish(q, name string) string {
	return fmt.Sprintf("echo '{}' > %[1]s/.tmp/%[2]s && mv %[1]s/.tmp/%[2]s %[1]s/%[2]s", q, name)
}

func TestQueuePrivileges(t *testing.T) {
	root := setup(t)
	aclTool(t, root, "queues")
	aclTool(t, root, "deployment", "api")
	spool := filepath.Join(root, "var/spool/dh-deployer")
	q := func(name string) string { return filepath.Join(spool, name) }

	// Who may publish where: DESIGN.md's privilege table.
	feeds := map[string][]string{
		"dh-receive": {"main"},
		"dh-route":   {"api"},
		"dh-deploy":  {"status"}, // issue 14: not nginx (only an nginx deployment's own user, granted below); issue 17: statuses
		"dh-nginx":   {"cert"},
		"dh-cert":    {"nginx"},
	}
	consumes := map[string]string{"main": "dh-route", "api": "dh-deploy", "nginx": "dh-nginx", "cert": "dh-cert", "status": "dh-route"}
	for _, u := range testenv.StageUsers {
		for _, queue := range []string{"main", "api", "nginx", "cert", "status"} {
			if consumes[queue] == u {
				continue // a consumer owns its queue
			}
			want := strings.Contains(strings.Join(feeds[u], ","), queue)
			got := as(t, u, publish(q(queue), u+".json"))
			if got != want {
				t.Errorf("%s publishing to queues/%s: allowed=%v; want %v", u, queue, got, want)
			}
		}
	}
	// Each consumer reads and removes what its writers published; nobody
	// else can read them.
	for queue, consumer := range consumes {
		for _, w := range testenv.StageUsers {
			entry := filepath.Join(q(queue), w+".json")
			if _, err := os.Stat(entry); err != nil {
				continue
			}
			for _, u := range testenv.StageUsers {
				if u == consumer || u == w {
					continue
				}
				if as(t, u, "cat "+entry) {
					t.Errorf("%s can read %s's entry in queues/%s; only %s should", u, w, queue, consumer)
				}
			}
			if !as(t, consumer, "cat "+entry+" >/dev/null && mv "+entry+" "+q(queue)+"/failed/ && rm "+q(queue)+"/failed/"+w+".json") {
				t.Errorf("%s cannot read, fail and remove %s's entry in queues/%s", consumer, w, queue)
			}
		}
	}
	// An nginx deployment's own user may publish to queues/nginx once
	// granted (deployment NAME USER --nginx), and dh-deploy never.
	if as(t, "nobody", publish(q("nginx"), "sites.json")) {
		t.Errorf("nobody can publish to queues/nginx before the grant")
	}
	aclTool(t, root, "deployment", "sites", "nobody", "--nginx")
	if !as(t, "nobody", publish(q("nginx"), "sites.json")) || !as(t, "dh-nginx", "cat "+q("nginx")+"/sites.json") {
		t.Errorf("after deployment sites nobody --nginx: nobody cannot publish to queues/nginx, or dh-nginx cannot read it")
	}
	cmd := exec.Command("./dh-deployer-acl", "deployment", "sites", "dh-deploy", "--nginx")
	cmd.Env = append(os.Environ(), "DH_ROOT="+root)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("deployment sites dh-deploy --nginx succeeded; want it refused\n%s", out)
	}
	aclTool(t, root, "--undo", "deployment", "sites", "nobody", "--nginx")
	if as(t, "nobody", publish(q("nginx"), "undone.json")) {
		t.Errorf("after --undo ... --nginx nobody can still publish to queues/nginx")
	}
	// A user with the dh-receive hook gets the group of the hook's socket,
	// never a queue (issue 17, finding 5): dh-receive queues its pushes.
	aclTool(t, root, "hook", "nobody")
	if !inGroup(t, "nobody", "dh-hook") || as(t, "nobody", publish(q("main"), "hook.json")) || as(t, "nobody", publish(q("api"), "hook.json")) {
		t.Errorf("after hook nobody: nobody should be in dh-hook and publish to no queue")
	}
	aclTool(t, root, "--undo", "hook", "nobody")
	if inGroup(t, "nobody", "dh-hook") {
		t.Errorf("after --undo hook nobody: nobody is still in dh-hook")
	}
	// dh-receive's health check lists failed/; dh-route's resume reads the
	// deployment queues' failed/.
	if !as(t, "dh-receive", "ls "+q("main")+"/failed") || !as(t, "dh-route", "ls "+q("api")+"/failed") {
		t.Errorf("the health check or the resume check cannot list failed/")
	}
}

func TestIdempotentDryRunUndo(t *testing.T) {
	root := setup(t)
	dump := func() string {
		out, err := exec.Command("getfacl", "-R", "-p", root).CombinedOutput()
		if err != nil {
			t.Fatalf("getfacl: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := aclTool(t, root, "--dry-run", "queues"); !strings.Contains(out, "setfacl -m") {
		t.Fatalf("--dry-run printed %q", out)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("--dry-run created %v", entries)
	}
	aclTool(t, root, "queues")
	first := dump()
	aclTool(t, root, "queues")
	if second := dump(); second != first {
		t.Errorf("a second run changed the ACLs:\n%s\nthen\n%s", first, second)
	}
	aclTool(t, root, "--undo", "queues")
	if as(t, "dh-receive", publish(filepath.Join(root, "var/spool/dh-deployer/main"), "x.json")) {
		t.Errorf("after --undo dh-receive can still publish to queues/main")
	}
}

func TestNginxConfDir(t *testing.T) {
	root := setup(t)
	conf := filepath.Join(root, "etc/nginx/conf.d")
	os.MkdirAll(conf, 0o755)
	os.MkdirAll(filepath.Join(root, "etc/nginx/snippets"), 0o755)
	os.Chmod(filepath.Join(root, "etc"), 0o755)
	os.Chmod(filepath.Join(root, "etc/nginx"), 0o755)
	old := filepath.Join(conf, "old.conf")
	os.WriteFile(old, []byte("# root's\n"), 0o644)
	le := filepath.Join(root, "etc/letsencrypt")
	os.MkdirAll(filepath.Join(le, "archive/site"), 0o700)
	os.MkdirAll(filepath.Join(le, "live/site"), 0o700)
	os.Chmod(le, 0o755)
	for _, d := range []string{"archive", "live"} {
		os.Chmod(filepath.Join(le, d), 0o700)
		os.Chmod(filepath.Join(le, d, "site"), 0o755)
	}
	os.WriteFile(filepath.Join(le, "archive/site/fullchain1.pem"), []byte("cert"), 0o644)
	os.WriteFile(filepath.Join(le, "archive/site/privkey1.pem"), []byte("key"), 0o600)
	os.Symlink("../../archive/site/fullchain1.pem", filepath.Join(le, "live/site/fullchain.pem"))
	os.Symlink("../../archive/site/privkey1.pem", filepath.Join(le, "live/site/privkey.pem"))
	aclTool(t, root, "nginx")
	if !as(t, "dh-nginx", "test -e "+le+"/live/site/fullchain.pem") || as(t, "dh-nginx", "cat "+le+"/live/site/privkey.pem") {
		t.Errorf("dh-nginx cannot see that a certificate exists, or can read its key")
	}
	if as(t, "dh-route", "test -e "+le+"/live/site/fullchain.pem") {
		t.Errorf("dh-route can look into /etc/letsencrypt/live")
	}
	if !as(t, "dh-nginx", "echo new > "+conf+"/new.conf && echo changed > "+old+" && rm "+conf+"/new.conf") {
		t.Errorf("dh-nginx cannot create, change and remove site files in conf.d")
	}
	if fi, err := os.Stat(old); err != nil || fi.Sys() == nil || ownerOf(t, old) != "root" {
		t.Errorf("%s changed owner; want it to stay root's", old)
	}
	for _, u := range []string{"dh-route", "dh-deploy", "dh-cert", "dh-receive"} {
		if as(t, u, "echo x > "+conf+"/"+u+".conf") {
			t.Errorf("%s can write /etc/nginx/conf.d", u)
		}
	}
	aclTool(t, root, "--undo", "nginx")
	if as(t, "dh-nginx", "echo x > "+conf+"/after-undo.conf") {
		t.Errorf("after --undo dh-nginx can still write conf.d")
	}
	if out, _ := exec.Command("getfacl", "-R", "-s", "-p", conf).CombinedOutput(); len(out) != 0 {
		t.Errorf("after --undo conf.d still has ACLs:\n%s", out)
	}
}

func ownerOf(t *testing.T, path string) string {
	out, err := exec.Command("stat", "-c", "%U", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// systemd-tmpfiles applying the shipped file and dh-deployer-acl queues
// make the same tree: same owners, modes and ACLs.
func TestScriptMatchesTmpfiles(t *testing.T) {
	tmpfiles := testenv.Command(t, "systemd-tmpfiles")
	viaScript := setup(t)
	aclTool(t, viaScript, "queues")
	viaSystemd, err := os.MkdirTemp("/tmp", "dh-tmpfiles.")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(viaSystemd)
	os.MkdirAll(filepath.Join(viaSystemd, "etc"), 0o755)
	for _, f := range []string{"/etc/passwd", "/etc/group"} { // --root resolves users there
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(viaSystemd, f), data, 0o644)
	}
	conf, _ := os.Open("../systemd/dh-deployer.tmpfiles")
	defer conf.Close()
	cmd := exec.Command(tmpfiles, "--create", "--root="+viaSystemd, "-")
	cmd.Stdin = conf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	tree := func(root string) string {
		out, err := exec.Command("getfacl", "-R", "-p", filepath.Join(root, "var")).CombinedOutput()
		if err != nil {
			t.Fatalf("getfacl: %v\n%s", err, out)
		}
		return strings.ReplaceAll(string(out), root, "ROOT")
	}
	if a, b := tree(viaSystemd), tree(viaScript); a != b || !strings.Contains(a, "user:dh-receive:rwx") {
		t.Errorf("systemd-tmpfiles made:\n%s\ndh-deployer-acl queues made:\n%s", a, b)
	}
}

// TestDeploymentUnits: `deployment NAME USER --unit ... / --self` writes
// the polkit rule that lets exactly USER restart, reload and try-restart
// exactly those units (a deployment's steps run under no_new_privs, so
// this is how they restart their app); --undo removes it.
func TestDeploymentUnits(t *testing.T) {
	root := setup(t)
	aclTool(t, root, "deployment", "api", "dh-route", "--unit", "api.service", "--unit", "worker@*.service")
	aclTool(t, root, "deployment", "deployer", "dh-deploy", "--self")
	api := filepath.Join(root, "etc/polkit-1/rules.d/60-dh-deploy-api.rules")
	self := filepath.Join(root, "etc/polkit-1/rules.d/60-dh-deploy-deployer.rules")
	for _, f := range []string{api, self} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("stat %s = %v, %v; want mode 0644 (polkitd reads it)", f, fi, err)
		}
	}
	tests := []struct {
		q    testenv.PolkitQuestion
		want string
	}{
		{testenv.PolkitQuestion{User: "dh-route", Unit: "api.service", Verb: "restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "api.service", Verb: "reload"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "api.service", Verb: "try-restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "worker@3.service", Verb: "restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "api.service", Verb: "stop"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "api.service", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "nginx.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "worker@.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "worker@x.socket", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "dh-route.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "api.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-route.service", Verb: "restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-receive.service", Verb: "restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-deploy@api.service", Verb: "restart"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-certbot.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-nginx.service", Verb: "stop"}, "no answer"},
	}
	var qs []testenv.PolkitQuestion
	for _, tt := range tests {
		qs = append(qs, tt.q)
	}
	got := testenv.Polkit(t, []string{api, self}, qs)
	for i, tt := range tests {
		if got[i] != tt.want {
			t.Errorf("%s %s %s: %q; want %q", tt.q.User, tt.q.Verb, tt.q.Unit, got[i], tt.want)
		}
	}
	// A unit name that could break out of the rule is refused.
	for _, bad := range []string{`a".service`, "app", "a b.service", "*.service", "x@*.socket"} {
		cmd := exec.Command("./dh-deployer-acl", "deployment", "bad", "--unit", bad)
		cmd.Env = append(os.Environ(), "DH_ROOT="+root, "DH_SYSUSERS=../systemd/dh-deployer.sysusers",
			"DH_TMPFILES=../systemd/dh-deployer.tmpfiles")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "bad unit name") {
			t.Errorf("deployment bad --unit %q = %v\n%s; want refused", bad, err, out)
		}
	}
	aclTool(t, root, "--undo", "deployment", "api", "dh-route")
	if _, err := os.Stat(api); !os.IsNotExist(err) {
		t.Errorf("after --undo: stat %s = %v; want gone", api, err)
	}
}

// TestNoWildcardSudo is issue 17's finding 9: no sudoers line dh-deployer
// ships, documents or generates holds a wildcard (the documented
// `systemctl --no-block restart dh-deploy@*` let `sudo -l` allow
// `dh-deploy@x reboot.target`). The self deployment's rule on a host
// without systemd is generated exactly (deployment NAME USER --self
// --sudo): real sudo allows its user exactly those argument vectors.
func TestNoWildcardSudo(t *testing.T) {
	root := setup(t)
	testenv.Command(t, "visudo")
	testenv.Command(t, "sudo")
	bin := testenv.Build(t, "dh-deploy")
	config := filepath.Join(root, "config.toml")
	doc := `queue_dir = "/var/spool/dh-deployer"
state_dir = "/var/lib/dh-deployer"
database_url = "postgres:///dh_deployer?host=/nonexistent"
[receive]
secret_files = ["/nonexistent"]
[deployments.app]
repository = "o/app"
branches = ["main"]
path = "/srv/app"
[deployments.deployer]
kind = "self"
repository = "o/dh-deployer"
branches = ["main"]
path = "/srv/dh-deployer"
user = "dh-deploy"
steps = [["make", "build"]]
`
	if err := os.WriteFile(config, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("./dh-deployer-acl", "deployment", "deployer", "dh-deploy", "--self", "--sudo")
	cmd.Env = append(os.Environ(), "DH_ROOT="+root, "DH_SYSUSERS=../systemd/dh-deployer.sysusers",
		"DH_TMPFILES=../systemd/dh-deployer.tmpfiles", "DH_DEPLOY="+bin, "DH_CONFIG="+config)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dh-deployer-acl deployment deployer dh-deploy --self --sudo: %v\n%s", err, out)
	}
	generated := filepath.Join(root, "etc/sudoers.d/dh-deploy-deployer")
	if fi, err := os.Stat(generated); err != nil || fi.Mode().Perm() != 0o440 {
		t.Fatalf("stat %s = %v, %v; want mode 0440", generated, fi, err)
	}
	if out, err := exec.Command("visudo", "-cf", generated).CombinedOutput(); err != nil {
		t.Errorf("visudo -cf %s: %v\n%s", generated, err, out)
	}

	// Every sudoers line: the shipped drop-ins, the documents' examples,
	// the generated rule.
	files, _ := filepath.Glob("../sudoers/*")
	docs, _ := filepath.Glob("../docs/*")
	files = append(append(append(files, docs...), "../README.md", "../docs/config.example.toml"), generated)
	rules := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "\\\n", " ") // sudoers continues a line ending in \\
		for i, line := range strings.Split(text, "\n") {
			_, cmds, ok := strings.Cut(line, "NOPASSWD:")
			if alias, ok2 := strings.CutPrefix(strings.TrimSpace(line), "Cmnd_Alias "); ok2 {
				_, cmds, ok = strings.Cut(alias, "=")
			}
			if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") && !strings.Contains(f, "docs/") {
				continue
			}
			rules++
			if bad := wildcard(cmds); bad != "" {
				t.Errorf("%s:%d: %q: %s", f, i+1, strings.TrimSpace(line), bad)
			}
		}
	}
	if rules < 3 {
		t.Errorf("found %d sudoers rules; want at least the shipped two and the generated one", rules)
	}

	// Real sudo, with the generated rule installed: exactly its commands.
	installed := "/etc/sudoers.d/dh-acltest-self"
	data, err := os.ReadFile(generated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(installed, data, 0o440); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(installed)
	for _, c := range []struct {
		argv string
		want bool
	}{
		{"/usr/bin/systemctl --no-block restart dh-deploy@app dh-deploy@deployer", true},
		{"/usr/bin/systemctl restart dh-receive dh-route dh-nginx dh-cert", true},
		{"/usr/bin/systemctl --no-block restart dh-deploy@x reboot.target", false},
		{"/usr/bin/systemctl --no-block restart dh-deploy@app debug-shell.service", false},
		{"/usr/bin/systemctl --no-block --job-mode=isolate restart dh-deploy@app rescue.target", false},
		{"/usr/bin/systemctl --no-block restart dh-deploy@app", false},
	} {
		got := as(t, "dh-deploy", "sudo -n -l "+c.argv+" >/dev/null 2>&1")
		if got != c.want {
			t.Errorf("as dh-deploy, sudo -l %s: allowed=%v; want %v", c.argv, got, c.want)
		}
	}
}

// wildcard says why the commands of a sudoers rule allow more than exact
// argument vectors ("" if they do not): a glob character outside a
// regular expression (^...$), or a command without arguments, which sudo
// lets run with any.
func wildcard(cmds string) string {
	for _, c := range strings.Split(cmds, ",") {
		c = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(c), "\\"))
		if c == "" || strings.ToUpper(c) == c { // continuation, or a Cmnd_Alias name
			continue
		}
		prog, args, _ := strings.Cut(c, " ")
		args = strings.TrimSpace(args)
		switch {
		case strings.ContainsAny(prog, "*?["):
			return "a wildcard in the program"
		case args == "":
			return "no argument list: any arguments are allowed"
		case strings.HasPrefix(args, "^") && strings.HasSuffix(args, "$"):
			// a regular expression, anchored: sudo matches it whole
		case strings.ContainsAny(args, "*?["):
			return "a wildcard in the arguments"
		}
	}
	return ""
}

// TestRunLogsPrivate is issue 17's finding 7c: one deployment's run logs
// are readable by its own user and by dh-route (the status page), and by
// no other deployment's user, although they all share the group.
func TestRunLogsPrivate(t *testing.T) {
	root := setup(t)
	aclTool(t, root, "queues")
	aclTool(t, root, "deployment", "api", "dh-deploy")
	aclTool(t, root, "deployment", "web", "dh-cert") // another deployment's user, in the same group
	logs := filepath.Join(root, "var/lib/dh-deployer/logs")
	api, web := filepath.Join(logs, "api"), filepath.Join(logs, "web")
	// The workers write logs as dh-deploy does (umask 022 of the unit, mode 0640).
	for u, dir := range map[string]string{"dh-deploy": api, "dh-cert": web} {
		cmd := exec.Command("runuser", "-u", u, "-g", "dh-deployer", "--", "sh", "-c",
			"umask 022; echo the log of a run, with a token printed by a careless step > "+dir+"/run.log && chmod 0640 "+dir+"/run.log")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("as %s, write a log in %s: %v\n%s", u, dir, err, out)
		}
	}
	for _, c := range []struct {
		user, dir string
		want      bool
	}{
		{"dh-deploy", api, true},
		{"dh-route", api, true},
		{"dh-route", web, true},
		{"dh-cert", web, true},
		{"dh-cert", api, false},
		{"dh-deploy", web, false},
		{"dh-nginx", api, false},
		{"dh-receive", api, false},
	} {
		if got := as(t, c.user, "cat "+c.dir+"/run.log >/dev/null"); got != c.want {
			t.Errorf("%s reading %s/run.log: allowed=%v; want %v", c.user, filepath.Base(c.dir), got, c.want)
		}
		if got := as(t, c.user, "ls "+c.dir+" >/dev/null"); got != c.want {
			t.Errorf("%s listing logs/%s: allowed=%v; want %v", c.user, filepath.Base(c.dir), got, c.want)
		}
	}
}

// inGroup reports whether user u is a member of group g.
func inGroup(t *testing.T, u, g string) bool {
	t.Helper()
	out, err := exec.Command("id", "-nG", u).Output()
	if err != nil {
		t.Fatalf("id -nG %s: %v", u, err)
	}
	return slices.Contains(strings.Fields(string(out)), g)
}

// TestFailedReasonsForRoute: dh-route lists queues/nginx/failed and
// queues/cert/failed and reads the sidecars their consumers write there
// (to notify about failed entries, issue 20), never the entries; no
// other user can read a sidecar.
func TestFailedReasonsForRoute(t *testing.T) {
	root := setup(t)
	aclTool(t, root, "queues")
	for queue, consumer := range map[string]string{"nginx": "dh-nginx", "cert": "dh-cert"} {
		failed := filepath.Join(root, "var/spool/dh-deployer", queue, "failed")
		if !as(t, consumer, "umask 077; echo '{}' > "+failed+"/1.json && echo why > "+failed+"/1.json.why") {
			t.Fatalf("%s cannot write its failed/", consumer)
		}
		// An entry is moved into failed/ with the ACL it had in the queue.
		os.Chmod(filepath.Join(failed, "1.json"), 0o600)
		if !as(t, "dh-route", "ls "+failed+" && cat "+failed+"/1.json.why") {
			t.Errorf("dh-route cannot list queues/%s/failed or read a sidecar", queue)
		}
		if as(t, "dh-route", "cat "+failed+"/1.json") {
			t.Errorf("dh-route can read an entry in queues/%s/failed", queue)
		}
		for _, u := range testenv.StageUsers {
			if u != consumer && u != "dh-route" && as(t, u, "cat "+failed+"/1.json.why") {
				t.Errorf("%s can read a sidecar in queues/%s/failed", u, queue)
			}
		}
	}
}
