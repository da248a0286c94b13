package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// Kinds of Webhook: the configuration's chat kinds, which dh-route hands
// to Webhook.Kind as they are.
const (
	Slack      = config.TargetSlack      // {"text": ..., "username": ...}, Slack's mrkdwn
	Mattermost = config.TargetMattermost // {"text": ..., "username": ...}, Markdown
	Discord    = config.TargetDiscord    // {"content": ..., "username": ..., "allowed_mentions": {"parse": []}}
)

// maxDiscord is Discord's limit on a message's content, in characters.
const maxDiscord = 2000

// Webhook posts messages to a chat's incoming webhook. The zero value of
// every field but URL means its default. A Webhook is safe for concurrent
// use as long as its fields are not changed.
type Webhook struct {
	// Kind is Slack (the default), Mattermost or Discord.
	Kind string

	// URL is the incoming webhook's URL, a secret.
	URL string

	// Username asks the chat to show the message under this name.
	// Optional: empty sends none.
	Username string

	// UserAgent is sent as User-Agent. Default DefaultUserAgent.
	UserAgent string

	// HTTP sends the requests. Default: a client with no timeout of its
	// own; Retry.Timeout bounds each try.
	HTTP *http.Client

	// Logger receives the retries. Default: nothing is logged.
	Logger *slog.Logger

	// Retry is the retry policy; the zero value is the default.
	Retry httpretry.Policy
}

// allowed is Discord's allowed_mentions: with an empty Parse, nothing in
// the content pings anyone.
type allowed struct {
	Parse []string `json:"parse"`
}

// Body returns the JSON the webhook is sent for m.
func (w *Webhook) Body(m Message) ([]byte, error) {
	if w.Kind == Discord {
		return json.Marshal(struct {
			Content  string `json:"content"`
			Username string `json:"username,omitempty"`
			// No @everyone, role or user mention pings, whatever the text.
			AllowedMentions allowed `json:"allowed_mentions"`
		}{Content: discordText(m), Username: w.Username, AllowedMentions: allowed{Parse: []string{}}})
	}
	return json.Marshal(struct {
		Text     string `json:"text"`
		Username string `json:"username,omitempty"`
	}{chatText(m, w.Kind == Mattermost), w.Username})
}

// Send posts m to the webhook. It returns nil once the webhook answered
// 2xx; otherwise an error naming the status and the webhook's own message
// ("invalid_payload", Mattermost's "message"), a *config.Error
// for 4xx and a queue.Retry for 5xx and 429.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	data, err := w.Body(m)
	if err != nil {
		return fmt.Errorf("notify: encode: %w", err) // cannot happen: a struct of strings
	}
	header := http.Header{
		"Content-Type": {"application/json"},
		"User-Agent":   {cmp.Or(w.UserAgent, DefaultUserAgent)},
	}
	logger := cmp.Or(w.Logger, slog.New(slog.DiscardHandler)).With("deployment", m.Deployment)
	resp, err := w.Retry.Post(ctx, w.HTTP, w.URL, header, data, logger)
	if err != nil {
		return fmt.Errorf("notify: %w", err) // a Retry after the last attempt, or ctx's error
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	msg := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if s := resp.Message(); s != "" {
		msg += ": " + s
	}
	err = fmt.Errorf("notify: webhook answered %s", msg)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return queue.Retry(err)
	}
	return &config.Error{Err: err} // a wrong URL, a revoked hook, a payload it refuses
}

// chatText renders m for Slack (mrkdwn) or Mattermost (Markdown): every
// text escaped, links made only from Field.URL.
func chatText(m Message, markdown bool) string {
	esc := escape
	if markdown { // Mattermost: no [text](link), emphasis or headings either
		esc = func(s string) string { return escape(backslash(s, "\\*_~`|#[]()")) }
	}
	var b strings.Builder
	b.WriteString(esc(m.Summary) + "\n")
	for _, f := range m.Fields {
		v := esc(f.Value)
		switch {
		case f.URL != "" && markdown:
			short, rest, _ := strings.Cut(v, " ")
			v = "[" + short + "](" + f.URL + ") " + rest
		case f.URL != "":
			short, rest, _ := strings.Cut(v, " ")
			v = "<" + f.URL + "|" + short + "> " + rest
		}
		b.WriteString(f.Label + ": " + strings.TrimSpace(v) + "\n")
	}
	if m.Log != "" {
		b.WriteString("```\n" + escape(m.Log) + "\n```\n")
	}
	return b.String()
}

// discordText renders m for Discord's Markdown within Discord's limit of
// maxDiscord characters: the log's first lines go first, then the last
// fields, whole lines only.
func discordText(m Message) string {
	for {
		s := discordRender(m)
		switch {
		case utf8.RuneCountInString(s) <= maxDiscord:
			return s
		case m.Log != "":
			_, m.Log, _ = strings.Cut(m.Log, "\n")
		case len(m.Fields) > 0:
			m.Fields = m.Fields[:len(m.Fields)-1]
		default:
			return s // the summary alone: at most maxSummary characters
		}
	}
}

func discordRender(m Message) string {
	var b strings.Builder
	b.WriteString(escapeDiscord(m.Summary) + "\n")
	for _, f := range m.Fields {
		v := escapeDiscord(f.Value)
		if f.URL != "" {
			short, rest, _ := strings.Cut(v, " ")
			v = "[" + short + "](<" + f.URL + ">) " + rest
		}
		b.WriteString(f.Label + ": " + strings.TrimSpace(v) + "\n")
	}
	if m.Log != "" {
		// Inside a code block Markdown is not read; only a fence could end it.
		b.WriteString("```\n" + defuseFence(breakMentions(m.Log)) + "\n```\n")
	}
	return b.String()
}

// escape makes text inert for Slack's and Mattermost's formatting: it
// escapes &, < and >, and breaks mentions (breakMentions).
func escape(s string) string {
	s = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	return defuseFence(breakMentions(s))
}

// escapeDiscord backslash-escapes Discord's Markdown characters and
// breaks mentions.
func escapeDiscord(s string) string { return breakMentions(backslash(s, "\\*_~`|>#-[]()<:")) }

// backslash puts a backslash before each of chars in s: Markdown's escape.
func backslash(s, chars string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(chars, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// breakMentions puts a zero-width space after an "@" that could start a
// mention (one not preceded by a letter or digit, so that
// "owner/name@abc1234" stays as it is).
func breakMentions(s string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range s {
		b.WriteRune(r)
		if r == '@' && !unicode.IsLetter(prev) && !unicode.IsDigit(prev) {
			b.WriteString("\u200b")
		}
		prev = r
	}
	return b.String()
}

// defuseFence keeps a log line from closing the code block it is shown in.
func defuseFence(s string) string { return strings.ReplaceAll(s, "```", "`\u200b``") }
