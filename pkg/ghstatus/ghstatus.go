// Package ghstatus sets commit statuses through GitHub's REST API, so that
// a deployed commit shows pending, success, failure or error on GitHub:
//
//	POST {BaseURL}/repos/{owner}/{repo}/statuses/{sha}
//
// Guarantees and failure modes:
//
//   - A Client without a token is disabled: Set does nothing, sends
//     nothing and returns nil, whatever its arguments. Setting statuses is
//     optional (github.token_file).
//   - Set checks the repository ("owner/name", each part of A-Z, a-z, 0-9,
//     ".", "_", "-" and not "." or ".."), the commit (40 or 64 lowercase
//     hex digits), the state and the target URL before any request, and
//     then escapes the path anyway. BaseURL may carry a path, as GitHub
//     Enterprise's "https://HOST/api/v3" does.
//   - The description is cut to GitHub's limit of 140 characters on a
//     rune boundary, ending with "…" when it was cut.
//   - A failed request is tried again (Retry: network errors, 5xx, 429, a
//     rate-limited 403), at most Retry.Attempts times in all, waiting what
//     GitHub asks for up to Retry.MaxWait. Other answers are final.
//   - An error names the HTTP status and GitHub's "message" (*APIError)
//     and is classified with pkg/sysexits. Neither an error nor a log
//     line ever contains the token.
//   - A commit status is a courtesy: a deployment must never fail because
//     one could not be set. Callers use SetLogged, which logs the failure
//     and returns nothing, or log Set's error themselves.
package ghstatus

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Defaults of Client's fields.
const (
	DefaultBaseURL   = "https://api.github.com"
	DefaultContext   = "dh-deployer"
	DefaultUserAgent = "dh-deployer/devel"
)

// APIVersion is the REST API version requested (X-GitHub-Api-Version).
const APIVersion = "2022-11-28"

// MaxDescription is GitHub's limit on a status's description, in
// characters.
const MaxDescription = 140

// State is the state of a commit status.
type State string

// The states GitHub knows.
const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure" // the deployment failed
	Error   State = "error"   // the deployment could not be attempted
)

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case Pending, Success, Failure, Error:
		return true
	}
	return false
}

// Status is one commit status to set.
type Status struct {
	State       State
	Description string // one line; cut to MaxDescription characters
	TargetURL   string // absolute http(s) URL of the details, or "" for none; see RenderTarget
}

// Client sets commit statuses. Only Token is required; the zero value of
// every other field means its default. A Client is safe for concurrent
// use as long as its fields are not changed.
type Client struct {
	// BaseURL is the REST API's base: github.api_url. Default
	// DefaultBaseURL; GitHub Enterprise's is "https://HOST/api/v3".
	BaseURL string

	// Token is a token allowed to create commit statuses (the content of
	// github.token_file). Empty disables the client: Set does nothing.
	Token string

	// Context is the label of the statuses: github.status_context.
	// Default DefaultContext.
	Context string

	// UserAgent is sent as User-Agent; callers give
	// "dh-deployer/"+cli.VersionString(). Default DefaultUserAgent.
	UserAgent string

	// HTTP sends the requests. Default: a client with no timeout of its
	// own; Retry.Timeout bounds each try.
	HTTP *http.Client

	// Logger receives the retries and, from SetLogged, the failures.
	// Default: nothing is logged.
	Logger *slog.Logger

	// Retry is the retry policy; the zero value is the default.
	Retry httpretry.Policy
}

// Enabled reports whether the client sets statuses (it has a token).
func (c *Client) Enabled() bool { return c != nil && c.Token != "" }

// APIError is an answer of GitHub other than 201 Created.
type APIError struct {
	StatusCode int
	Message    string // GitHub's "message" and the details of "errors", cleaned up; may be ""
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// body is the JSON GitHub takes.
type body struct {
	State       State  `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

// Set sets the status of commit sha in repo ("owner/name"). It returns nil
// once GitHub answered 201 Created, or at once if the client is disabled.
// Its errors are meant to be logged, never to fail a deployment; see the
// package documentation for their classes.
func (c *Client) Set(ctx context.Context, repo, sha string, s Status) error {
	if !c.Enabled() {
		return nil
	}
	_, repoErr := ident.ParseRepository(repo)
	_, shaErr := ident.ParseCommit(sha)
	switch {
	case repoErr != nil:
		return sysexits.Errorf(sysexits.DataErr, "ghstatus: %q is not a repository (owner/name)", repo)
	case shaErr != nil:
		return sysexits.Errorf(sysexits.DataErr, "ghstatus: %q is not a full commit id", sha)
	case !s.State.Valid():
		return sysexits.Errorf(sysexits.Software, "ghstatus: %q is not a state (pending, success, failure, error)", string(s.State))
	case !validToken(c.Token):
		// Never show the token, not even a part of it.
		return sysexits.Errorf(sysexits.Config, "ghstatus: the token holds characters an HTTP header cannot carry")
	}
	fail := func(code int, err error) error {
		err = fmt.Errorf("ghstatus: set %s status of %s@%s: %w", s.State, repo, sha[:12], err)
		switch code {
		case sysexits.TempFail:
			return queue.Retry(err)
		case sysexits.Failure:
			return err // as classified inside, if at all
		}
		return sysexits.New(code, err)
	}
	if s.TargetURL != "" {
		if err := checkTarget(s.TargetURL); err != nil {
			return fail(sysexits.DataErr, fmt.Errorf("target URL: %w", err))
		}
	}
	endpoint, err := c.endpoint(repo, sha)
	if err != nil {
		return fail(sysexits.Config, err)
	}
	data, err := json.Marshal(body{
		State:       s.State,
		TargetURL:   s.TargetURL,
		Description: cell.Line(s.Description, MaxDescription),
		Context:     cmp.Or(c.Context, DefaultContext),
	})
	if err != nil {
		return fail(sysexits.Software, fmt.Errorf("encode: %w", err))
	}
	header := http.Header{
		"Accept":               {"application/vnd.github+json"},
		"Authorization":        {"Bearer " + c.Token},
		"X-Github-Api-Version": {APIVersion},
		"User-Agent":           {cmp.Or(c.UserAgent, DefaultUserAgent)},
		"Content-Type":         {"application/json"},
	}
	logger := c.logger().With("repository", repo, "commit", sha, "state", string(s.State))
	resp, err := c.Retry.Post(ctx, c.HTTP, endpoint, header, data, logger)
	if err != nil {
		return fail(sysexits.Failure, err) // a Retry after the last attempt, or ctx's error
	}
	if resp.StatusCode == http.StatusCreated {
		return nil
	}
	apiErr := &APIError{
		StatusCode: resp.StatusCode,
		// GitHub does not echo tokens; a proxy in between might.
		Message: strings.ReplaceAll(resp.Message(), c.Token, "[token]"),
	}
	return fail(classify(resp.StatusCode), apiErr)
}

// SetLogged calls Set and logs its failure at warning level (with the
// repository, commit, state and error) instead of returning it: a commit
// status must never fail a deployment.
func (c *Client) SetLogged(ctx context.Context, repo, sha string, s Status) {
	if err := c.Set(ctx, repo, sha, s); err != nil {
		c.logger().Warn("commit status not set", "repository", repo, "commit", sha, "state", string(s.State), "error", err.Error())
	}
}

// endpoint joins BaseURL and the statuses path, escaping each part.
func (c *Client) endpoint(repo, sha string) (string, error) {
	base := cmp.Or(c.BaseURL, DefaultBaseURL)
	u, err := url.Parse(base)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "", fmt.Errorf("API URL %q is not an http or https URL", base)
	case u.User != nil:
		return "", fmt.Errorf("API URL must not contain user information")
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("API URL %q must not have a query or fragment", base)
	}
	owner, name, _ := strings.Cut(repo, "/")
	prefix := strings.TrimRight(u.EscapedPath(), "/")
	u.RawPath = prefix + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/statuses/" + url.PathEscape(sha)
	u.Path, err = url.PathUnescape(u.RawPath)
	if err != nil {
		return "", fmt.Errorf("API URL %q: bad path", base)
	}
	return u.String(), nil
}

// classify maps a final HTTP status to an exit status class.
func classify(code int) int {
	switch {
	case code == http.StatusUnauthorized:
		return sysexits.Config // a wrong or expired token
	case code == http.StatusForbidden, code == http.StatusNotFound:
		return sysexits.NoPerm // GitHub answers 404 to a token that may not see the repository
	case code == http.StatusUnprocessableEntity:
		return sysexits.DataErr
	case code == http.StatusTooManyRequests, code >= 500:
		return sysexits.TempFail
	}
	return sysexits.Failure
}

// validToken reports whether a token can go into a header: visible ASCII.
func validToken(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return false
		}
	}
	return true
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
