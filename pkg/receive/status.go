package receive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// dh-receive has no database: what became of a delivery it queued, it
// reads from dh-route's status listener (receive.status_url), as a
// client of /status/deliveries/ID.json and /status/logs/NAME/RUN.

// Outcomes of a delivery, as the status listener's delivery JSON says
// (pkg/status's Outcome constants).
const (
	OutcomePending     = "pending"
	OutcomeSucceeded   = "succeeded"
	OutcomeFailed      = "failed"
	OutcomeSuperseded  = "superseded"
	OutcomeNotDeployed = "not-deployed"
)

// Story is the part of the status listener's delivery JSON dh-receive
// reads.
type Story struct {
	Outcome  string `json:"outcome"`
	Decision *struct {
		Status      string   `json:"status"`
		Reason      string   `json:"reason"`
		Deployments []string `json:"deployments"`
	} `json:"decision"`
	Runs []StoryRun `json:"runs"`
}

// StoryRun is one run of a Story.
type StoryRun struct {
	ID         int64  `json:"id"`
	Deployment string `json:"deployment"`
	Attempt    int    `json:"attempt"`
	State      string `json:"state"`
	Commit     string `json:"commit"`
	Result     string `json:"result"`
	ExitCode   *int   `json:"exit_code"`
	FailedStep *int   `json:"failed_step"`
	Duration   string `json:"duration"`
	Log        string `json:"log"` // its path on the status listener, "" for none
}

// Ended reports whether the run is over (store.Run.Ended).
func (r StoryRun) Ended() bool { return r.State != "queued" && r.State != "running" }

// newest returns the newest attempt of deployment's runs, or nil.
func (s *Story) newest(deployment string) *StoryRun {
	var n *StoryRun
	for i, r := range s.Runs {
		if r.Deployment == deployment && (n == nil || r.Attempt > n.Attempt || r.Attempt == n.Attempt && r.ID > n.ID) {
			n = &s.Runs[i]
		}
	}
	return n
}

// errNotYet is a delivery the status listener does not know yet: still
// in queues/main, not routed.
var errNotYet = errors.New("not recorded yet")

// StatusClient reads dh-route's status listener.
type StatusClient struct {
	base   string // http://HOST:PORT, or http://dh-route for a unix socket
	token  []byte
	client *http.Client
	// Poll is how often Wait asks again (time.Second if 0).
	Poll time.Duration
}

// NewStatusClient returns a client of the status listener at rawURL
// ("http://HOST:PORT" or "unix:/PATH", as receive.status_url) that sends
// token, if not empty.
func NewStatusClient(rawURL string, token []byte) (*StatusClient, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 30 * time.Second}
	c := &StatusClient{base: strings.TrimSuffix(rawURL, "/"), token: token, client: &http.Client{Transport: tr}}
	if path, ok := strings.CutPrefix(rawURL, "unix:"); ok {
		c.base = "http://dh-route"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	} else if u, err := url.Parse(rawURL); err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("status url %q: want http://HOST:PORT or unix:/PATH", rawURL)
	}
	return c, nil
}

// get does a GET of path (which must start with "/status/") on the
// status listener.
func (c *StatusClient) get(ctx context.Context, path string, header ...string) (*http.Response, error) {
	if !strings.HasPrefix(path, "/status/") || strings.Contains(path, "..") {
		return nil, fmt.Errorf("status listener: refusing path %q", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if len(c.token) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(c.token))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status listener: %w", err)
	}
	return resp, nil
}

// Story reads what became of delivery id; errNotYet while the status
// listener does not know it.
func (c *StatusClient) Story(ctx context.Context, id string) (*Story, error) {
	if _, err := ident.ParseDelivery(id); err != nil {
		return nil, err
	}
	resp, err := c.get(ctx, "/status/deliveries/"+id+".json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, errNotYet
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("status listener: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var s Story
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("status listener: delivery %s: %w", id, err)
	}
	return &s, nil
}

// Wait asks for delivery id's story every Poll until until(story) holds
// or ctx ends; it returns the last story read (nil if none) and, when
// ctx ended first, the last error (or ctx's).
func (c *StatusClient) Wait(ctx context.Context, id string, until func(*Story) bool) (*Story, error) {
	poll := c.Poll
	if poll <= 0 {
		poll = time.Second
	}
	var last *Story
	var lastErr error
	for {
		s, err := c.Story(ctx, id)
		switch {
		case err == nil:
			last, lastErr = s, nil
			if until(s) {
				return s, nil
			}
		case ctx.Err() == nil:
			lastErr = err // not yet routed, or the listener away: ask again
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return last, lastErr
		case <-time.After(poll):
		}
	}
}

// FollowLog copies a run's log (its path on the status listener) to w as
// it grows, until the run ends (?follow=1); each piece is written as it
// arrives.
func (c *StatusClient) FollowLog(ctx context.Context, logPath string, w io.Writer) error {
	resp, err := c.get(ctx, logPath+"?follow=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status listener: log %s: %s", logPath, resp.Status)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("status listener: log %s: %w", logPath, err)
	}
	return nil
}

// LogTail returns the last n bytes of a run's log, from its first whole
// line.
func (c *StatusClient) LogTail(ctx context.Context, logPath string, n int) (string, error) {
	resp, err := c.get(ctx, logPath, "Range", fmt.Sprintf("bytes=-%d", n))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return "", fmt.Errorf("status listener: log %s: %s", logPath, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(n)))
	if err != nil {
		return "", fmt.Errorf("status listener: log %s: %w", logPath, err)
	}
	if resp.StatusCode == http.StatusPartialContent {
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i+1 < len(b) {
			b = b[i+1:]
		}
	}
	return string(b), nil
}
