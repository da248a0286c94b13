// Package notify renders and sends notifications for people: a finished
// deployment run, a certificate about to expire, an entry that landed in
// a failed/ directory. It sends them to chat incoming webhooks (Slack's,
// Mattermost's, Discord's: Webhook) and as email (SMTP or the local
// sendmail: Mail). dh-route is its only user: the targets' secrets are
// read by dh-route alone.
//
// Guarantees and failure modes:
//
//   - Every piece of text that comes from a push or a build (commit
//     subject, author, pusher, error, log lines) is made inert for its
//     medium: for Slack and Mattermost &, < and > are escaped (so no
//     <!channel>, <@U123> or link can be made) and an "@" that could start
//     a mention is followed by a zero-width space; for Discord Markdown
//     characters are backslash-escaped, mentions broken the same way and
//     "allowed_mentions" set to none; in email it only ever reaches the
//     body (quoted-printable) and the Subject header, which is made one
//     line (no CR, LF or other control character survives) and
//     RFC 2047-encoded, so no header can be added through it.
//   - Text is bounded: a summary of at most 300 characters, field values
//     of at most 300, the log's last lines as the caller cut them (dh-route
//     sends at most 20 lines and 2 KiB), and a Discord message at most
//     2000 characters (Discord's limit).
//   - A send is retried with httpretry.Policy: network errors, 5xx and 429
//     for webhooks; connection errors and 4xx replies for SMTP; exit
//     status 75 (EX_TEMPFAIL) for sendmail. After the last attempt the
//     error is returned, with its kind (a queue.Retry for what may pass
//     later; a refused login wraps fs.ErrPermission, a refused target is a
//     *config.Error); a retry after a lost answer may deliver a
//     notification twice.
//   - A webhook URL and an SMTP password are secrets: no error and no log
//     line contains more of a URL than its scheme and host, nor any of a
//     password.
package notify

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
)

// DefaultUserAgent is sent when Webhook.UserAgent is empty.
const DefaultUserAgent = "dh-deployer/devel"

// Bounds of the text, in characters.
const (
	maxSummary = 300
	maxValue   = 300
)

// Message is one notification, in the parts every medium renders its own
// way. Build it with Run.Message, CertExpiry or FailedEntry.
type Message struct {
	// Summary is the one line that says it all: it is a chat message's
	// first line and an email's Subject.
	Summary string
	// Fields are more facts, one line each.
	Fields []Field
	// Log is the last lines of the run's log, shown as preformatted text;
	// "" for none.
	Log string
	// Deployment is the deployment it is about, if any, for log lines.
	Deployment string
}

// Field is one fact of a Message.
type Field struct {
	Label string // "Commit"
	Value string // one line
	// URL links Value (a commit's page), or "" for none. Only built from
	// the configuration and checked identifiers, never from a payload.
	URL string
}

// Sender sends a Message to one target.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// State is how a run ended.
type State string

// States of a Run.
const (
	Success State = "success"
	Failure State = "failure"
)

// Run describes one finished deployment run.
type Run struct {
	ID          int64
	Deployment  string // the deployment's name: "api"
	Repository  string // "owner/name"
	Commit      string // the full commit id; shown as its first 7 characters
	CommitURL   string // the commit's page, or "" when the repository's host is unknown
	Ref         string // the pushed ref: "refs/heads/main"; optional
	Subject     string // the commit's subject line
	Author      string // the commit's author: "Name <email>"
	Trigger     string // webhook, manual, token, hook, ...
	TriggeredBy string // pusher=..., user=..., token=...
	State       State  // Success, or else the run failed

	// Step is, for a failure in a build step, the step's number counting
	// from 1; 0 means the run failed outside the steps (fetch, checkout).
	Step int
	// Command is the failed step's program: "pnpm". Optional.
	Command string
	// ExitCode is the failed step's exit status, nil when it did not exit
	// (timeout, signal: Error says so) or the failure was not a step's.
	ExitCode *int
	// Error says what went wrong; cut to 300 characters on one line.
	Error string
	// Duration is how long the run took.
	Duration time.Duration
	// Log is the last lines of the run's log (on failure).
	Log string
}

// Message renders the run:
//
//	api: deployed ducompsoc/durhack@abc1234 (refs/heads/main) in 12s
//	api: FAILED at step 2 (pnpm, exit 1) deploying ducompsoc/durhack@abc1234 (refs/heads/main) after 12s
//
// with the commit, its subject and author, who triggered it, the
// duration, and on failure the error and the log's last lines as fields.
func (r Run) Message() Message {
	var b strings.Builder
	b.WriteString(cmp.Or(r.Deployment, "?") + ": ")
	what := r.Repository
	if c := shortCommit(r.Commit); c != "" {
		what = cmp.Or(what, "commit") + "@" + c
	}
	if r.Ref != "" {
		what = strings.TrimSpace(what + " (" + r.Ref + ")")
	}
	if r.State == Success {
		b.WriteString("deployed")
		if what != "" {
			b.WriteString(" " + what)
		}
		if r.Duration > 0 {
			b.WriteString(" in " + formatDuration(r.Duration))
		}
	} else {
		b.WriteString("FAILED")
		if r.Step > 0 {
			fmt.Fprintf(&b, " at step %d", r.Step)
			var detail []string
			if r.Command != "" {
				detail = append(detail, cell.Line(r.Command, 80))
			}
			if r.ExitCode != nil {
				detail = append(detail, "exit "+strconv.Itoa(*r.ExitCode))
			}
			if len(detail) > 0 {
				b.WriteString(" (" + strings.Join(detail, ", ") + ")")
			}
		}
		if what != "" {
			b.WriteString(" deploying " + what)
		}
		if r.Duration > 0 {
			b.WriteString(" after " + formatDuration(r.Duration))
		}
	}
	m := Message{Summary: cell.Line(b.String(), maxSummary), Deployment: r.Deployment}
	m.add("Deployment", r.Deployment, "")
	if r.Commit != "" {
		m.add("Commit", shortCommit(r.Commit)+" "+r.Subject, r.CommitURL)
	}
	m.add("Author", r.Author, "")
	trigger := r.Trigger
	if r.TriggeredBy != "" {
		trigger = strings.TrimSpace(trigger + " by " + r.TriggeredBy)
	}
	m.add("Triggered", trigger, "")
	if r.Duration > 0 {
		m.add("Duration", formatDuration(r.Duration), "")
	}
	if r.ID > 0 {
		m.add("Run", strconv.FormatInt(r.ID, 10), "")
	}
	if r.State != Success {
		if r.Step > 0 {
			step := strconv.Itoa(r.Step)
			if r.Command != "" {
				step += " (" + r.Command + ")"
			}
			m.add("Failed step", step, "")
		}
		if r.ExitCode != nil {
			m.add("Exit status", strconv.Itoa(*r.ExitCode), "")
		}
		m.add("Error", r.Error, "")
		m.Log = r.Log
	}
	return m
}

// CertExpiry is the notice of a certificate that expires soon. estimated
// says notAfter is the certificate's issue time plus its usual lifetime,
// because its file could not be read.
func CertExpiry(name string, domains []string, notAfter, now time.Time, estimated bool) Message {
	left := notAfter.Sub(now)
	when := "expires in " + days(left)
	if left <= 0 {
		when = "EXPIRED " + days(-left) + " ago"
	}
	m := Message{Summary: cell.Line("certificate "+name+" "+when, maxSummary)}
	m.add("Certificate", name, "")
	m.add("Domains", strings.Join(domains, ", "), "")
	at := notAfter.UTC().Format(time.RFC3339)
	if estimated {
		at += " (estimated: issued_at plus notify.cert_lifetime; dh-route cannot read the certificate)"
	}
	m.add("Expires", at, "")
	m.add("Fix", "dh-cert renew, and see dh-cert's log (journalctl -u dh-cert)", "")
	return m
}

// FailedEntry is the notice of an entry moved to queue's failed/.
func FailedEntry(queue, entry, reason string, attempts int, at time.Time) Message {
	m := Message{Summary: cell.Line("queues/"+queue+": entry "+entry+" failed: "+reason, maxSummary)}
	m.add("Queue", queue, "")
	m.add("Entry", "failed/"+entry, "")
	m.add("Reason", reason, "")
	if attempts > 0 {
		m.add("Attempts", strconv.Itoa(attempts), "")
	}
	if !at.IsZero() {
		m.add("Failed at", at.UTC().Format(time.RFC3339), "")
	}
	m.add("Fix", "fix the cause, then: mv failed/"+entry+" .. (or replay it)", "")
	return m
}

// MoreFailed is the notice of n entries that landed in queue's failed/
// beyond those told one by one.
func MoreFailed(queue string, n int) Message {
	m := Message{Summary: cell.Line("queues/"+queue+": "+strconv.Itoa(n)+" more entries failed", maxSummary)}
	m.add("Queue", queue, "")
	m.add("Fix", "dh-route status lists them with their reasons; fix the cause, then move them back or replay them", "")
	return m
}

// add appends a field unless value is empty.
func (m *Message) add(label, value, url string) {
	if v := cell.Line(value, maxValue); v != "" {
		m.Fields = append(m.Fields, Field{Label: label, Value: v, URL: url})
	}
}

// Text renders the message as plain text: the summary, the fields as
// "Label: value" lines, then the log.
func (m Message) Text() string {
	var b strings.Builder
	b.WriteString(m.Summary + "\n")
	for _, f := range m.Fields {
		b.WriteString(f.Label + ": " + f.Value)
		if f.URL != "" {
			b.WriteString(" <" + f.URL + ">")
		}
		b.WriteByte('\n')
	}
	if m.Log != "" {
		b.WriteString("\nLast lines of the log:\n" + m.Log)
		if !strings.HasSuffix(m.Log, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	if n == 1 {
		return "1 day"
	}
	if n == 0 {
		return strconv.Itoa(int(d.Hours())) + " hours"
	}
	return strconv.Itoa(n) + " days"
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
