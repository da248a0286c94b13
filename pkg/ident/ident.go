// Package ident holds the identifiers that come from the network, a
// repository or the configuration: a GitHub repository, a git ref, a
// commit, a delivery, an event name and a deployment's name. Each has a Parse function,
// the one place its shape is checked; a value of the type has passed it.
//
// Guarantees:
//   - A parsed value is safe as one argv element after "--", in a file
//     name (Delivery, DeploymentName: no "/", no leading "." or "-"),
//     a log line or an SQL parameter: no control characters, no spaces.
//   - Parse errors are *Error, naming the kind, the value (quoted) and the
//     shape wanted; they carry no exit status (callers classify them).
//
// The package imports nothing of this module, so every stage, dh-receive
// included, may use it without linking git, the store or exit statuses.
package ident

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Error is a value that is not the identifier it should be.
type Error struct {
	Kind  string // "repository", "ref", "commit", "delivery", "event name", "deployment name"
	Value string
	Want  string // what was wanted, or what is wrong
}

func (e *Error) Error() string { return fmt.Sprintf("invalid %s %q: %s", e.Kind, e.Value, e.Want) }

// Repository is a GitHub repository, "owner/name".
type Repository string

var repoPartRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ParseRepository accepts "owner/name", each part of A-Z, a-z, 0-9, "_",
// "." and "-", and neither part "." nor "..".
func ParseRepository(s string) (Repository, error) {
	owner, name, ok := strings.Cut(s, "/")
	for _, part := range []string{owner, name} {
		if !ok || part == "." || part == ".." || !repoPartRE.MatchString(part) {
			return "", &Error{"repository", s, `want "owner/name", each part of A-Z, a-z, 0-9, "_", "." and "-"`}
		}
	}
	return Repository(s), nil
}

// Commit is a full commit name: 40 (SHA-1) or 64 (SHA-256) lowercase
// hexadecimal digits.
type Commit string

// ParseCommit accepts a full commit name, never an abbreviation.
func ParseCommit(s string) (Commit, error) {
	ok := len(s) == 40 || len(s) == 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok {
		return "", &Error{"commit", s, "want 40 or 64 lowercase hexadecimal digits"}
	}
	return Commit(s), nil
}

// Ref is a full branch or tag name: "refs/heads/NAME" or "refs/tags/NAME".
type Ref string

// The prefixes of the refs a Ref may name.
const (
	BranchPrefix = "refs/heads/"
	TagPrefix    = "refs/tags/"
)

// ParseRef accepts a full branch or tag name that git check-ref-format
// accepts. It is stricter than git: NAME may not start with "-" and must
// be valid UTF-8 of at most 1024 bytes.
func ParseRef(s string) (Ref, error) {
	var name string
	switch {
	case strings.HasPrefix(s, BranchPrefix):
		name = s[len(BranchPrefix):]
	case strings.HasPrefix(s, TagPrefix):
		name = s[len(TagPrefix):]
	default:
		return "", &Error{"ref", s, "want refs/heads/NAME or refs/tags/NAME"}
	}
	if why := badRefName(name); why != "" {
		return "", &Error{"ref", s, why}
	}
	return Ref(s), nil
}

// badRefName says what is wrong with a branch or tag name (the part after
// refs/heads/ or refs/tags/) by the rules of git-check-ref-format(1), or
// returns "".
func badRefName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case len(name) > 1024:
		return "longer than 1024 bytes"
	case !utf8.ValidString(name):
		return "not valid UTF-8"
	case name[0] == '-':
		return `starts with "-"`
	case name == "@":
		return `is "@"`
	case strings.Contains(name, ".."):
		return `contains ".."`
	case strings.Contains(name, "@{"):
		return `contains "@{"`
	case strings.HasSuffix(name, "."):
		return `ends with "."`
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return fmt.Sprintf("contains %q", r)
		}
	}
	for _, c := range strings.Split(name, "/") {
		switch {
		case c == "":
			return `has an empty component (leading, trailing or double "/")`
		case c[0] == '.':
			return `has a component starting with "."`
		case strings.HasSuffix(c, ".lock"):
			return `has a component ending with ".lock"`
		}
	}
	return ""
}

// Delivery is the id of one delivery: a GUID from GitHub, or an id we
// generate. It ends up in file names, log lines and SQL, so only a safe
// alphabet passes (no "/").
type Delivery string

// ParseDelivery accepts a delivery id of a queue entry: A-Z, a-z, 0-9,
// ".", "_", ":" and "-", starting with a letter or digit, at most 128 bytes
// (^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$). It and ParseGUID run on every
// delivery, so they check bytes without a regular expression.
func ParseDelivery(s string) (Delivery, error) {
	ok := len(s) > 0 && len(s) <= 128 && isAlnum(s[0])
	for i := 1; ok && i < len(s); i++ {
		c := s[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-'
	}
	if !ok {
		return "", &Error{"delivery", s, `want 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":", "-", starting with a letter or digit`}
	}
	return Delivery(s), nil
}

// ParseGUID accepts the delivery id of a webhook (X-GitHub-Delivery): a
// UUID, 8-4-4-4-12 hexadecimal digits (GitHub, Gitea, Forgejo and Gogs
// all send one). Every GUID is also a valid Delivery.
func ParseGUID(s string) (Delivery, error) {
	ok := len(s) == 36
	for i := 0; ok && i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			ok = s[i] == '-'
		} else {
			ok = isHex(s[i])
		}
	}
	if !ok {
		return "", &Error{"delivery", s, "want a GUID (8-4-4-4-12 hexadecimal digits)"}
	}
	return Delivery(s), nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// Event is the name of a GitHub event, as in X-GitHub-Event and in a
// deployment's events: "push", "ping", "workflow_run".
type Event string

// ParseEvent accepts a lowercase letter followed by up to 63 of a-z, 0-9
// and "_" (^[a-z][a-z0-9_]{0,63}$, checked byte by byte: dh-receive
// checks every delivery's event).
func ParseEvent(s string) (Event, error) {
	ok := len(s) > 0 && len(s) <= 64 && 'a' <= s[0] && s[0] <= 'z'
	for i := 1; ok && i < len(s); i++ {
		c := s[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_'
	}
	if !ok {
		return "", &Error{"event name", s, `want a-z, then up to 63 of a-z, 0-9 and "_"`}
	}
	return Event(s), nil
}

// DeploymentName is a deployment's name, also its queue's name and its
// systemd instance's name.
type DeploymentName string

// MaxDeploymentName is the longest deployment name, in bytes.
const MaxDeploymentName = 64

var deploymentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParseDeploymentName accepts [a-z0-9][a-z0-9-]* of at most
// MaxDeploymentName bytes. Whether a deployment of that name is configured
// (or reserved) is the configuration's business.
func ParseDeploymentName(s string) (DeploymentName, error) {
	switch {
	case len(s) > MaxDeploymentName:
		return "", &Error{"deployment name", s, fmt.Sprintf("longer than %d bytes", MaxDeploymentName)}
	case !deploymentRE.MatchString(s):
		return "", &Error{"deployment name", s, "want [a-z0-9][a-z0-9-]*"}
	}
	return DeploymentName(s), nil
}
