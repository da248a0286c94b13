// Package notify posts a one-line message about a finished deployment to a
// chat's incoming webhook: Slack's, Mattermost's, or any that takes
// {"text": "...", "username": "..."} as JSON.
//
// Guarantees and failure modes:
//
//   - A Webhook without a URL is disabled: Send does nothing and returns
//     nil. Notifications are optional.
//   - Send posts once per call, retrying with httpretry.Policy (network
//     errors, 5xx, 429), so a retry after a lost answer may post the
//     message twice. Any 2xx answer is success; another is an error
//     naming the status and the webhook's own message ("invalid_payload",
//     Mattermost's "message"), classified sysexits.Config for 4xx and
//     sysexits.TempFail for 5xx.
//   - The webhook URL is a secret (whoever has it can post): no error and
//     no log line contains more of it than its scheme and host.
//   - The text is escaped for Slack's formatting (&, <, > become &amp;,
//     &lt;, &gt;, which Mattermost's Markdown reads back), and an "@"
//     that could start a mention is followed by a zero-width space, so
//     that text from a build cannot make a link or ping @channel, @here
//     or a user.
//   - A notification is a courtesy: a deployment must never fail because
//     one could not be sent. Callers use SendLogged, or log Send's error.
package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// DefaultUserAgent is sent when Webhook.UserAgent is empty.
const DefaultUserAgent = "dh-deployer/devel"

// Bounds of the text, in characters: of Message.Error in it, and of it all.
const (
	maxError = 300
	maxText  = 1000
)

// Webhook posts messages to an incoming webhook. The zero value of every
// field but URL means its default. A Webhook is safe for concurrent use
// as long as its fields are not changed.
type Webhook struct {
	// URL is the incoming webhook's URL, a secret. Empty disables the
	// webhook: Send does nothing.
	URL string

	// Username asks the chat to show the message under this name
	// (Mattermost, and Slack's legacy webhooks, honour it). Optional:
	// empty sends none.
	Username string

	// UserAgent is sent as User-Agent; callers give
	// "dh-deployer/"+cli.VersionString(). Default DefaultUserAgent.
	UserAgent string

	// HTTP sends the requests. Default: a client with no timeout of its
	// own; Retry.Timeout bounds each try.
	HTTP *http.Client

	// Logger receives the retries and, from SendLogged, the failures.
	// Default: nothing is logged.
	Logger *slog.Logger

	// Retry is the retry policy; the zero value is the default.
	Retry httpretry.Policy
}

// Enabled reports whether the webhook sends messages (it has a URL).
func (w *Webhook) Enabled() bool { return w != nil && w.URL != "" }

// State is how a deployment ended.
type State string

// States of a Message.
const (
	Success State = "success"
	Failure State = "failure"
)

// Message describes one finished deployment run.
type Message struct {
	Deployment string // the deployment's name: "api"
	Repository string // "owner/name"
	Commit     string // the full commit id; shown as its first 7 characters
	Ref        string // the pushed ref: "refs/heads/main"; optional
	State      State  // Success, or else the run failed

	// Step is, for a failure in a build step, the step's number counting
	// from 1; 0 means the run failed outside the steps (fetch, checkout).
	Step int
	// Command is the failed step's command: "pnpm build". Optional.
	Command string
	// ExitCode is the failed step's exit status; 0 when it did not exit
	// (timeout, signal: Error says so).
	ExitCode int
	// Error says what went wrong; cut to 300 characters on one line.
	Error string

	// Duration is how long the run took.
	Duration time.Duration
}

// Text renders the message as one line for people:
//
//	api: deployed ducompsoc/durhack@abc1234 (refs/heads/main) in 12s
//	api: FAILED at step 2 (pnpm build, exit 1) deploying ducompsoc/durhack@abc1234 (refs/heads/main) after 12s: exit status 1
//	api: FAILED deploying ducompsoc/durhack@abc1234 (refs/heads/main) after 3s: git fetch: could not resolve host
//
// Any state other than Success reads as a failure.
func (m Message) Text() string {
	var b strings.Builder
	b.WriteString(cmp.Or(m.Deployment, "?") + ": ")
	what := m.Repository
	if c := shortCommit(m.Commit); c != "" {
		what = cmp.Or(what, "commit") + "@" + c
	}
	if m.Ref != "" {
		what = strings.TrimSpace(what + " (" + m.Ref + ")")
	}
	if m.State == Success {
		b.WriteString("deployed")
		if what != "" {
			b.WriteString(" " + what)
		}
		if m.Duration > 0 {
			b.WriteString(" in " + formatDuration(m.Duration))
		}
		return cell.Line(b.String(), maxText)
	}
	b.WriteString("FAILED")
	if m.Step > 0 {
		fmt.Fprintf(&b, " at step %d", m.Step)
		var detail []string
		if m.Command != "" {
			detail = append(detail, cell.Line(m.Command, 80))
		}
		if m.ExitCode != 0 {
			detail = append(detail, fmt.Sprintf("exit %d", m.ExitCode))
		}
		if len(detail) > 0 {
			b.WriteString(" (" + strings.Join(detail, ", ") + ")")
		}
	}
	if what != "" {
		b.WriteString(" deploying " + what)
	}
	if m.Duration > 0 {
		b.WriteString(" after " + formatDuration(m.Duration))
	}
	if e := cell.Line(m.Error, maxError); e != "" {
		b.WriteString(": " + e)
	}
	return cell.Line(b.String(), maxText)
}

// Send posts m.Text() to the webhook. It returns nil once the webhook
// answered 2xx, or at once if the webhook is disabled. Its errors are
// meant to be logged, never to fail a deployment.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	if !w.Enabled() {
		return nil
	}
	data, err := json.Marshal(struct {
		Text     string `json:"text"`
		Username string `json:"username,omitempty"`
	}{escape(m.Text()), w.Username})
	if err != nil {
		return sysexits.Errorf(sysexits.Software, "notify: encode: %w", err)
	}
	header := http.Header{
		"Content-Type": {"application/json"},
		"User-Agent":   {cmp.Or(w.UserAgent, DefaultUserAgent)},
	}
	logger := w.logger().With("deployment", m.Deployment)
	resp, err := w.Retry.Post(ctx, w.HTTP, w.URL, header, data, logger)
	if err != nil {
		return sysexits.New(sysexits.Code(err), fmt.Errorf("notify: %w", err))
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	class := sysexits.Config // a wrong URL, a revoked hook, a payload it refuses
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		class = sysexits.TempFail
	}
	msg := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if s := resp.Message(); s != "" {
		msg += ": " + s
	}
	return sysexits.Errorf(class, "notify: webhook answered %s", msg)
}

// SendLogged calls Send and logs its failure at warning level (with the
// deployment and the error) instead of returning it: a notification must
// never fail a deployment.
func (w *Webhook) SendLogged(ctx context.Context, m Message) {
	if err := w.Send(ctx, m); err != nil {
		w.logger().Warn("notification not sent", "deployment", m.Deployment, "error", err.Error())
	}
}

func (w *Webhook) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// escape makes text inert for Slack's and Mattermost's formatting: it
// escapes &, < and >, and puts a zero-width space after an "@" that could
// start a mention (one not preceded by a letter or digit, so that
// "owner/name@abc1234" stays as it is).
func escape(s string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '@' && !unicode.IsLetter(prev) && !unicode.IsDigit(prev):
			b.WriteString("@\u200b")
		default:
			b.WriteRune(r)
		}
		prev = r
	}
	return b.String()
}

// shortCommit abbreviates a commit id to 7 characters.
func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

// formatDuration rounds d for people: "850ms", "12s", "1m30s".
func formatDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
