// Package httpretry posts to HTTP APIs (GitHub's REST API, chat webhooks)
// with a bounded retry policy: network errors, 5xx, 429 and rate-limited
// 403s are tried again, honouring Retry-After and X-RateLimit-Reset up to a
// cap; other answers are final. Errors and log lines name only the scheme
// and host of the URL, never its path (chat webhook URLs are secrets).
package httpretry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Defaults of Policy's fields.
const (
	DefaultAttempts = 3
	DefaultBackoff  = time.Second
	DefaultMaxWait  = 30 * time.Second
	DefaultTimeout  = 30 * time.Second
)

// maxResponse bounds how much of a response body Post keeps; the rest is
// discarded.
const maxResponse = 64 << 10

// maxMessage bounds Response.Message, in runes.
const maxMessage = 300

// defaultHTTP is used when a caller gives no *http.Client; Policy.Timeout
// bounds each try.
var defaultHTTP = &http.Client{}

// Policy is the retry policy of a POST to an HTTP API. The zero value is
// the default policy: 3 tries, waiting 1 s then 2 s, each try bounded by
// 30 s. Package notify uses it too.
type Policy struct {
	// Attempts is how many times a request is tried in all; 1 means it is
	// never retried. 0 or less means DefaultAttempts.
	Attempts int

	// Backoff is the wait before the second try, doubled before each
	// later one, unless the server asks for its own wait. 0 or less means
	// DefaultBackoff.
	Backoff time.Duration

	// MaxWait is the longest wait a server may ask for with Retry-After
	// or X-RateLimit-Reset. When it asks for longer, Post does not retry
	// and returns that answer. 0 or less means DefaultMaxWait.
	MaxWait time.Duration

	// Timeout bounds each try, from sending the request to reading the
	// answer. 0 or less means DefaultTimeout.
	Timeout time.Duration
}

// Response is the last answer Post received.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte // at most 64 KiB
	Attempts   int    // how many tries it took
}

// Post sends body to target with the given headers, trying again after
// a network error, a 5xx answer, a 429, or a 403 that is a rate limit
// (it has Retry-After, or X-RateLimit-Remaining: 0). Between tries it
// waits what the server asks for (Retry-After in seconds or as a date;
// else, for a rate limit, until X-RateLimit-Reset) or else the backoff.
// Each retry is logged at warning level with the host, the attempt, and
// the status or error.
//
// Post returns the last answer whatever its status: the caller decides
// what a status means. It returns an error only when no answer came: a
// bad target (classified sysexits.Config), a network error on the last
// try (a queue.Retry), or ctx ending (wrapping ctx's error). Neither
// its errors nor its log lines contain the target's path or query, only
// its scheme and host, since a webhook URL can be a secret.
//
// A request whose answer was lost may have been carried out: the API
// must tolerate a repeated POST.
func (r Policy) Post(ctx context.Context, hc *http.Client, target string, header http.Header, body []byte, logger *slog.Logger) (*Response, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, sysexits.Errorf(sysexits.Config, "post: target is not an absolute http or https URL")
	}
	host := u.Scheme + "://" + u.Host
	if hc == nil {
		hc = defaultHTTP
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	attempts := orDefault(r.Attempts, DefaultAttempts)
	backoff := orDefault(r.Backoff, DefaultBackoff)
	maxWait := orDefault(r.MaxWait, DefaultMaxWait)
	for attempt := 1; ; attempt++ {
		resp, err := r.try(ctx, hc, target, header, body)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("post to %s: %w", host, context.Cause(ctx))
		}
		retry, wait := true, backoff
		if err == nil {
			resp.Attempts = attempt
			var asked bool
			retry, wait, asked = retryable(resp, time.Now())
			if !asked {
				wait = backoff
			} else if wait > maxWait {
				logger.Warn("not retrying: server asks to wait too long", "host", u.Host, "status", resp.StatusCode, "wait", wait)
				return resp, nil
			}
		}
		if !retry || attempt >= attempts {
			if err != nil {
				return nil, queue.Retry(fmt.Errorf("post to %s: %w (after %d attempts)", host, err, attempt))
			}
			return resp, nil
		}
		if err != nil {
			logger.Warn("retrying request", "host", u.Host, "attempt", attempt, "error", err.Error(), "wait", wait)
		} else {
			logger.Warn("retrying request", "host", u.Host, "attempt", attempt, "status", resp.StatusCode, "wait", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("post to %s: %w", host, err)
		}
		backoff *= 2
	}
}

// try makes one request and reads the answer, within Timeout.
func (r Policy) try(ctx context.Context, hc *http.Client, target string, header http.Header, body []byte) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(r.Timeout, DefaultTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("cannot build the request")
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error names the whole URL; keep only what went wrong.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	// Drain a little more so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// retryable reports whether an answer is worth another try and, if the
// server said how long to wait, that wait (asked is true).
func retryable(resp *Response, now time.Time) (retry bool, wait time.Duration, asked bool) {
	code, h := resp.StatusCode, resp.Header
	rateLimited := h.Get("X-RateLimit-Remaining") == "0"
	switch {
	case code >= 500, code == http.StatusTooManyRequests:
	case code == http.StatusForbidden && (h.Get("Retry-After") != "" || rateLimited):
	default:
		return false, 0, false
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			return true, secondsDuration(s), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return true, max(t.Sub(now), 0), true
		}
	}
	if rateLimited && (code == http.StatusForbidden || code == http.StatusTooManyRequests) {
		if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return true, max(time.Unix(s, 0).Sub(now), 0), true
		}
	}
	return true, 0, false
}

// secondsDuration converts seconds to a Duration without overflowing.
func secondsDuration(s int64) time.Duration {
	if s > int64(24*time.Hour/time.Second) {
		return 24 * time.Hour
	}
	return time.Duration(s) * time.Second
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Message returns what the answer's body says, for an error message: the
// "message" field of a JSON object (GitHub, Mattermost), followed by the
// messages of its "errors" list (GitHub's validation details); else the
// body's first line (Slack answers in plain text, such as
// "invalid_payload"). Control characters become spaces and the result is
// cut to 300 characters. It is "" for an empty body.
func (r *Response) Message() string {
	var v struct {
		Message string            `json:"message"`
		Errors  []json.RawMessage `json:"errors"`
	}
	var msg string
	if json.Unmarshal(r.Body, &v) == nil && v.Message != "" {
		msg = v.Message
		var details []string
		for _, raw := range v.Errors {
			var s string
			var e struct {
				Message string `json:"message"`
				Field   string `json:"field"`
				Code    string `json:"code"`
			}
			switch {
			case json.Unmarshal(raw, &s) == nil && s != "":
				details = append(details, s)
			case json.Unmarshal(raw, &e) == nil && e.Message != "":
				details = append(details, e.Message)
			case e.Field != "" || e.Code != "":
				details = append(details, strings.TrimSpace(e.Field+" "+e.Code))
			}
		}
		if len(details) > 0 {
			msg += " (" + strings.Join(details, "; ") + ")"
		}
	} else {
		msg, _, _ = strings.Cut(strings.TrimSpace(string(r.Body)), "\n")
	}
	return cell.Line(msg, maxMessage)
}

// Do runs try, a send that is not an HTTP POST (an SMTP session, a
// program), with the same policy as Post: at most Attempts tries, each
// bounded by Timeout, waiting Backoff (doubled each time) between them,
// as long as try reports its error retryable. It returns nil, try's last
// error, or ctx's. Each retry is logged at warning level with what.
func (r Policy) Do(ctx context.Context, logger *slog.Logger, what string, try func(ctx context.Context) (retry bool, err error)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	attempts := orDefault(r.Attempts, DefaultAttempts)
	backoff := orDefault(r.Backoff, DefaultBackoff)
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, orDefault(r.Timeout, DefaultTimeout))
		retry, err := try(tctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		if !retry || attempt >= attempts {
			return err
		}
		logger.Warn("retrying", "what", what, "attempt", attempt, "error", err.Error(), "wait", backoff)
		if err := sleep(ctx, backoff); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		backoff *= 2
	}
}
