package route_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// TestPoster: dh-route sets the commit statuses the workers queue in
// queues/status, with the token only it reads, on the repository of the
// entry's deployment only and only from that deployment's user (issue
// 17, finding 7b); GitHub's temporary failures keep the entry queued.
func TestPoster(t *testing.T) {
	const token = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
	var mu sync.Mutex
	var got []string
	fail := 0 // answer 502 this many times first
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			State, Description, Context string
			TargetURL                   string `json:"target_url"`
		}
		err := json.NewDecoder(req.Body).Decode(&body)
		switch {
		case err != nil, req.Method != http.MethodPost, req.Header.Get("Authorization") != "Bearer "+token,
			!strings.HasPrefix(req.Header.Get("User-Agent"), "dh-deployer/"), body.Context != "deploys":
			http.Error(w, `{"message":"contract broken"}`, http.StatusBadRequest)
			t.Errorf("bad status request %s %s %v %+v (%v)", req.Method, req.URL.Path, req.Header, body, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			http.Error(w, `{"message":"bad gateway"}`, http.StatusBadGateway)
			return
		}
		got = append(got, req.URL.Path+" "+body.State+" "+body.Description+" "+body.TargetURL)
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	file := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = "postgres:///none?host=/nonexistent"
[github]
api_url = %q
token_file = %q
status_context = "deploys"
[deployments.app]
repository = "acme/app"
branches = ["main"]
path = "/srv/app"
[deployments.other]
repository = "acme/other"
branches = ["main"]
path = "/srv/other"
user = "nobody"
`, filepath.Join(dir, "queues"), filepath.Join(dir, "state"), api.URL, tokenFile)
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := route.NewPoster(cfg, nil, os.Getenv, "dh-deployer/test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	q := queue.Open(cfg.QueuePath(config.StatusQueue))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("a", 40)
	handle := func(e event.CommitStatus, owner int) error {
		t.Helper()
		e.CreatedAt = time.Now()
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		name, err := q.Publish(data)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(cfg.QueuePath(config.StatusQueue), name)
		defer os.Remove(path)
		// The owner as the consumer read it from the open file.
		return p.Handle(context.Background(), &queue.Entry{Name: name, Path: path, Data: data, Owner: max(owner, 0)})
	}
	good := event.CommitStatus{Deployment: "app", Repository: "acme/app", Commit: sha, State: "success",
		Description: "deployed app", TargetURL: "https://ci.example.org/app/1"}
	if err := handle(good, -1); err != nil {
		t.Errorf("Handle(app's status, by root) = %v; want set", err)
	}
	forged := good
	forged.Repository = "acme/other"
	if err := handle(forged, -1); sysexits.Code(err) != sysexits.DataErr || !strings.Contains(err.Error(), "deployment app deploys acme/app") {
		t.Errorf("Handle(a status for another deployment's repository) = %v; want refused (DataErr)", err)
	}
	// app runs as dh-deploy by default; an entry owned by another
	// deployment's user ("nobody", other's) is refused.
	if err := handle(good, 65534); sysexits.Code(err) != sysexits.DataErr || !strings.Contains(err.Error(), "not by dh-deploy (deployment app's user)") {
		t.Errorf("Handle(app's status published by nobody) = %v; want refused (DataErr)", err)
	}
	other := event.CommitStatus{Deployment: "other", Repository: "acme/other", Commit: sha, State: "pending"}
	if err := handle(other, 65534); err != nil {
		t.Errorf("Handle(other's status, by its user nobody) = %v; want set", err)
	}
	mu.Lock()
	fail = 1
	mu.Unlock()
	failed := good
	failed.State = "failure"
	if err := handle(failed, -1); err != nil {
		t.Errorf("Handle(after one 502) = %v; want set on the retry", err)
	}
	mu.Lock()
	fail = 100
	mu.Unlock()
	if err := handle(good, -1); !queue.IsRetry(err) {
		t.Errorf("Handle(GitHub down) = %v; want a temporary failure (the entry stays queued)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"/repos/acme/app/statuses/" + sha + " success deployed app https://ci.example.org/app/1",
		"/repos/acme/other/statuses/" + sha + " pending  ",
		"/repos/acme/app/statuses/" + sha + " failure deployed app https://ci.example.org/app/1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("statuses set:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
