package config

import (
	"errors"
	"net/url"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/ident"
)

// CommitURL is the web page of a commit of deployment d, for links:
// github.web_url/OWNER/NAME/commit/SHA, built only from the configured
// repository and a commit that passes ident.ParseCommit (never from a
// payload's URLs). It is "" when there is no page to link to: a commit
// that is not a full SHA, or a deployment that does not fetch from
// web_url's host (a local clone_url, another forge).
func (c *Config) CommitURL(d *Deployment, commit string) string {
	repo, err := ident.ParseRepository(d.Repository)
	if err != nil {
		return ""
	}
	sha, err := ident.ParseCommit(commit)
	if err != nil {
		return ""
	}
	base, err := webURL(c.GitHub.WebURL)
	if err != nil || !strings.EqualFold(fetchHost(d.FetchURL()), base.Hostname()) {
		return ""
	}
	owner, name, _ := strings.Cut(string(repo), "/")
	return base.JoinPath(owner, name, "commit", string(sha)).String()
}

// webURL parses github.web_url: an http or https URL with a host, and
// no user information, query or fragment.
func webURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return nil, errNotWebURL
	case u.User != nil, u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return nil, errNotWebURL
	}
	return u, nil
}

var errNotWebURL = errors.New("must be an http or https URL with no user information, query or fragment")

// fetchHost is the host name of a clone URL: of "https://HOST/…",
// "ssh://git@HOST/…" and the scp-like "git@HOST:owner/name.git"; "" for
// a local path.
func fetchHost(fetch string) string {
	if strings.Contains(fetch, "://") {
		u, err := url.Parse(fetch)
		if err != nil {
			return ""
		}
		return u.Hostname()
	}
	host, _, ok := strings.Cut(fetch, ":")
	if !ok || strings.Contains(host, "/") {
		return "" // a path
	}
	return host[strings.LastIndex(host, "@")+1:]
}
