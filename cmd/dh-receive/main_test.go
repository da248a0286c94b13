package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// setup writes a config whose secret file holds secret.
func setup(t *testing.T, secret string) (cfg string) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600)
	cfg = filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("queue_dir = %q\nstate_dir = %q\n[receive]\nlisten = \"127.0.0.1:0\"\nsecret_files = [%q]\n",
		filepath.Join(dir, "queues"), dir, filepath.Join(dir, "secret"))), 0o644)
	return cfg
}

func runTool(args []string, stdin string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := cli.Run(context.Background(), app, env, args)
	return code, stdout.String(), stderr.String()
}

func TestSign(t *testing.T) {
	const secret = "a-long-enough-webhook-secret"
	cfg := setup(t, secret)
	code, out, errs := runTool([]string{"-c", cfg, "sign"}, "Hello, World!")
	if want := github.Sign([]byte("Hello, World!"), []byte(secret)) + "\n"; code != 0 || out != want {
		t.Errorf("sign = %d, %q, %q; want 0, %q", code, out, errs, want)
	}
}

// secret_files = ["webhook-secret"], as the docs prescribe for the units'
// LoadCredential=webhook-secret:/etc/dh-deployer/webhook-secret, works from
// a shell too: without $CREDENTIALS_DIRECTORY the name is the file beside
// the configuration, the credential's source. Without that file the
// message names both places.
func TestSignWithCredentialName(t *testing.T) {
	const secret = "a-long-enough-webhook-secret"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("queue_dir = %q\nstate_dir = %q\n[receive]\nsecret_files = [\"webhook-secret\"]\n",
		filepath.Join(dir, "queues"), dir)), 0o644)
	code, out, errs := runTool([]string{"-c", cfg, "sign"}, "Hello, World!")
	if code != 78 || !strings.Contains(errs, "CREDENTIALS_DIRECTORY is not set") ||
		!strings.Contains(errs, "hint: put the secret in "+filepath.Join(dir, "webhook-secret")) {
		t.Errorf("sign without the secret = %d, %q, %q; want 78 naming $CREDENTIALS_DIRECTORY and %s", code, out, errs, filepath.Join(dir, "webhook-secret"))
	}
	os.WriteFile(filepath.Join(dir, "webhook-secret"), []byte(secret+"\n"), 0o600)
	code, out, errs = runTool([]string{"-c", cfg, "sign"}, "Hello, World!")
	if want := github.Sign([]byte("Hello, World!"), []byte(secret)) + "\n"; code != 0 || out != want {
		t.Errorf("sign = %d, %q, %q; want 0, %q", code, out, errs, want)
	}
}

func TestRefusesBadSecretsAndMissingQueue(t *testing.T) {
	for _, tc := range []struct {
		secret string
		code   int
		want   string
	}{
		{"short", 78, "shorter than 16 bytes"},
		{"changeme-changeme-changeme", 78, "placeholder"},
		{"a-long-enough-webhook-secret", 74, "queue"}, // the queue directory does not exist
	} {
		code, _, errs := runTool([]string{"-c", setup(t, tc.secret)}, "")
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, tc.secret+"\n") {
			t.Errorf("serve with secret %q = %d, %q; want %d mentioning %q and never the secret", tc.secret, code, errs, tc.code, tc.want)
		}
	}
}

// serve end to end in-process: a signed delivery is queued, and cancelling
// (what SIGTERM does) stops the server with exit status 0.
func TestServe(t *testing.T) {
	const secret = "a-long-enough-webhook-secret"
	cfg := setup(t, secret)
	dir := filepath.Dir(cfg)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("127.0.0.1:0"), []byte(addr), 1), 0o644)
	os.MkdirAll(filepath.Join(dir, "queues", "main"), 0o755)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- cli.Run(ctx, app, &cli.Env{Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }}, []string{"-c", cfg})
	}()
	body := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	var resp *http.Response
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequest("POST", "http://"+addr+"/github-webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-GitHub-Delivery", "d4049330-377e-11ed-9c2e-1ae286aab35f")
		req.Header.Set("X-Hub-Signature-256", github.Sign(body, []byte(secret)))
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if resp == nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST = %v; want 202 (stderr: %s)", resp, stderr.String())
	}
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve after cancel = %d; want 0 (stderr: %s)", code, stderr.String())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "queues", "main"))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("queues/main holds %d entries; want 1", n)
	}
}

// serve tells the service manager it is ready, and what it does, the way
// every daemon does (cli.Env.Ready), and that it stops on SIGTERM.
func TestServeNotifiesReady(t *testing.T) {
	cfg := setup(t, "a-long-enough-webhook-secret")
	dir := filepath.Dir(cfg)
	os.MkdirAll(filepath.Join(dir, "queues", "main"), 0o755)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return sock
		}
		return ""
	}
	go func() {
		done <- cli.Run(ctx, app, &cli.Env{Stdout: io.Discard, Stderr: &stderr, Getenv: getenv}, []string{"-c", cfg})
	}()
	buf := make([]byte, 256)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if got := string(buf[:n]); err != nil || !strings.HasPrefix(got, "READY=1\nSTATUS=receiving deliveries on 127.0.0.1:") {
		t.Errorf("service manager got %q, %v; want READY=1 and STATUS=receiving deliveries on 127.0.0.1:PORT (stderr: %s)", got, err, stderr.String())
	}
	cancel()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Errorf("service manager got %q, %v after SIGTERM; want STOPPING=1", buf[:n], err)
	}
	if code := <-done; code != 0 {
		t.Errorf("serve after cancel = %d; want 0 (stderr: %s)", code, stderr.String())
	}
}

// serveHook runs serve in-process with receive.hook_users giving the
// current user local/app, and returns the hook socket and queues/main.
func serveHook(t *testing.T) (socket, main string) {
	t.Helper()
	cfg := setup(t, "a-long-enough-webhook-secret")
	dir := filepath.Dir(cfg)
	main = filepath.Join(dir, "queues", "main")
	os.MkdirAll(filepath.Join(main, ".tmp"), 0o755)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	socket = filepath.Join(testenv.ShortTempDir(t, "dh-hook"), "hook.sock")
	f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "hook_socket = %q\n[receive.hook_users]\n%s = [\"local/app\"]\n", socket, me.Username)
	f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr testenv.Buffer
	go func() {
		done <- cli.Run(ctx, app, &cli.Env{Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }}, []string{"-c", cfg})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve after cancel = %d; want 0 (stderr: %s)", code, stderr.String())
		}
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(socket); err == nil {
			return socket, main
		}
		if i == 200 {
			t.Fatalf("no hook socket %s (stderr: %s)", socket, stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestHook(t *testing.T) {
	socket, main := serveHook(t)
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	zero := strings.Repeat("0", 40)
	code, out, errs := runTool([]string{"hook", "--socket", socket, "--repository", "local/app"},
		a+" "+b+" refs/heads/main\n"+zero+" "+a+" refs/tags/v1\n"+b+" "+zero+" refs/heads/gone\n")
	if code != 0 || strings.Count(out, "queued as delivery hook-") != 3 {
		t.Fatalf("hook = %d, %q, %q; want 3 deliveries queued", code, out, errs)
	}
	names, _ := os.ReadDir(main)
	var pushes []string
	for _, n := range names {
		if n.Type().IsRegular() {
			data, _ := os.ReadFile(filepath.Join(main, n.Name()))
			ev, err := event.DecodeGitHubEvent(data)
			if err != nil || ev.Event != "push" || ev.Source != "git-hook" || !strings.Contains(out, ev.Delivery) {
				t.Fatalf("entry %s = %+v, %v", n.Name(), ev, err)
			}
			p, err := github.DecodePush(ev.Payload)
			if err != nil || p.Repository.FullName != "local/app" {
				t.Fatalf("payload %s = %+v, %v", ev.Payload, p, err)
			}
			pushes = append(pushes, fmt.Sprintf("%s %s..%s created=%v deleted=%v", p.Ref, p.Before[:1], p.After[:1], p.Created, p.IsDeletion()))
		}
	}
	want := []string{"refs/heads/main a..b created=false deleted=false", "refs/tags/v1 0..a created=true deleted=false",
		"refs/heads/gone b..0 created=false deleted=true"}
	if strings.Join(pushes, "\n") != strings.Join(want, "\n") {
		t.Errorf("queued pushes:\n%s\nwant:\n%s", strings.Join(pushes, "\n"), strings.Join(want, "\n"))
	}

	// One bad line: nothing is queued, and the error names the line.
	before, _ := os.ReadDir(main)
	for _, tc := range []struct {
		args, stdin, want string
		code              int
	}{
		{"local/app", a + " " + b + " refs/heads/main\nnonsense\n", "line 2", 65},
		{"local/app", a + " " + b + " refs/heads/../x\n", "line 1", 65},
		{"local/app", "$(reboot) " + b + " refs/heads/main\n", "line 1", 65},
		{"../etc", a + " " + b + " refs/heads/main\n", "not owner/name", 64},
		// A repository receive.hook_users does not give this user.
		{"local/other", a + " " + b + " refs/heads/main\n", "may not queue pushes of local/other", 77},
	} {
		code, _, errs := runTool([]string{"hook", "--socket", socket, "--repository", tc.args}, tc.stdin)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("hook %q with %q = %d, %q; want %d naming %q", tc.args, tc.stdin, code, errs, tc.code, tc.want)
		}
	}
	if after, _ := os.ReadDir(main); len(after) != len(before) {
		t.Errorf("bad hook input queued %d entries", len(after)-len(before))
	}
	// dh-receive not listening: a temporary failure, saying what to check.
	code, _, errs = runTool([]string{"hook", "--socket", socket + ".none", "--repository", "local/app"}, a+" "+b+" refs/heads/main\n")
	if code != 75 || !strings.Contains(errs, "is dh-receive running") {
		t.Errorf("hook without dh-receive = %d, %q; want 75 asking whether dh-receive runs", code, errs)
	}
}
