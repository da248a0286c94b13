package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/receive"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// A delivery's story and live logs, through the real stages as their
// users: a token deploy with ?wait answers 200 with its result and log
// tail for a build that succeeds, 422 for one that fails, and its
// Location is the delivery's page, which lists the run; `dh-deploy logs
// --follow` and `dh-receive hook --wait` (as a pushing user in dh-hook)
// print a line of the step while the step still runs: the step waits for
// a gate file the test makes only after it saw the line.
func TestDeliveryFeedback(t *testing.T) {
	r := newRig(t, rigOptions{})
	app := r.newRepo("e2e/app")
	// Four commits, each deployed in turn: token ok, token failing, hook
	// ok, hook failing. The step prints, then waits for its commit's gate,
	// which holds the exit status it ends with.
	app.push(t, app.commit(t, map[string]string{"index.html": "<h1>e2e</h1>\n"}, 4))
	c := app.commits
	gates := filepath.Join(r.root, "gates")
	mkdir(t, gates, 0o755)
	gate := func(sha, status string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(gates, sha), []byte(status+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	dir := filepath.Dir(r.config)
	statusToken, deployToken := "status-"+demo.NewGUID(), "deploy-"+demo.NewGUID()
	files := map[string]string{"status-token": "dh-route", "receive-status-token": "dh-receive", "deploy-token": "dh-receive"}
	for name, owner := range files {
		tok := statusToken
		if name == "deploy-token" {
			tok = deployToken
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		chownName(t, filepath.Join(dir, name), owner)
	}
	run := filepath.Join(r.root, "run")
	mkdir(t, run, 0o755)
	chownName(t, run, "dh-receive") // it makes the hook socket there
	socket := filepath.Join(run, "hook.sock")
	const pusher = "nobody" // the user who pushes to a bare repository on the host
	r.acl("hook", pusher)
	t.Cleanup(func() { aclTool(t, r.root, "--undo", "hook", pusher) })
	r.receiveGroups = []string{receive.HookGroup}

	statusAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	statusURL := "http://" + statusAddr
	step := config.TOMLArray([]string{"sh", "-c", `echo "building $DH_COMMIT"; g=` + gates + `/$DH_COMMIT; ` +
		`while [ ! -e "$g" ]; do sleep 0.05; done; echo "gate open"; exit "$(cat "$g")"`})
	r.writeConfig(fmt.Sprintf(`
[status]
listen     = %q
token_file = %q

[deployments.app]
repository  = %q
branches    = ["main"]
path        = %q
clone_url   = %q
steps       = [%s]
token_files = [%q]
`, statusAddr, filepath.Join(dir, "status-token"), app.fullName, r.checkout("app"), app.bare, step, filepath.Join(dir, "deploy-token")))
	doc, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.Replace(string(doc), "[receive]\n", fmt.Sprintf(`[receive]
status_url        = %q
status_token_file = %q
hook_socket       = %q
hook_users        = { %s = [%q] }
`, statusURL, filepath.Join(dir, "receive-status-token"), socket, pusher, app.fullName), 1))
	if err := os.WriteFile(r.config, doc, 0o640); err != nil {
		t.Fatal(err)
	}
	r.migrate()
	r.acl("deployment", "app")
	r.startStages([]string{"app"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r.waitFor(ctx, "dh-route's status listener", func() bool {
		code, _ := r.get(statusURL+"/healthz", statusToken)
		return code == http.StatusOK
	})

	// A token deploy that succeeds: 200, its result and log tail.
	gate(c[0], "0")
	code, loc, a := r.deployWait(ctx, deployToken, c[0], 120)
	if code != http.StatusOK || a.Outcome != "succeeded" || a.State != "succeeded" || a.ExitCode == nil || *a.ExitCode != 0 ||
		a.Commit != c[0] || a.ID == 0 || !strings.Contains(a.LogTail, "building "+c[0]) || !strings.Contains(a.LogTail, "gate open") {
		t.Errorf("POST /deploy/app?wait=120 (succeeds) = %d %+v; want 200, succeeded, exit 0, the log's tail", code, a)
	}
	if want := statusURL + "/status/deliveries/" + a.Delivery; loc != want || a.Location != want {
		t.Errorf("Location %q (body %q); want %q", loc, a.Location, want)
	}
	// The Location answers with the delivery's run.
	req, _ := http.NewRequest(http.MethodGet, loc, nil)
	req.Header.Set("Authorization", "Bearer "+statusToken)
	req.Header.Set("Accept", "application/json")
	var story struct {
		Outcome string
		Runs    []struct {
			ID         int64
			Deployment string
			State      string
		}
	}
	if resp, err := r.client.Do(req); err != nil {
		t.Errorf("GET %s: %v", loc, err)
	} else {
		err := json.NewDecoder(resp.Body).Decode(&story)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || story.Outcome != "succeeded" || len(story.Runs) != 1 ||
			story.Runs[0].ID != a.ID || story.Runs[0].Deployment != "app" {
			t.Errorf("GET %s = %d %+v, %v; want 200 with run %d of app", loc, resp.StatusCode, story, err, a.ID)
		}
	}
	if code, body := r.get(loc, statusToken); code != 200 || !strings.Contains(body, fmt.Sprintf(`<tr data-run="%d" data-deployment="app">`, a.ID)) {
		t.Errorf("GET %s (HTML) = %d; want 200 with the run's row\n%s", loc, code, body)
	}

	// A token deploy that fails, waited for while `dh-deploy logs
	// --follow` streams its log: the first line comes while the step
	// waits for its gate.
	type answer struct {
		code int
		a    receive.WaitAnswer
	}
	failed := make(chan answer, 1)
	go func() {
		code, _, a := r.deployWait(ctx, deployToken, c[1], 120)
		failed <- answer{code, a}
	}()
	r.waitFor(ctx, "the run of the failing commit", func() bool {
		var n int
		r.db.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE deployment = 'app' AND commit_sha = $1 AND state = 'running'`, c[1]).Scan(&n)
		return n == 1
	})
	logs := exec.CommandContext(ctx, "runuser", "-u", "dh-deploy", "-g", "dh-deployer", "--",
		filepath.Join(r.bin, "dh-deploy"), "-c", r.config, "logs", "app", "--follow")
	logs.Env = []string{"PATH=" + os.Getenv("PATH"), "DH_DATABASE_URL=" + r.dbURL("dh-deploy")}
	lines, wait := streamLines(t, logs)
	expectLine(t, lines, "dh-deploy logs --follow", "building "+c[1])
	gate(c[1], "3") // the step ends only now
	expectLine(t, lines, "dh-deploy logs --follow", "gate open")
	if err := wait(); err != nil {
		t.Errorf("dh-deploy logs --follow = %v; want exit 0 at the run's end", err)
	}
	got := <-failed
	if got.code != http.StatusUnprocessableEntity || got.a.Outcome != "failed" || got.a.State != "failed" || got.a.ExitCode == nil ||
		*got.a.ExitCode != 3 || got.a.FailedStep == nil || *got.a.FailedStep != 1 || !strings.Contains(got.a.LogTail, "gate open") {
		t.Errorf("POST /deploy/app?wait=120 (fails) = %d %+v; want 422, failed, exit 3 at step 1, the log's tail", got.code, got.a)
	}

	// The git hook waits: the pushing user sees the build as it goes,
	// then its result; a failed build exits 1.
	for i, tc := range []struct {
		sha, status string
		exit        int
		result      string
	}{
		{c[2], "0", 0, "run %d succeeded"},
		{c[3], "5", 1, "run %d failed: exit 5 at step 1"},
	} {
		hook := exec.CommandContext(ctx, "runuser", "-u", pusher, "--", filepath.Join(r.bin, "dh-receive"), "hook",
			"--socket", socket, "--repository", app.fullName, "--wait=2m")
		hook.Env = []string{"PATH=" + os.Getenv("PATH")}
		hook.Stdin = strings.NewReader(c[1+i] + " " + tc.sha + " refs/heads/main\n")
		hook.Dir = "/"
		lines, wait := streamLines(t, hook)
		expectLine(t, lines, "hook --wait", "dh-deployer: queued as delivery hook-")
		expectLine(t, lines, "hook --wait", "building "+tc.sha)
		gate(tc.sha, tc.status)
		var id int64
		r.waitFor(ctx, "the hook's run to end", func() bool {
			return r.db.QueryRowContext(ctx, `SELECT id FROM runs WHERE deployment = 'app' AND commit_sha = $1 AND finished_at IS NOT NULL`, tc.sha).Scan(&id) == nil
		})
		expectLine(t, lines, "hook --wait", fmt.Sprintf("dh-deployer: app: "+tc.result, id))
		err := wait()
		if code := exitCode(err); code != tc.exit {
			t.Errorf("hook --wait of %s exited %d (%v); want %d", tc.sha[:8], code, err, tc.exit)
		}
	}
}

// deployWait posts a token deploy of commit with ?wait=secs and returns
// the status, the Location and the answer.
func (r *rig) deployWait(ctx context.Context, token, commit string, secs int) (int, string, receive.WaitAnswer) {
	body := fmt.Sprintf(`{"commit": %q, "ref": "refs/heads/main"}`, commit)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/deploy/app?wait=%d", r.addr, secs), strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		r.t.Errorf("POST /deploy/app?wait=%d: %v", secs, err)
		return 0, "", receive.WaitAnswer{}
	}
	defer resp.Body.Close()
	var a receive.WaitAnswer
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		r.t.Errorf("POST /deploy/app?wait=%d = %d %s: %v", secs, resp.StatusCode, b, err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), a
}

// streamLines starts cmd and passes each line of its standard output on
// as it comes; wait waits for its end (its error names its stderr).
func streamLines(t *testing.T, cmd *exec.Cmd) (<-chan string, func() error) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("%s: %s", filepath.Base(cmd.Args[len(cmd.Args)-1]), sc.Text())
			lines <- sc.Text()
		}
	}()
	return lines, func() error {
		for range lines { // the rest
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
}

// expectLine reads lines until one starts with want; it fails the test
// after a minute or at the end of the output.
func expectLine(t *testing.T, lines <-chan string, what, want string) {
	t.Helper()
	var seen []string
	deadline := time.After(time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s ended without %q; it printed:\n%s", what, want, strings.Join(seen, "\n"))
			}
			if strings.HasPrefix(l, want) {
				return
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("%s: no %q within a minute; it printed:\n%s", what, want, strings.Join(seen, "\n"))
		}
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
