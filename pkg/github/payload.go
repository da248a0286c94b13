package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ZeroSHA is the commit id GitHub puts in before (creation) or after
// (deletion) of a push.
const ZeroSHA = "0000000000000000000000000000000000000000"

// Ref prefixes of branches and tags.
const (
	BranchPrefix = "refs/heads/"
	TagPrefix    = "refs/tags/"
)

// Repository is the part of payload.repository the stages read. The
// timestamps (created_at, pushed_at) are deliberately not decoded: push
// payloads carry them as Unix integers, other events as ISO strings.
type Repository struct {
	FullName string `json:"full_name"` // owner/name
}

// Commit is the part of a pushed commit the stages read.
type Commit struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// Push is the part of a push event's payload the stages read.
type Push struct {
	Ref        string     `json:"ref"`    // refs/heads/main, refs/tags/v1.0
	Before     string     `json:"before"` // ZeroSHA on creation
	After      string     `json:"after"`  // ZeroSHA on deletion
	Created    bool       `json:"created"`
	Deleted    bool       `json:"deleted"`
	Forced     bool       `json:"forced"`
	BaseRef    *string    `json:"base_ref"`
	Repository Repository `json:"repository"`
	HeadCommit *Commit    `json:"head_commit"` // nil on deletion
	Pusher     *Pusher    `json:"pusher,omitempty"`
	Sender     *Sender    `json:"sender,omitempty"`
}

// Pusher is who pushed, as git knows them.
type Pusher struct {
	Name string `json:"name"`
}

// Sender is the GitHub account that caused the event.
type Sender struct {
	Login string `json:"login"`
}

// DecodePush decodes a push payload and checks the fields routing needs:
// ref, after and repository.full_name.
func DecodePush(payload []byte) (*Push, error) {
	var p Push
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("decode push payload: %w", err)
	}
	switch {
	case p.Ref == "":
		return nil, errors.New("push payload has no ref")
	case p.After == "":
		return nil, errors.New("push payload has no after commit")
	case p.Repository.FullName == "":
		return nil, errors.New("push payload has no repository.full_name")
	}
	if err := noNUL("push", "ref", p.Ref, "before", p.Before, "after", p.After,
		"repository.full_name", p.Repository.FullName); err != nil {
		return nil, err
	}
	return &p, nil
}

// noNUL refuses a NUL byte (JSON "\u0000") in the named fields: they go
// into the event table, and Postgres text cannot hold one. Refusing the
// payload makes it a bad delivery with a reason, instead of a database
// error that fails every entry of its batch.
func noNUL(kind string, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.IndexByte(fields[i+1], 0) >= 0 {
			return fmt.Errorf("%s payload has a NUL byte in %s: %q", kind, fields[i], fields[i+1])
		}
	}
	return nil
}

// IsDeletion reports whether the push deleted its branch or tag (GitHub
// sets deleted, after to ZeroSHA and head_commit to null).
func (p *Push) IsDeletion() bool { return p.Deleted || p.After == ZeroSHA }

// Branch returns the branch name of a push to refs/heads/.
func (p *Push) Branch() (string, bool) { return cutPrefix(p.Ref, BranchPrefix) }

// Tag returns the tag name of a push to refs/tags/.
func (p *Push) Tag() (string, bool) { return cutPrefix(p.Ref, TagPrefix) }

func cutPrefix(ref, prefix string) (string, bool) {
	name, ok := strings.CutPrefix(ref, prefix)
	return name, ok && name != ""
}

// Hook is payload.hook of a ping.
type Hook struct {
	Type   string   `json:"type"` // Repository, Organization, App
	ID     int64    `json:"id"`
	Events []string `json:"events"`
	Active bool     `json:"active"`
	Config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
	} `json:"config"`
}

// Ping is the part of a ping event's payload the stages read; Repository
// is nil for an organization hook.
type Ping struct {
	Zen        string      `json:"zen"`
	HookID     int64       `json:"hook_id"`
	Hook       Hook        `json:"hook"`
	Repository *Repository `json:"repository"`
}

// DecodePing decodes a ping payload.
func DecodePing(payload []byte) (*Ping, error) {
	var p Ping
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("decode ping payload: %w", err)
	}
	if p.HookID == 0 {
		p.HookID = p.Hook.ID
	}
	repo := ""
	if p.Repository != nil {
		repo = p.Repository.FullName
	}
	if err := noNUL("ping", "repository.full_name", repo, "hook.type", p.Hook.Type, "hook.config.url", p.Hook.Config.URL,
		"hook.events", strings.Join(p.Hook.Events, ",")); err != nil {
		return nil, err
	}
	return &p, nil
}

// RepositoryName returns payload.repository.full_name of any event, "" if
// there is none (or the payload is not an object with that shape, or the
// name holds a NUL byte).
func RepositoryName(payload []byte) string {
	var p struct {
		Repository *Repository `json:"repository"`
	}
	if json.Unmarshal(payload, &p) != nil || p.Repository == nil || noNUL("", "", p.Repository.FullName) != nil {
		return ""
	}
	return p.Repository.FullName
}
