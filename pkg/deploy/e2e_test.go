package deploy_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/deploy"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/receive"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// The step starts, and the first time it then hangs.
const hangOnce = `steps = [["sh", "-c", "echo start >> $TRACE; if [ ! -e $TRACE.mark ]; then touch $TRACE.mark; exec sleep 60; fi; echo done >> $TRACE"]]`

// A worker killed with SIGKILL mid-step (or stopped with SIGTERM) leaves
// the entry queued; at restart the run is marked interrupted and the entry
// runs again, once.
func TestStoppedMidStep(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			r := newRig(t, hangOnce)
			sha := r.commit("main", nil)
			r.enqueue("d-1", "refs/heads/main", sha)
			cmd := exec.Command(bin, "-c", r.file, "run", "app")
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for r.readTrace() != "start\n" {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("the step did not start; worker said:\n%s", out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // well inside the step
			cmd.Process.Signal(sig)
			start := time.Now()
			err := cmd.Wait()
			if sig == syscall.SIGTERM && (err != nil || time.Since(start) > 20*time.Second) {
				t.Errorf("after SIGTERM the worker exited with %v after %s; want 0, promptly\n%s", err, time.Since(start), out)
			}
			if got := states(r.runs()); sig == syscall.SIGTERM && (len(got) != 1 || got[0] != store.RunInterrupted) {
				t.Errorf("after SIGTERM runs are %v; want [interrupted]", got)
			}
			if names, _ := queue.Open(r.cfg.QueuePath("app")).List(); len(names) != 1 {
				t.Fatalf("after %s the queue holds %v; want the entry still there", sig, names)
			}

			again := exec.Command(bin, "-c", r.file, "run", "app", "--once")
			if b, err := again.CombinedOutput(); err != nil {
				t.Fatalf("run --once after %s = %v\n%s", sig, err, b)
			}
			runs := r.runs()
			if got := states(runs); len(got) != 2 || got[0] != store.RunInterrupted || got[1] != store.RunSucceeded ||
				runs[1].Attempt != 2 || runs[1].Commit != sha {
				t.Errorf("runs %+v; want attempt 1 interrupted, attempt 2 succeeded", runs)
			}
			if got := r.readTrace(); got != "start\nstart\ndone\n" {
				t.Errorf("trace %q; want the step started twice and finished once", got)
			}
			if names, _ := queue.Open(r.cfg.QueuePath("app")).List(); len(names) != 0 {
				t.Errorf("queue holds %v after the rerun; want empty", names)
			}
		})
	}
}

// A log is what a build chose to print: logs shows it defused for the
// terminal (no escape sequence, no carriage return overwriting a line),
// and never a file the deployment's user swapped in for it (a symlink
// out of logs/NAME, a FIFO that would hang the reader).
func TestLogsHostile(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	r := newRig(t, `steps = [["printf", "\\033]0;pwned\\007\\033[2Jbuilt\\rFAKE: all good\\n"]]`)
	sha := r.commit("main", nil)
	r.enqueue("d-1", "refs/heads/main", sha)
	if b, err := exec.Command(bin, "-c", r.file, "run", "app", "--once").CombinedOutput(); err != nil {
		t.Fatalf("run --once = %v\n%s", err, b)
	}
	for _, args := range [][]string{{"logs", "app"}, {"logs", "app", "--follow"}} {
		out, err := exec.Command(bin, append([]string{"-c", r.file}, args...)...).Output()
		if err != nil || !strings.Contains(string(out), "^[]0;pwned^G^[[2Jbuilt\nFAKE: all good\n") ||
			strings.ContainsAny(string(out), "\x1b\x07\r") {
			t.Errorf("%s = %q, %v; want the escapes shown as ^[ and ^G, the CR as a line break", args, out, err)
		}
	}

	runs := r.runs()
	logPath := runs[len(runs)-1].LogPath
	secret := filepath.Join(r.dir, "secret")
	os.WriteFile(secret, []byte("TOP-SECRET\n"), 0o600)
	for what, swap := range map[string]func() error{
		"a symlink out of logs/app": func() error { return os.Symlink(secret, logPath) },
		"a FIFO":                    func() error { return syscall.Mkfifo(logPath, 0o600) },
	} {
		os.Remove(logPath)
		if err := swap(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-c", r.file, "logs", "app")
		out, _ := cmd.CombinedOutput()
		cancel()
		if strings.Contains(string(out), "TOP-SECRET") || cmd.ProcessState.ExitCode() != 69 || !strings.Contains(string(out), "log") {
			t.Errorf("logs app with the log replaced by %s: exit %d\n%s; want 69 naming the log, and nothing of the file", what, cmd.ProcessState.ExitCode(), out)
		}
	}
}

// history and logs print what the runs recorded.
func TestHistoryAndLogs(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	r := newRig(t, `steps = [["sh", "-c", "echo building $DH_COMMIT"]]`)
	sha := r.commit("main", nil)
	r.enqueue("d-1", "refs/heads/main", sha)
	if b, err := exec.Command(bin, "-c", r.file, "run", "app", "--once").CombinedOutput(); err != nil {
		t.Fatalf("run --once = %v\n%s", err, b)
	}
	hist, err := exec.Command(bin, "-c", r.file, "history", "app").Output()
	if err != nil || !strings.Contains(string(hist), "succeeded") || !strings.Contains(string(hist), sha[:12]) ||
		!strings.HasPrefix(string(hist), "RUN") {
		t.Errorf("history = %q, %v; want a table with the succeeded run", hist, err)
	}
	js, err := exec.Command(bin, "-c", r.file, "history", "app", "--json").Output()
	if err != nil || !strings.Contains(string(js), `"state":"succeeded"`) || !strings.Contains(string(js), `"commit":"`+sha+`"`) {
		t.Errorf("history --json = %q, %v", js, err)
	}
	logs, err := exec.Command(bin, "-c", r.file, "logs", "app").Output()
	if err != nil || !strings.Contains(string(logs), "building "+sha) {
		t.Errorf("logs = %q, %v; want the step's output", logs, err)
	}
	cmd := exec.Command(bin, "-c", r.file, "logs", "app", "999")
	if b, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 69 {
		t.Errorf("logs app 999 = %v\n%s; want exit 69", err, b)
	}
	// A long history: a page by default, the next with --before, every
	// run with --all (read a page at a time).
	const more = 1200
	db, err := sql.Open("postgres", r.url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO runs (delivery, deployment, state)
		SELECT 'old-' || i, 'app', 'failed' FROM generate_series(1, $1) AS i`, more); err != nil {
		t.Fatal(err)
	}
	lines := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-c", r.file, "history", "app"}, args...)...).Output()
		if err != nil {
			t.Fatalf("history %q = %v", args, err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	if got := lines(); len(got) != 21 || !strings.HasPrefix(got[1], strconv.Itoa(more+1)+" ") {
		t.Errorf("history printed %d lines from %.20q; want the header and the newest 20 runs", len(got), got[1])
	}
	if got := lines("-n", "2", "--before", "5", "--json"); len(got) != 2 || !strings.Contains(got[0], `"id":4,`) ||
		!strings.Contains(got[1], `"id":3,`) {
		t.Errorf("history -n 2 --before 5 = %q; want runs 4 and 3", got)
	}
	if got := lines("--all", "--json"); len(got) != more+1 || !strings.Contains(got[more], `"state":"succeeded"`) {
		t.Errorf("history --all printed %d runs; want %d, the oldest the succeeded one", len(got), more+1)
	}
	cmd = exec.Command(bin, "-c", r.file, "history", "nope")
	if b, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 64 || !strings.Contains(string(b), "nope") {
		t.Errorf("history nope exited %d: %s; want 64 naming it", cmd.ProcessState.ExitCode(), b)
	}
}

// A bare repository on this host whose post-receive hook is the one-line
// `dh-receive hook`: a git push is routed and deployed like a webhook.
func TestGitHookTrigger(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-receive")
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT $DH_REF >> $TRACE"]]`)
	main := queue.Open(r.cfg.QueuePath(config.MainQueue))
	if err := main.Init(); err != nil {
		t.Fatal(err)
	}
	// dh-receive's hook socket, which lets this user push acme/app.
	socket := filepath.Join(testenv.ShortTempDir(t, "dh-hook"), "hook.sock")
	web, hookListener, err := receive.Listen("127.0.0.1:0", socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &receive.Server{Config: config.Default().Receive, Queue: main, HookListener: hookListener,
		HookUsers: map[uint32][]string{uint32(os.Getuid()): {"acme/app"}}, Logger: slog.New(slog.DiscardHandler), Now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, web, nil) }()
	defer func() { cancel(); <-served }()
	hook := fmt.Sprintf("#!/bin/sh\nexec %s hook --socket %s --repository acme/app\n", bin, socket)
	if err := os.WriteFile(filepath.Join(r.remote, "hooks", "post-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	sha := r.commit("main", map[string]string{"index.html": "hi"}) // git push runs the hook
	names, _ := main.List()
	if len(names) != 1 {
		t.Fatalf("after the push queues/main holds %v; want one entry", names)
	}
	c, err := main.Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	router := route.New(r.cfg, r.st, route.Options{})
	if err := c.RunBatch(context.Background(), router.HandleBatch, queue.Options{Once: true}); err != nil {
		t.Fatalf("route = %v", err)
	}
	if err := r.drain(); err != nil {
		t.Fatalf("deploy = %v", err)
	}
	if got := r.readTrace(); got != sha+" refs/heads/main\n" || r.head() != sha {
		t.Errorf("steps wrote %q, head %s; want %s deployed", got, r.head(), sha)
	}
	if runs := r.runs(); len(runs) != 1 || runs[0].Trigger != deploy.TriggerHook {
		t.Errorf("runs %+v; want one with trigger hook", runs)
	}
}

// POST /deploy/NAME with the deployment's token, through the real
// receive handler, dh-route and the worker: deployed; a wrong token is
// refused and queues nothing.
func TestTokenTrigger(t *testing.T) {
	t.Parallel()
	r := newRig(t, `steps = [["sh", "-c", "echo $DH_COMMIT >> $TRACE"]]`)
	main := queue.Open(r.cfg.QueuePath(config.MainQueue))
	if err := main.Init(); err != nil {
		t.Fatal(err)
	}
	const token = "ci-token-for-app-0123456789"
	srv := &receive.Server{Config: config.Default().Receive, Tokens: map[string][]config.DeployToken{"app": {{Name: "ci.token", Token: []byte(token)}}},
		Queue: main, Logger: slog.New(slog.DiscardHandler), Now: time.Now}
	api := httptest.NewServer(srv.Handler())
	defer api.Close()
	post := func(auth string) int {
		req, _ := http.NewRequest("POST", api.URL+"/deploy/app", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sha := r.commit("main", nil)
	if code := post("Bearer wrong-token-0123456789"); code != http.StatusForbidden {
		t.Errorf("wrong token: %d; want 403", code)
	}
	if names, _ := main.List(); len(names) != 0 {
		t.Fatalf("a refused request queued %v", names)
	}
	if code := post("Bearer " + token); code != http.StatusAccepted {
		t.Fatalf("right token: %d; want 202", code)
	}
	c, err := main.Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.RunBatch(context.Background(), route.New(r.cfg, r.st, route.Options{}).HandleBatch, queue.Options{Once: true}); err != nil {
		t.Fatalf("route = %v", err)
	}
	if err := r.drain(); err != nil {
		t.Fatalf("deploy = %v", err)
	}
	if runs := r.runs(); len(runs) != 1 || runs[0].State != store.RunSucceeded || runs[0].Trigger != deploy.TriggerToken ||
		runs[0].Commit != sha || r.readTrace() != sha+"\n" || runs[0].TriggeredBy != "token=ci.token" {
		t.Errorf("runs %+v, trace %q; want the tip %s deployed by token ci.token", runs, r.readTrace(), sha)
	}
}

// SIGHUP makes a running worker take up its deployment's changed steps at
// its next run, without a restart. A configuration without its deployment
// is refused with an error line: the worker keeps the one it has and goes
// on deploying.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	r := newRig(t, `steps = [["sh", "-c", "echo one >> $TRACE"]]`)
	d := testenv.StartDaemon(t, exec.Command(bin, "-c", r.file, "run", "app"))
	wait := func(what string, cond func() bool) { t.Helper(); d.WaitFor(t, what, 30*time.Second, cond) }
	logs := d.Out
	wait("the start", func() bool { return strings.Contains(logs.String(), "msg=deploying") })
	r.enqueue("d-1", "refs/heads/main", r.commit("main", nil))
	wait("run 1", func() bool { return r.readTrace() == "one\n" })

	doc, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.file, []byte(strings.Replace(string(doc), "echo one", "echo two", 1)), 0o600)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	wait("the reload", func() bool { return strings.Contains(logs.String(), "configuration reloaded") })
	r.enqueue("d-2", "refs/heads/main", r.commit("main", nil))
	wait("run 2", func() bool { return r.readTrace() == "one\ntwo\n" })

	// The deployment gone from the file: refused, and the old one kept.
	gone := strings.Replace(string(doc), "[deployments.app]", "[deployments.other]", 1)
	os.WriteFile(r.file, []byte(strings.Replace(gone, "echo one", "echo three", 1)), 0o600)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	wait("the refused reload", func() bool {
		return strings.Contains(logs.String(), `level=ERROR msg="configuration reload failed; keeping the old one" err="deployment \"app\" is no longer in`)
	})
	r.enqueue("d-3", "refs/heads/main", r.commit("main", nil))
	wait("run 3", func() bool { return r.readTrace() == "one\ntwo\ntwo\n" })
	// The step has written; the run ends (switch, record) just after.
	wait("run 3 recorded", func() bool {
		got := states(r.runs())
		return len(got) == 3 && got[2] != store.RunRunning
	})

	d.Stop(t)
	if got := states(r.runs()); len(got) != 3 || got[2] != store.RunSucceeded {
		t.Errorf("runs %v; want three succeeded", got)
	}
}

// Runs by hand exit with the documented statuses: 0 a run that succeeded,
// 1 one that failed (deploy, rollback, replay) with the run's error, 69
// nothing to roll back to, 64 an unknown deployment.
func TestManualExitStatus(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	extra := `steps = [["sh", "-c", "test ! -e $TRACE.fail || exit 3"]]`
	if !inPlace { // a rollback switches without building: its activation fails
		extra += "\nactivate = [[\"sh\", \"-c\", \"test ! -e $TRACE.fail || exit 4\"]]"
	}
	r := newRig(t, extra)
	dh := func(want int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-c", r.file}, args...)...)
		b, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != want {
			t.Errorf("dh-deploy %s exited %d; want %d\n%s", strings.Join(args, " "), got, want, b)
		}
		return string(b)
	}
	a := r.commit("main", map[string]string{"a": "1"})
	dh(0, "deploy", "app")
	dh(69, "rollback", "app")
	r.commit("main", map[string]string{"a": "2"})
	dh(0, "deploy", "app")
	dh(64, "deploy", "nope")
	if err := os.WriteFile(r.trace+".fail", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := dh(1, "deploy", "app", "--commit", a); !strings.Contains(out, "step 1 (sh) failed") {
		t.Errorf("a failed deploy says %q; want the run's error", out)
	}
	dh(1, "rollback", "app")
	r.enqueue("d-1", "refs/heads/main", r.commit("main", map[string]string{"a": "3"}))
	dh(0, "run", "app", "--once")
	failed := r.failed()
	if len(failed) != 1 {
		t.Fatalf("failed/ = %v; want the failed entry", failed)
	}
	dh(1, "replay", filepath.Join(r.cfg.QueuePath("app"), queue.FailedDir, failed[0]))
}

// Every run records who or what triggered it, and history --json shows
// it: the pusher and sender of a push (a hostile name quoted), the Unix
// user behind a command by hand (SUDO_USER).
func TestTriggeredByInHistory(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "dh-deploy")
	r := newRig(t, `steps = [["true"]]`)
	sha := r.commit("main", nil)
	payload := fmt.Sprintf(`{"ref":"refs/heads/main","before":"%040d","after":%q,"repository":{"full_name":"acme/app"},`+
		`"head_commit":{"id":%q},"pusher":{"name":"alice","email":"a@example.com"},"sender":{"login":"octo\ncat x=1"}}`, 0, sha, sha)
	ev := event.GitHubEvent{Delivery: "d-1", Event: "push", ReceivedAt: time.Now(), Deployment: "app", Payload: []byte(payload)}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	q := queue.Open(r.cfg.QueuePath("app"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Publish(data); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bin, "-c", r.file, "run", "app", "--once").CombinedOutput(); err != nil {
		t.Fatalf("run --once = %v\n%s", err, b)
	}
	r.commit("main", nil)
	cmd := exec.Command(bin, "-c", r.file, "deploy", "app")
	cmd.Env = append(os.Environ(), "SUDO_USER=bob")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy = %v\n%s", err, b)
	}
	js, err := exec.Command(bin, "-c", r.file, "history", "app", "--json").Output()
	if err != nil {
		t.Fatalf("history --json = %v", err)
	}
	var got []string
	for line := range strings.Lines(string(js)) {
		var run store.Run
		if err := json.Unmarshal([]byte(line), &run); err != nil {
			t.Fatalf("history --json line %q: %v", line, err)
		}
		got = append(got, run.TriggeredBy)
	}
	want := []string{"user=bob", `pusher=alice sender="octo\ncat x=1"`}
	if !slices.Equal(got, want) {
		t.Errorf("triggered_by in history --json = %q; want %q", got, want)
	}
	hist, _ := exec.Command(bin, "-c", r.file, "history", "app").Output()
	if !strings.Contains(string(hist), "user=bob") {
		t.Errorf("history = %s; want the user", hist)
	}
}
