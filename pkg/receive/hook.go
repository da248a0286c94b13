package receive

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/ident"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/termsafe"
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
// fields, a malformed commit or ref) is bad data (an *event.Error) naming
// it.
func HookEntries(stdin io.Reader, repository string, now time.Time) (entries [][]byte, deliveries []string, err error) {
	if _, err := ident.ParseRepository(repository); err != nil {
		return nil, nil, usageError{fmt.Errorf("--repository %q is not owner/name", repository)}
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 4096), 4096)
	for n := 1; sc.Scan(); n++ {
		if n > maxHookLines {
			return nil, nil, event.Errorf("more than %d updated refs", maxHookLines)
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return nil, nil, event.Errorf("line %d: want \"<old> <new> <ref>\", got %q", n, sc.Text())
		}
		old, new, ref := fields[0], fields[1], fields[2]
		for _, sha := range []string{old, new} {
			if _, err := ident.ParseCommit(sha); err != nil {
				return nil, nil, event.Errorf("line %d: %v", n, err)
			}
		}
		if _, err := ident.ParseRef(ref); err != nil {
			return nil, nil, event.Errorf("line %d: %v", n, err)
		}
		entry, delivery, err := hookEntry(repository, old, new, ref, now)
		if err != nil {
			return nil, nil, err
		}
		entries, deliveries = append(entries, entry), append(deliveries, delivery)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, event.Errorf("read stdin: %v", err)
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

// The git hook reaches dh-receive over a unix socket of its own
// (receive.hook_socket), never the queue: `dh-receive hook` (Push) sends
// what git gave it, and dh-receive (HookHandler), which alone writes
// queues/main, identifies the pushing user by the socket's peer
// credentials (SO_PEERCRED, set by the kernel, not by the client) and
// queues the push only if receive.hook_users gives that user the
// repository. The socket's group (HookGroup) limits who may connect at
// all.

// CheckPeerCredentials fails unless this process sees every user id as
// it is (the identity map in /proc/self/uid_map): in a user namespace
// such as systemd's PrivateUsers=, SO_PEERCRED shows the hook's users all
// as the overflow id (nobody), and could not tell them apart.
func CheckPeerCredentials() error {
	m, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return fmt.Errorf("read uid map: %w", err)
	}
	if f := strings.Fields(string(m)); len(f) != 3 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295" {
		return errors.New("this process runs in a user namespace (uid map " + strings.Join(f, " ") +
			"): the hook socket could not tell its users apart; remove PrivateUsers= from dh-receive's unit")
	}
	return nil
}

// maxHookBody bounds what one hook sends: maxHookLines lines of at most
// 4 KiB each would be more than any push.
const maxHookBody = 1 << 20

// hookPath is the hook socket's one endpoint.
const hookPath = "/push"

type peerKey struct{}

// withPeer is the hook server's ConnContext: it records the peer
// credentials of a unix-socket connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// HookHandler serves the hook socket: POST /push?repository=OWNER/NAME
// with git's "<old> <new> <ref>" lines as the body. Answers: 202
// {"deliveries": [...]}; 400 bad lines or repository; 403 a user that
// receive.hook_users does not give the repository; 503 not stored (with
// the deliveries that were), or queues/main full (admit). With
// &wait=SECONDS the 202 is text/plain instead, streamed: the log of each
// run the pushes cause as it is written and its result line, ending with
// the Dh-Outcome trailer (wait.go); 501 without receive.status_url.
func (s *Server) HookHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hookPath, s.admit(s.hookPush)) // refused while the queue is full
	return mux
}

func (s *Server) hookPush(w http.ResponseWriter, r *http.Request) {
	cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
	repository := r.URL.Query().Get("repository")
	if cred == nil {
		fail(w, http.StatusForbidden, "no peer credentials on this connection")
		return
	}
	log := s.Logger.With("uid", cred.Uid, "pid", cred.Pid, "repository", repository)
	if _, err := ident.ParseRepository(repository); err != nil {
		log.Warn("hook push rejected", "reason", "bad repository")
		fail(w, http.StatusBadRequest, fmt.Sprintf("repository %q is not owner/name", repository))
		return
	}
	if !slices.ContainsFunc(s.HookUsers[cred.Uid], func(r string) bool { return strings.EqualFold(r, repository) }) {
		log.Warn("hook push rejected", "reason", "user not allowed")
		fail(w, http.StatusForbidden, fmt.Sprintf("user %d may not queue pushes of %s: receive.hook_users does not give it that repository", cred.Uid, repository))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d bytes of updated refs", maxHookBody))
		return
	}
	entries, deliveries, err := HookEntries(bytes.NewReader(body), repository, s.Now().UTC())
	if err != nil {
		log.Warn("hook push rejected", "reason", err.Error())
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := waitParam(r.URL.Query(), r.Header)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	release, ok := s.startWait(w, wait, fmt.Sprintf("user %d", cred.Uid))
	if !ok {
		return
	}
	defer release()
	items := make([]queue.Item, len(entries))
	for i, e := range entries {
		items[i] = queue.Item{Queue: s.Queue, Data: e}
	}
	// Each ref stands alone: report the ones queued, and fail with the
	// first that was not.
	var queued []string
	var first error
	for i, res := range queue.PublishAll(items) {
		if res.Err != nil {
			log.Error("hook push not queued", "delivery", deliveries[i], "err", res.Err)
			first = cmp.Or(first, res.Err)
			continue
		}
		log.Info("hook push queued", "delivery", deliveries[i], "entry", res.Name)
		queued = append(queued, deliveries[i])
	}
	if first != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": http.StatusServiceUnavailable,
			"message": http.StatusText(http.StatusServiceUnavailable), "deliveries": queued,
			"description": "not every ref could be stored; run the hook again once the cause is fixed"})
		return
	}
	if wait > 0 {
		s.streamRuns(w, r, queued, wait)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"deliveries": queued})
}

// Push sends the lines git gave a post-receive hook to dh-receive's hook
// socket and returns the deliveries queued. Its errors carry the exit
// status: 64 a bad repository name, 65 bad lines, 77 not allowed (by the
// socket's group or receive.hook_users), 75 dh-receive not reachable or
// the queue not writable, 78 waiting asked without receive.status_url.
//
// With wait > 0, dh-receive streams the runs' logs and results, which
// Push copies to out as they come; its error is then the pushes' outcome
// too: 1 a run failed, 75 still running at the end of
// the wait (at most MaxWait) or not known.
func Push(ctx context.Context, socket, repository string, lines io.Reader, wait time.Duration, out io.Writer) ([]string, error) {
	if _, err := ident.ParseRepository(repository); err != nil {
		return nil, usageError{fmt.Errorf("--repository %q is not owner/name", repository)}
	}
	body, err := io.ReadAll(io.LimitReader(lines, maxHookBody+1))
	if err != nil {
		return nil, event.Errorf("read stdin: %v", err)
	}
	if wait > MaxWait {
		return nil, usageError{fmt.Errorf("--wait %s: at most %s", wait, MaxWait)}
	}
	timeout := 30 * time.Second
	if wait > 0 {
		timeout += wait + time.Minute // the stream lasts up to wait
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	q := url.Values{"repository": {repository}}
	if wait > 0 {
		q.Set("wait", strconv.Itoa(int(wait.Round(time.Second)/time.Second)))
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://dh-receive"+hookPath+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, hint.With(fmt.Errorf("connect to %s: %w", socket, err), // fs.ErrPermission: 77
				"only members of the group "+HookGroup+" may: dh-deployer-acl hook USER")
		}
		return nil, hint.With(queue.Retry(fmt.Errorf("connect to %s: %v", socket, err)),
			"is dh-receive running with receive.hook_users set (dh-receive-hook.socket)? then run the hook again")
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode == http.StatusAccepted && mt == "text/plain" {
		return nil, followRuns(resp, out)
	}
	var answer struct {
		Deliveries  []string `json:"deliveries"`
		Description string   `json:"description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
		return nil, queue.Retry(fmt.Errorf("answer of dh-receive (%s): %v", resp.Status, err))
	}
	err = fmt.Errorf("dh-receive: %s", answer.Description)
	switch resp.StatusCode {
	case http.StatusAccepted:
		return answer.Deliveries, nil
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return answer.Deliveries, &event.Error{Err: err}
	case http.StatusForbidden:
		return answer.Deliveries, fmt.Errorf("%w (%w)", err, fs.ErrPermission)
	case http.StatusNotImplemented:
		return answer.Deliveries, &config.Error{Err: err}
	}
	return answer.Deliveries, queue.Retry(err)
}

// followRuns copies a waiting hook's stream to out and turns its outcome
// (the trailer) into the error Push returns. The stream carries the
// runs' logs, which a build wrote, to the pusher's terminal (through git
// push): it is shown defused (termsafe), so that no escape sequence
// drives the terminal and no CR overwrites a line.
func followRuns(resp *http.Response, out io.Writer) error {
	safe := termsafe.NewWriter(out)
	_, err := io.Copy(safe, resp.Body)
	if err := cmp.Or(err, safe.Flush()); err != nil {
		return queue.Retry(fmt.Errorf("dh-receive's stream broke off: %v", err))
	}
	switch o := resp.Trailer.Get(TrailerOutcome); o {
	case OutcomeFailed:
		return errors.New("the deploy failed")
	case OutcomePending, "":
		return queue.Retry(errors.New("no result yet: the runs go on"))
	}
	return nil
}
