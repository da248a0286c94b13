package receive

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/gitrepo"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// SourceGitHook marks the entries HookEntries makes.
const SourceGitHook = "git-hook"

// maxHookLines bounds one push's updated refs.
const maxHookLines = 1000

// HookEntries turns what git gives a post-receive hook on stdin ("<old>
// <new> <ref>" per updated ref) into one queues/main push entry per line,
// with a generated delivery id ("hook-" and 32 hex digits) and a payload
// carrying the fields dh-route and dh-deploy read from a GitHub push:
// ref, before, after, created, deleted, repository.full_name and
// head_commit. The rest of the suite cannot tell them from webhooks.
// Every line is checked before any entry is made: one bad line (not three
// fields, a malformed commit or ref) is a sysexits.DataErr naming it.
func HookEntries(stdin io.Reader, repository string, now time.Time) (entries [][]byte, deliveries []string, err error) {
	if !config.ValidRepository(repository) {
		return nil, nil, sysexits.Errorf(sysexits.Usage, "--repository %q is not owner/name", repository)
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 4096), 4096)
	for n := 1; sc.Scan(); n++ {
		if n > maxHookLines {
			return nil, nil, sysexits.Errorf(sysexits.DataErr, "more than %d updated refs", maxHookLines)
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return nil, nil, sysexits.Errorf(sysexits.DataErr, "line %d: want \"<old> <new> <ref>\", got %q", n, sc.Text())
		}
		old, new, ref := fields[0], fields[1], fields[2]
		for _, sha := range []string{old, new} {
			if err := gitrepo.CheckSHA(sha); err != nil {
				return nil, nil, sysexits.Errorf(sysexits.DataErr, "line %d: %v", n, err)
			}
		}
		if err := gitrepo.CheckRef(ref); err != nil {
			return nil, nil, sysexits.Errorf(sysexits.DataErr, "line %d: %v", n, err)
		}
		entry, delivery, err := hookEntry(repository, old, new, ref, now)
		if err != nil {
			return nil, nil, err
		}
		entries, deliveries = append(entries, entry), append(deliveries, delivery)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, sysexits.Errorf(sysexits.DataErr, "read stdin: %v", err)
	}
	return entries, deliveries, nil
}

func hookEntry(repository, old, new, ref string, now time.Time) ([]byte, string, error) {
	zero := strings.Repeat("0", len(new))
	var head *github.Commit
	if new != zero {
		head = &github.Commit{ID: new}
	}
	payload, err := json.Marshal(github.Push{
		Ref: ref, Before: old, After: new, Created: old == zero, Deleted: new == zero,
		Repository: github.Repository{FullName: repository}, HeadCommit: head,
	})
	if err != nil {
		return nil, "", err
	}
	var id [16]byte
	rand.Read(id[:])
	delivery := "hook-" + hex.EncodeToString(id[:])
	ev := event.GitHubEvent{Delivery: delivery, Event: "push", ReceivedAt: now, Source: SourceGitHook, Payload: payload}
	data, err := ev.Encode()
	if err != nil {
		return nil, "", fmt.Errorf("encode hook entry: %w", err)
	}
	return data, delivery, nil
}
