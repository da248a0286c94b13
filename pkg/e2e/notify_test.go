package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/notify/notifytest"
)

// TestNotifications: the real stages as their own users, a chat webhook
// and an SMTP server started by the test. A succeeding and a failing push
// each reach both, sent by dh-route; the webhook's URL file is dh-route's
// alone (mode 0600), and the build step that tries to read it, run as
// dh-deploy, cannot: its "Permission denied" is in the failure notice's
// log lines, the secret is in no notice and in no run log (issue 20: the
// worker, whose steps run a repository's code, used to read it). An
// entry in queues/cert/failed is told too.
func TestNotifications(t *testing.T) {
	r := newRig(t, rigOptions{})
	hook, smtp := notifytest.NewHook(t), notifytest.NewSMTP(t, 0)
	const secretPath = "/hooks/T0/SeCrEt-only-dh-route-reads"
	urlFile := filepath.Join(filepath.Dir(r.config), "chat-url")
	if err := os.WriteFile(urlFile, []byte(hook.URL+secretPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownName(t, urlFile, "dh-route")
	app := r.newRepo("e2e/app")
	// Both commits are pushed now (the bare repository is dh-deploy's
	// after a push); each is delivered in turn.
	good := app.commit(t, map[string]string{"index.html": "ok\n"}, 1)
	app.push(t, append(good, app.commit(t, map[string]string{"broken": "1"}, 1)...))
	r.writeConfig(fmt.Sprintf(`
[notify]
default_targets = ["chat", "mail"]
[notify.targets.chat]
kind     = "slack"
url_file = %q
on       = ["success", "failure", "failed-entry"]
[notify.targets.mail]
kind     = "email"
to       = ["ops@example.org"]
from     = "deploy@example.org"
smtp     = %q
starttls = false
on       = ["success", "failure"]
[deployments.app]
repository = %q
branches   = ["main"]
path       = %q
clone_url  = %q
steps      = [%s]
`, urlFile, smtp.Addr, app.fullName, r.checkout("app"), app.bare, config.TOMLArray([]string{"sh", "-c",
		"cat " + urlFile + " || echo could not read the chat URL; test ! -e broken"})))
	r.migrate()
	r.acl("deployment", "app")
	if out, err := exec.Command("runuser", "-u", "dh-deploy", "--", "cat", urlFile).CombinedOutput(); err == nil {
		t.Fatalf("dh-deploy can read %s: %s", urlFile, out)
	}
	// An entry dh-cert failed, before dh-route starts: dh-route reads its
	// reason through the ACL of queues/cert/failed, as dh-route.
	failed := filepath.Join(r.spool, "cert", "failed", "00000000000000000001-1-e2e.json")
	why := `{"entry":"00000000000000000001-1-e2e.json","queue":"cert","error":"certbot: rate limited","exit_code":65,"attempts":3}`
	if out, err := exec.Command("runuser", "-u", "dh-cert", "--", "sh", "-c",
		"echo '{}' > "+failed+" && echo '"+why+"' > "+failed+".why").CombinedOutput(); err != nil {
		t.Fatalf("as dh-cert, fail an entry: %v\n%s", err, out)
	}
	r.startStages([]string{"app"})
	if p := hook.Wait(t, 1, time.Minute)[0]; !strings.HasPrefix(p.Text(), "queues/cert: entry 00000000000000000001-1-e2e.json failed: certbot: rate limited") {
		t.Errorf("first notice %q; want the failed entry of queues/cert", p.Text())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	push := func(sha string) {
		t.Helper()
		payload, err := demo.PushPayload(app.fullName, "refs/heads/main", github.ZeroSHA, sha)
		if err != nil {
			t.Fatal(err)
		}
		if status, err := r.post(ctx, "push", demo.NewGUID(), payload); err != nil || status != 202 {
			t.Fatalf("push = %d, %v; want 202", status, err)
		}
	}
	push(app.commits[0])
	hook.Wait(t, 2, time.Minute)
	smtp.Wait(t, 1, time.Minute)
	push(app.commits[1])
	posts, mails := hook.Wait(t, 3, time.Minute)[1:], smtp.Wait(t, 2, time.Minute)

	ok, bad := app.commits[0][:7], app.commits[1][:7]
	for i, want := range []string{"app: deployed e2e/app@" + ok, "app: FAILED at step 1 (sh, exit 1) deploying e2e/app@" + bad} {
		if !strings.HasPrefix(posts[i].Text(), want) || !strings.HasPrefix(mails[i].Subject, want) {
			t.Errorf("notice %d: chat %q, mail %q; want %q…", i, posts[i].Text(), mails[i].Subject, want)
		}
		fields := []string{"Commit: " + app.commits[i][:7] + " change 1", "Author: e2e", "Triggered: webhook", "Duration: ", "Run: "}
		if i == 1 {
			fields = append(fields, "Failed step: 1 (sh)", "Exit status: 1")
		}
		for _, s := range fields {
			if !strings.Contains(posts[i].Text(), s) || !strings.Contains(mails[i].Body, s) {
				t.Errorf("notice %d lacks %q:\n%s\n%s", i, s, posts[i].Text(), mails[i].Body)
			}
		}
	}
	if !strings.Contains(posts[1].Text(), "Permission denied") || !strings.Contains(mails[1].Body, "could not read the chat URL") {
		t.Errorf("the failure notice lacks the step's log lines:\n%s\n%s", posts[1].Text(), mails[1].Body)
	}
	logs, _ := filepath.Glob(filepath.Join(r.state, "logs", "app", "*.log"))
	for _, f := range logs {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "SeCrEt") {
			t.Errorf("run log %s holds the chat URL: the deployment's user read it", f)
		}
	}
	for i := range posts {
		if strings.Contains(posts[i].Text(), "SeCrEt") || strings.Contains(mails[i].Body, "SeCrEt") {
			t.Errorf("notice %d holds the chat URL", i)
		}
	}
}
