package notify_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"mime"
	"net/mail"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/notify"
	"github.com/dh-deployer/dh-deployer/pkg/notify/notifytest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// hostile is a commit subject written to abuse every medium: mentions,
// Slack's special links, Markdown, a code fence, and a CRLF followed by a
// header, to add a Bcc to the mail.
const hostile = "fix <!channel> @here @everyone <@U123> [x](http://evil) ```\r\nBcc: victim@example.org\r\nX-Evil: 1"

func failedRun() notify.Run {
	code := 2
	return notify.Run{ID: 7, Deployment: "api", Repository: "acme/app", Commit: "0123456789abcdef0123456789abcdef01234567",
		CommitURL: "https://github.com/acme/app/commit/0123456789abcdef0123456789abcdef01234567",
		Ref:       "refs/heads/main", Subject: hostile, Author: "Mallory <m@example.org>", Trigger: "webhook", TriggeredBy: "pusher=mallory",
		State: notify.Failure, Step: 2, Command: "make", ExitCode: &code, Error: "step 2 (make) exited with status 2",
		Duration: 12 * time.Second, Log: "building\n@channel ``` <!here>\nerror: boom\n"}
}

var fastRetry = httpretry.Policy{Backoff: time.Millisecond, Timeout: 5 * time.Second}

func TestRunMessage(t *testing.T) {
	m := failedRun().Message()
	want := "api: FAILED at step 2 (make, exit 2) deploying acme/app@0123456 (refs/heads/main) after 12s"
	if m.Summary != want {
		t.Errorf("Summary = %q; want %q", m.Summary, want)
	}
	text := m.Text()
	for _, s := range []string{"Commit: 0123456 fix", "Author: Mallory <m@example.org>", "Triggered: webhook by pusher=mallory",
		"Duration: 12s", "Failed step: 2 (make)", "Exit status: 2", "error: boom"} {
		if !strings.Contains(text, s) {
			t.Errorf("Text() =\n%s\nwant it to contain %q", text, s)
		}
	}
	ok := failedRun()
	ok.State = notify.Success
	if s := ok.Message().Text(); strings.Contains(s, "error: boom") || strings.Contains(s, "Exit status") {
		t.Errorf("a success says\n%s\nwant no log and no exit status", s)
	}
}

// Each chat kind gets the fields, with the hostile subject made inert.
func TestWebhookDefuses(t *testing.T) {
	hook := notifytest.NewHook(t)
	ctx := context.Background()
	for _, kind := range []string{notify.Slack, notify.Mattermost, notify.Discord} {
		w := &notify.Webhook{Kind: kind, URL: hook.URL + "/" + kind, HTTP: hook.Client(), Retry: fastRetry}
		if err := w.Send(ctx, failedRun().Message()); err != nil {
			t.Fatalf("%s: Send = %v", kind, err)
		}
	}
	posts := hook.Posts()
	if len(posts) != 3 {
		t.Fatalf("got %d posts; want 3", len(posts))
	}
	for _, p := range posts {
		text := p.Text()
		for _, bad := range []string{"<!channel>", "<!here>", "<@U123>", "@here", "@everyone", "@channel", "\r", "](http://evil)"} {
			if p.Path == "/discord" && strings.HasPrefix(bad, "<!") {
				continue // Slack's syntax, plain text on Discord
			}
			if p.Path == "/slack" && bad == "](http://evil)" {
				continue // Markdown, plain text in Slack's mrkdwn
			}
			if strings.Contains(text, bad) {
				t.Errorf("%s: text contains %q:\n%s", p.Path, bad, text)
			}
		}
		if strings.Count(text, "```") != 2 {
			t.Errorf("%s: text has %d code fences; want the log's 2 only:\n%s", p.Path, strings.Count(text, "```"), text)
		}
		for _, s := range []string{"acme/app", "0123456", "Mallory", "pusher=mallory", "12s", "exit 2", "error: boom"} {
			if !strings.Contains(text, s) {
				t.Errorf("%s: text lacks %q:\n%s", p.Path, s, text)
			}
		}
	}
	if posts[0].Body["text"] == nil || !strings.Contains(posts[0].Text(), "<https://github.com/acme/app/commit/") {
		t.Errorf("slack: %s; want text with a <URL|sha> link", posts[0].Raw)
	}
	if !strings.Contains(posts[1].Text(), "[0123456](https://github.com/acme/app/commit/") {
		t.Errorf("mattermost: %s; want a Markdown link", posts[1].Raw)
	}
	if posts[2].Body["content"] == nil || !strings.Contains(string(posts[2].Raw), `"allowed_mentions":{"parse":[]}`) {
		t.Errorf("discord: %s; want content and no allowed mentions", posts[2].Raw)
	}
}

func TestWebhookRetries(t *testing.T) {
	hook := notifytest.NewHook(t, 500, 429)
	w := &notify.Webhook{URL: hook.URL + "/x", HTTP: hook.Client(), Retry: fastRetry}
	if err := w.Send(context.Background(), failedRun().Message()); err != nil || len(hook.Posts()) != 1 {
		t.Fatalf("Send after 500, 429 = %v, %d posts; want nil, 1", err, len(hook.Posts()))
	}
	hook = notifytest.NewHook(t, 404)
	w = &notify.Webhook{URL: hook.URL + "/SeCrEt", HTTP: hook.Client(), Retry: fastRetry}
	err := w.Send(context.Background(), failedRun().Message())
	if !sysexits.Is(err, sysexits.Config) || strings.Contains(err.Error(), "SeCrEt") {
		t.Errorf("Send answered 404 = %v; want a config error without the URL's path", err)
	}
	hook = notifytest.NewHook(t, 503, 503, 503)
	w.URL, w.HTTP = hook.URL+"/SeCrEt", hook.Client()
	if err := w.Send(context.Background(), failedRun().Message()); !queue.IsRetry(err) {
		t.Errorf("Send answered 503 three times = %v; want a temporary error after the retries", err)
	}
}

// The mail carries the fields; the hostile subject stays in the Subject,
// encoded: no Bcc or other header appears, and the only recipients are
// the configured ones.
func TestMailSMTP(t *testing.T) {
	srv := notifytest.NewSMTP(t, 1) // the first MAIL gets 451: retried
	srv.User, srv.Password = "bot", "pw"
	ml := &notify.Mail{From: "deploy@example.org", To: []string{"ops@example.org"}, SMTP: srv.Addr,
		User: "bot", Password: "pw", Retry: fastRetry}
	if err := ml.Send(context.Background(), failedRun().Message()); err != nil {
		t.Fatalf("Send = %v", err)
	}
	mails := srv.Mails()
	if len(mails) != 1 {
		t.Fatalf("got %d mails; want 1", len(mails))
	}
	m := mails[0]
	if strings.Join(m.To, ",") != "ops@example.org" || m.From != "deploy@example.org" {
		t.Errorf("envelope from %q to %q; want deploy@example.org to ops@example.org", m.From, m.To)
	}
	if m.Header.Get("Bcc") != "" || m.Header.Get("X-Evil") != "" {
		t.Errorf("the subject added headers:\n%s", m.Data)
	}
	if !strings.HasPrefix(m.Subject, "api: FAILED at step 2") || strings.ContainsAny(m.Subject, "\r\n") {
		t.Errorf("Subject %q; want the summary on one line", m.Subject)
	}
	if m.Header.Get("Content-Type") != `text/plain; charset="utf-8"` || m.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("headers %v; want MIME text/plain utf-8", m.Header)
	}
	for _, s := range []string{"Commit: 0123456 fix", "Bcc: victim@example.org", "Author: Mallory", "error: boom", "Exit status: 2"} {
		if !strings.Contains(m.Body, s) {
			t.Errorf("body lacks %q:\n%s", s, m.Body)
		}
	}

	srv = notifytest.NewSMTP(t, 0)
	srv.User, srv.Password = "bot", "right"
	ml.SMTP, ml.Password = srv.Addr, "wrong"
	if err := ml.Send(context.Background(), failedRun().Message()); !sysexits.Is(err, sysexits.NoPerm) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Send with a wrong password = %v; want a permission error without the password", err)
	}
	srv = notifytest.NewSMTP(t, 5)
	ml.SMTP, ml.User = srv.Addr, ""
	if err := ml.Send(context.Background(), failedRun().Message()); !queue.IsRetry(err) || len(srv.Mails()) != 0 {
		t.Errorf("Send to a server that keeps answering 451 = %v; want a temporary error after the retries", err)
	}
	ml.StartTLS = true
	if err := ml.Send(context.Background(), failedRun().Message()); !sysexits.Is(err, sysexits.Config) {
		t.Errorf("Send with starttls to a server without it = %v; want a config error", err)
	}
}

func TestMailSendmail(t *testing.T) {
	dir := t.TempDir()
	out := dir + "/mail"
	prog := dir + "/sendmail"
	writeScript(t, prog, "#!/bin/sh\nprintf '%s\\n' \"$@\" > "+out+".args\ncat > "+out+"\n")
	ml := &notify.Mail{From: "deploy@example.org", To: []string{"ops@example.org", "dev@example.org"}, Sendmail: prog, Retry: fastRetry}
	if err := ml.Send(context.Background(), failedRun().Message()); err != nil {
		t.Fatalf("Send = %v", err)
	}
	args := readFile(t, out+".args")
	if args != "-i\n-f\ndeploy@example.org\n--\nops@example.org\ndev@example.org\n" {
		t.Errorf("sendmail args %q; want -i -f FROM -- TO...", args)
	}
	if data := readFile(t, out); !strings.Contains(data, "Subject: ") || strings.Contains(data, "\nBcc:") {
		t.Errorf("sendmail got\n%s\nwant a mail without Bcc", data)
	}
	writeScript(t, prog, "#!/bin/sh\nexit 75\n")
	if err := ml.Send(context.Background(), failedRun().Message()); !queue.IsRetry(err) {
		t.Errorf("Send with sendmail exiting 75 = %v; want a temporary error", err)
	}
}

func TestNotices(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	m := notify.CertExpiry("api", []string{"api.example.org"}, now.Add(5*24*time.Hour), now, true)
	if m.Summary != "certificate api expires in 5 days" || !strings.Contains(m.Text(), "estimated") {
		t.Errorf("CertExpiry =\n%s", m.Text())
	}
	m = notify.FailedEntry("api", "1-2.json", "bad entry", 3, now)
	if !strings.Contains(m.Summary, "queues/api: entry 1-2.json failed: bad entry") || !strings.Contains(m.Text(), "Attempts: 3") {
		t.Errorf("FailedEntry =\n%s", m.Text())
	}
}

func writeScript(t *testing.T, path, script string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A long subject of non-ASCII text is folded: no header line passes the
// 998 bytes RFC 5322 allows, and it decodes back to the summary.
func TestMailLongSubject(t *testing.T) {
	r := failedRun()
	r.Deployment = strings.Repeat("日本", 200)
	ml := &notify.Mail{From: "deploy@example.org", To: []string{"ops@example.org"}}
	data, err := ml.Compose(r.Message())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("a line of %d bytes: %.80s…", len(line), line)
		}
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if want := r.Message().Summary; err != nil || subject != want {
		t.Errorf("Subject decodes to %q, %v; want %q", subject, err, want)
	}
}

// With STARTTLS the mail and the password travel only encrypted.
func TestMailStartTLS(t *testing.T) {
	srv := notifytest.NewSMTP(t, 0)
	var client *tls.Config
	srv.TLS, client = notifytest.SelfSigned(t)
	srv.User, srv.Password = "bot", "pw"
	ml := &notify.Mail{From: "deploy@example.org", To: []string{"ops@example.org"}, SMTP: srv.Addr, StartTLS: true, TLS: client,
		User: "bot", Password: "pw", Retry: fastRetry}
	if err := ml.Send(context.Background(), failedRun().Message()); err != nil {
		t.Fatalf("Send = %v", err)
	}
	if m := srv.Mails(); len(m) != 1 || !m[0].TLS {
		t.Errorf("mails %+v; want one, sent after STARTTLS", m)
	}
	ml.TLS = nil // the system's roots do not know the test's certificate
	if err := ml.Send(context.Background(), failedRun().Message()); err == nil || len(srv.Mails()) != 1 {
		t.Errorf("Send to a server whose certificate is not trusted = %v; want an error and nothing sent", err)
	}
}

// Discord takes at most 2000 characters: the log's first lines, then the
// last fields give way, whole lines only.
func TestDiscordLimit(t *testing.T) {
	r := failedRun()
	r.Error = strings.Repeat("e", 290)
	r.Subject = strings.Repeat("s", 290)
	r.Log = strings.Repeat(strings.Repeat("l", 99)+"\n", 20) + "the last line"
	body, err := (&notify.Webhook{Kind: notify.Discord}).Body(r.Message())
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Content string }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(got.Content); n > 2000 || !strings.HasPrefix(got.Content, "api\\: FAILED") ||
		!strings.Contains(got.Content, "the last line") || strings.Count(got.Content, "```") != 2 {
		t.Errorf("content of %d characters:\n%s\nwant at most 2000, the summary, the log's last line, its block closed", n, got.Content)
	}
}
