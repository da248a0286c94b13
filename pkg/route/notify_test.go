package route_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/notify/notifytest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// hostile is a commit subject written to abuse every medium: mentions,
// Slack's special links, and a CRLF followed by a header, to add a Bcc to
// the mail.
const hostile = "fix <!channel> @here <@U123>\r\nBcc: victim@example.org"

// noticeRig is dh-route's poster with notify targets: a Slack and a
// Discord webhook and an email target on a local SMTP server, all started
// by the test, and a throwaway database.
type noticeRig struct {
	cfg    *config.Config
	st     *store.Store
	p      *route.Poster
	hook   *notifytest.Hook
	smtp   *notifytest.SMTP
	secret string // the path part of the webhook URLs: a secret
}

func newNoticeRig(t *testing.T, smtpFailures int) *noticeRig {
	t.Helper()
	r := &noticeRig{hook: notifytest.NewHook(t), smtp: notifytest.NewSMTP(t, smtpFailures), secret: "/hooks/SeCrEtPaTh"}
	dir := t.TempDir()
	url := storetest.NewMigrated(t)
	os.WriteFile(filepath.Join(dir, "chat-url"), []byte(r.hook.URL+r.secret+"/slack\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "discord-url"), []byte(r.hook.URL+r.secret+"/discord\n"), 0o600)
	file := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q
[notify]
default_targets = ["chat", "mail"]
[notify.targets.chat]
kind = "slack"
url_file = "chat-url"
on = ["success", "failure", "cert-expiry", "failed-entry"]
[notify.targets.discord]
kind = "discord"
url_file = "discord-url"
[notify.targets.mail]
kind = "email"
to = ["ops@example.org"]
from = "deploy@example.org"
smtp = %q
starttls = false
on = ["success", "failure", "cert-expiry"]
[nginx]
cert_dir = %q
[deployments.app]
repository = "acme/app"
branches = ["main"]
path = "/srv/app"
steps = [["make"], ["make", "test"]]
notify = ["chat", "discord", "mail"]
[deployments.quiet]
repository = "acme/quiet"
branches = ["main"]
path = "/srv/quiet"
notify = []
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), url, r.smtp.Addr, filepath.Join(dir, "live"))
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.cfg, err = config.Load(file); err != nil {
		t.Fatal(err)
	}
	if r.st, err = store.Open(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	if r.p, err = route.NewPoster(r.cfg, r.st, os.Getenv, "dh-deployer/test", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return r
}

// run records a finished run of app with a log of n lines.
func (r *noticeRig) run(t *testing.T, res store.RunResult, subject string, logLines int) store.Run {
	t.Helper()
	ctx := context.Background()
	logDir := config.RunLogDir(r.cfg.StateDir, "app")
	os.MkdirAll(logDir, 0o700)
	run := store.Run{Delivery: fmt.Sprintf("d-%d", time.Now().UnixNano()), Deployment: "app", Ref: "refs/heads/main",
		Commit: strings.Repeat("ab", 20), State: store.RunRunning, StartedAt: time.Now().Add(-12 * time.Second),
		Trigger: "webhook", TriggeredBy: "pusher=mallory", CommitSubject: subject, CommitAuthor: "Mallory <m@example.org>"}
	run.LogPath = filepath.Join(logDir, run.Delivery+".log")
	var log strings.Builder
	for i := 1; i <= logLines; i++ {
		fmt.Fprintf(&log, "log line %d\n", i)
	}
	os.WriteFile(run.LogPath, []byte(log.String()), 0o600)
	id, err := r.st.InsertRun(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.st.FinishRun(ctx, id, res); err != nil {
		t.Fatal(err)
	}
	if run, err = r.st.GetRun(ctx, "app", id); err != nil {
		t.Fatal(err)
	}
	return run
}

// notice hands the poster a run notice published by uid (0: root).
func (r *noticeRig) notice(t *testing.T, deployment string, run int64, state string, uid int) error {
	t.Helper()
	e := event.RunNotice{Deployment: deployment, RunID: run, State: state, CreatedAt: time.Now()}
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return r.p.Handle(context.Background(), &queue.Entry{Name: "n.json", Data: data, Owner: uid})
}

// TestRunNotices: dh-route sends a finished run's notice, read from the
// database and the run's log, to each of the deployment's targets that
// wants its outcome: the fields for a succeeding and a failing build,
// the hostile subject defused, the SMTP server's 451 retried (issue 20).
func TestRunNotices(t *testing.T) {
	r := newNoticeRig(t, 1)
	ok := r.run(t, store.RunResult{State: store.RunSucceeded, ExitCode: new(0)}, "add the login page", 3)
	bad := r.run(t, store.RunResult{State: store.RunFailed, ExitCode: new(2), FailedStep: new(2),
		Error: "step 2 (make test) exited with status 2"}, hostile, 30)
	if err := r.notice(t, "app", ok.ID, store.RunSucceeded, 0); err != nil {
		t.Fatalf("Handle(success notice) = %v", err)
	}
	if err := r.notice(t, "app", bad.ID, store.RunFailed, 0); err != nil {
		t.Fatalf("Handle(failure notice) = %v", err)
	}
	posts := r.hook.Wait(t, 3, 10*time.Second) // chat: success, failure; discord: failure only (its default "on")
	mails := r.smtp.Wait(t, 2, 10*time.Second)
	paths := []string{posts[0].Path, posts[1].Path, posts[2].Path}
	if strings.Join(paths, " ") != r.secret+"/slack "+r.secret+"/slack "+r.secret+"/discord" {
		t.Errorf("posts went to %v; want slack (success), slack and discord (failure)", paths)
	}
	short := ok.Commit[:7]
	texts := []string{posts[0].Text(), mails[0].Subject + "\n" + mails[0].Body}
	for _, text := range texts {
		for _, want := range []string{"app: deployed acme/app@" + short + " (refs/heads/main) in 12s", "add the login page",
			"Mallory", "webhook by pusher=mallory", "https://github.com/acme/app/commit/" + ok.Commit} {
			if !strings.Contains(text, want) {
				t.Errorf("success notice lacks %q:\n%s", want, text)
			}
		}
	}
	// (Discord's text has its Markdown characters backslash-escaped.)
	texts = []string{posts[1].Text(), strings.ReplaceAll(posts[2].Text(), `\`, ""), mails[1].Subject + "\n" + mails[1].Body}
	for _, text := range texts {
		for _, want := range []string{"FAILED at step 2 (make, exit 2)", "Exit status: 2", "pusher=mallory", "Mallory",
			"log line 30", "log line 11"} {
			if !strings.Contains(text, want) {
				t.Errorf("failure notice lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "log line 10\n") {
			t.Errorf("failure notice has more than the log's last 20 lines:\n%s", text)
		}
	}
	for _, p := range posts[1:] {
		for _, bad := range []string{"<!channel>", "@here", "<@U123>", "\r"} {
			if strings.Contains(p.Text(), bad) {
				t.Errorf("%s: the hostile subject's %q got through:\n%s", p.Path, bad, p.Text())
			}
		}
	}
	if m := mails[1]; m.Header.Get("Bcc") != "" || strings.Join(m.To, ",") != "ops@example.org" {
		t.Errorf("the hostile subject changed the mail's headers or recipients (%v):\n%s", m.To, m.Data)
	}

	// Refused: another user's entry for app, a run that is not app's, a
	// state that is not the run's.
	if err := r.notice(t, "app", bad.ID, store.RunFailed, 65534); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Handle(app's notice published by nobody) = %v; want refused (DataErr)", err)
	}
	if err := r.notice(t, "app", bad.ID+100, store.RunFailed, 0); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Handle(notice of a run that does not exist) = %v; want refused (DataErr)", err)
	}
	if err := r.notice(t, "app", ok.ID, store.RunFailed, 0); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Handle(a succeeded run said failed) = %v; want refused (DataErr)", err)
	}
	if err := r.notice(t, "quiet", ok.ID, store.RunFailed, 0); err != nil {
		t.Errorf("Handle(notice of a deployment without targets) = %v; want nothing to do", err)
	}
	if n, m := len(r.hook.Posts()), len(r.smtp.Mails()); n != 3 || m != 2 {
		t.Errorf("refused notices sent %d posts and %d mails; want none more", n-3, m-2)
	}
}

// TestRunNoticeLogLink: a run whose recorded log is a symbolic link to a
// secret dh-route can read (a webhook URL file) gets a notice without
// log lines, never the secret's bytes.
func TestRunNoticeLogLink(t *testing.T) {
	r := newNoticeRig(t, 0)
	bad := r.run(t, store.RunResult{State: store.RunFailed, ExitCode: new(1), FailedStep: new(1), Error: "exit 1"}, "x", 1)
	os.Remove(bad.LogPath)
	if err := os.Symlink(filepath.Join(filepath.Dir(r.cfg.File), "chat-url"), bad.LogPath); err != nil {
		t.Fatal(err)
	}
	if err := r.notice(t, "app", bad.ID, store.RunFailed, 0); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	for _, p := range r.hook.Wait(t, 2, 10*time.Second) {
		if strings.Contains(p.Text(), "SeCrEt") {
			t.Errorf("the notice carries the secret the log links to:\n%s", p.Text())
		}
	}
	if m := r.smtp.Wait(t, 1, 10*time.Second)[0]; strings.Contains(m.Body, "SeCrEt") {
		t.Errorf("the mail carries the secret the log links to:\n%s", m.Body)
	}
}

// TestWatchNotices: certificates expiring within cert_expiry_days and
// entries in failed/ are told once each (a certificate once a day),
// across checks and pollers (the notices table), to the default targets
// (a deployment's failed entries to its own).
func TestWatchNotices(t *testing.T) {
	r := newNoticeRig(t, 0)
	ctx := context.Background()
	now := time.Now()
	// No certificate file is readable here (as on a host where dh-route
	// may not look into cert_dir). soon: issued 80 days ago, its expiry
	// not recorded yet: estimated to expire in 10 days. site: issued
	// today, recorded by dh-cert as expiring in 2 days and 23 hours.
	// renewed: issued 85 days ago (the estimate would say 5 days) but
	// recorded as expiring in 60 days: no notice. fresh: issued today.
	for _, c := range []store.Cert{
		{Name: "soon", Domains: []string{"soon.example.org"}, State: store.CertIssued, IssuedAt: now.Add(-80*24*time.Hour + 12*time.Hour)},
		{Name: "site", Domains: []string{"site.example.org"}, State: store.CertIssued, IssuedAt: now, NotAfter: now.Add(71 * time.Hour)},
		{Name: "renewed", Domains: []string{"renewed.example.org"}, State: store.CertIssued, IssuedAt: now.Add(-85 * 24 * time.Hour),
			NotAfter: now.Add(60 * 24 * time.Hour)},
		{Name: "fresh", Domains: []string{"fresh.example.org"}, State: store.CertIssued, IssuedAt: now},
	} {
		if err := r.st.PutCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// An entry of app's queue, of queues/main and of queues/nginx fail.
	for _, name := range []string{"app", config.MainQueue, config.NginxQueue} {
		q := queue.Open(r.cfg.QueuePath(name))
		if err := q.Init(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Publish([]byte(`{"version": 1, "kind": "nonsense"}`)); err != nil {
			t.Fatal(err)
		}
		c, err := q.Lock(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		c.Run(ctx, func(context.Context, *queue.Entry) error {
			return event.Errorf("nonsense in %s", name)
		}, queue.Options{Once: true, NoNotify: true})
		c.Close()
	}
	p2, err := route.NewPoster(r.cfg, r.st, os.Getenv, "dh-deployer/test", nil) // a second dh-route, after a restart
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*route.Poster{r.p, r.p, p2} {
		if err := p.Check(ctx, now); err != nil {
			t.Fatalf("Check = %v", err)
		}
	}
	posts := r.hook.Posts()
	var got []string
	for _, p := range posts {
		got = append(got, strings.SplitN(p.Text(), "\n", 2)[0])
	}
	want := []string{"certificate site expires in 2 days", "certificate soon expires in 10 days",
		"queues/main: entry", "queues/nginx: entry", "queues/app: entry", `queues/app\: entry`} // app's also to its discord
	if len(got) != len(want) {
		t.Fatalf("notices:\n%s\nwant 6 like:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("notice %d = %q; want %q…", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[2], "nonsense in main") || !strings.Contains(got[3], "nonsense in nginx") || !strings.Contains(got[4], "nonsense in app") ||
		!strings.Contains(posts[1].Text(), "estimated") || strings.Contains(posts[0].Text(), "estimated") {
		t.Errorf("notices lack the failure reasons or say wrongly whether the expiry is estimated:\n%v", posts)
	}
	if mails := r.smtp.Mails(); len(mails) != 2 || !strings.HasPrefix(mails[0].Subject, "certificate site") {
		t.Errorf("mails %v; want the two certificate notices (mail takes no failed-entry notices)", mails)
	}
	// The next day the certificates are told again, the entries not.
	if err := r.p.Check(ctx, now.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.hook.Posts()); n != 8 {
		t.Errorf("the next day: %d notices in all; want 8 (the two certificates again)", n)
	}
}

// TestRunNoticeDeadTarget: a target that keeps failing is logged and
// given up after its retries; the other targets still get the notice and
// the entry is done (not retried forever, never failed).
func TestRunNoticeDeadTarget(t *testing.T) {
	r := newNoticeRig(t, 0)
	os.WriteFile(filepath.Join(filepath.Dir(r.cfg.File), "chat-url"), []byte("http://127.0.0.1:1/hooks/dead-0123456789\n"), 0o600)
	if err := r.p.SetConfig(r.cfg, os.Getenv, "dh-deployer/test"); err != nil {
		t.Fatal(err)
	}
	bad := r.run(t, store.RunResult{State: store.RunFailed, ExitCode: new(1), FailedStep: new(1), Error: "exit 1"}, "x", 1)
	began := time.Now()
	if err := r.notice(t, "app", bad.ID, store.RunFailed, 0); err != nil {
		t.Fatalf("Handle with a dead chat target = %v; want nil (logged)", err)
	}
	if took := time.Since(began); took > time.Minute {
		t.Errorf("Handle took %s; want the retries bounded", took)
	}
	r.hook.Wait(t, 1, 10*time.Second) // discord
	r.smtp.Wait(t, 1, 10*time.Second)
}

// A deployment's user writes its queue's failed/: thirty files dropped
// there at once are not thirty notices per target, but
// route.MaxFailedNotices and one saying how many more.
func TestFailedEntryFlood(t *testing.T) {
	r := newNoticeRig(t, 0)
	q := queue.Open(r.cfg.QueuePath("app"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(q.Dir(), queue.FailedDir), 0o755)
	for i := range 30 {
		os.WriteFile(filepath.Join(q.Dir(), queue.FailedDir, fmt.Sprintf("%019d-x.json", i)), []byte("{}"), 0o600)
	}
	for range 2 {
		if err := r.p.Check(context.Background(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var single, more int
	for _, p := range r.hook.Posts() {
		first := strings.ReplaceAll(strings.SplitN(p.Text(), "\n", 2)[0], `\`, "")
		switch {
		case strings.HasPrefix(first, "queues/app: entry"):
			single++
		case strings.HasPrefix(first, "queues/app: 25 more entries failed"):
			more++
		default:
			t.Errorf("unexpected notice %q", first)
		}
	}
	if single != 2*route.MaxFailedNotices || more != 2 {
		t.Errorf("%d notices of one entry and %d of more, to app's two chat targets; want %d and 2", single, more, 2*route.MaxFailedNotices)
	}
}
