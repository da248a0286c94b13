package statustest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// StoryGUID is the webhook delivery Story records.
const StoryGUID = "6f1a6a40-1b1c-11ef-8e4c-3b8c2a7d9e01"

// StoryLog is the log of the story's failed run of api.
const StoryLog = "[dh-deploy 11:40:00] step 1/1: pnpm build\nERR_PNPM story failed\n"

// StorySubject is the subject of the story's commit.
const StorySubject = "build: switch to pnpm 9"

// Story is one delivery's story, for the delivery page.
type Story struct {
	GUID    string
	Failed  int64  // api's run: failed with exit 2 at step 1
	Running int64  // docs's run: still running
	LogPath string // docs's running log, which a test may append to
}

// Story records a push (StoryGUID) routed to api and docs, api's run of
// it failed (its error holding Hostile) and docs's still running, each
// with a log. It adds a routing decision to the installation.
func (in *Install) Story(t testing.TB) *Story {
	t.Helper()
	ctx := context.Background()
	st := in.Store
	s := &Story{GUID: StoryGUID}
	ev := store.Event{Delivery: StoryGUID, Event: "push", HookID: 7, Repository: "ducompsoc/durhack",
		Ref: "refs/heads/main", Before: CommitOK, After: CommitFailed, ReceivedAt: in.Now.Add(-30 * time.Minute)}
	d := store.Decided{Event: ev, Status: store.StatusRouted, Entry: "story.json", Deployments: []string{"api", "docs"}}
	if _, err := st.InsertDecided(ctx, []store.Decided{d}); err != nil {
		t.Fatalf("InsertDecided = %v", err)
	}
	log := func(deployment, name, text string) string {
		dir := config.RunLogDir(in.Config.StateDir, deployment)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := store.Run{Delivery: StoryGUID, Deployment: "api", Trigger: "webhook", TriggeredBy: "pusher=alice sender=alice-gh",
		Ref: "refs/heads/main", Commit: CommitFailed, Previous: CommitOK, State: store.RunRunning,
		CommitSubject: StorySubject, CommitAuthor: "Alice <alice@example.org>",
		StartedAt: time.Now().Add(-2 * time.Minute), LogPath: log("api", "20261122T114000.000000000Z-story-1.log", StoryLog)}
	var err error
	if s.Failed, err = st.InsertRun(ctx, run); err != nil {
		t.Fatalf("InsertRun = %v", err)
	}
	if err := st.FinishRun(ctx, s.Failed, store.RunResult{State: store.RunFailed, ExitCode: new(2), FailedStep: new(1),
		Error: "step 1 (pnpm build) exited 2 " + Hostile}); err != nil {
		t.Fatalf("FinishRun = %v", err)
	}
	run.Deployment, run.LogPath = "docs", log("docs", "20261122T114000.000000000Z-story-1.log", "[dh-deploy 11:40:00] step 1/1: build\n")
	s.LogPath = run.LogPath
	if s.Running, err = st.InsertRun(ctx, run); err != nil {
		t.Fatalf("InsertRun = %v", err)
	}
	return s
}
