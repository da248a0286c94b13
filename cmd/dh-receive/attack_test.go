package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// maxAttackRSS is the peak resident memory dh-receive may reach under the
// flood of TestMemoryUnderFlood (issue 17, finding 2: it was 568 MiB).
const maxAttackRSS = 64 << 20

// Issue 17, finding 2: 20 concurrent 25 MiB bodies without a signature,
// and 20 signed with a wrong key, against the real dh-receive binary.
// None is queued or left in staging; then 4 signed 25 MiB deliveries at
// once are queued whole. dh-receive's peak RSS (VmHWM) stays under 64 MiB
// throughout: bodies are streamed, never held in memory.
func TestMemoryUnderFlood(t *testing.T) {
	const secret = "a-long-enough-webhook-secret"
	cfg := setup(t, secret)
	dir := filepath.Dir(cfg)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "127.0.0.1:0", addr, 1)), 0o644)
	q := queue.Open(filepath.Join(dir, "queues", "main"))
	if err := q.Init(); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, exec.Command(testenv.Build(t, "dh-receive"), "-c", cfg))
	d.Logged(t, "listening", 10*time.Second)

	// A JSON body just under max_body (25 MiB), streamed by each sender.
	const size = 25<<20 - 64
	const head, tail = `{"zen":"`, `"}`
	body := func() io.Reader {
		return io.MultiReader(strings.NewReader(head),
			io.LimitReader(repeat('a'), size-int64(len(head)+len(tail))), strings.NewReader(tail))
	}
	wrong := hmac.New(sha256.New, []byte("not-the-secret-at-all-0123"))
	io.Copy(wrong, body())
	wrongSig := fmt.Sprintf("sha256=%x", wrong.Sum(nil))

	statuses := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+addr+"/github-webhook", body())
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", i))
			kind := "unsigned"
			if i%2 == 1 {
				kind = "wrong key"
				req.Header.Set("X-Hub-Signature-256", wrongSig)
			}
			answer := "no answer"
			if resp, err := http.DefaultClient.Do(req); err == nil {
				answer = resp.Status
				resp.Body.Close()
			}
			mu.Lock()
			statuses[kind+": "+answer]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	d.Running(t)
	hwm := testenv.ProcStatus(t, d.Cmd.Process.Pid, "VmHWM") * 1024
	t.Logf("dh-receive peak RSS (VmHWM) after 20 unsigned and 20 wrongly signed 25 MiB bodies: %.1f MiB; answers %v", hwm/(1<<20), statuses)
	if hwm > maxAttackRSS {
		t.Errorf("dh-receive's peak RSS = %.1f MiB; want under %d MiB", hwm/(1<<20), maxAttackRSS>>20)
	}
	for answer := range statuses {
		if strings.Contains(answer, "202") || strings.HasPrefix(answer, "unsigned: 403") {
			t.Errorf("answers %v; want 401 for the unsigned, 403 or 503 for the wrong key, never 202", statuses)
		}
	}
	if names, _ := q.List(); len(names) != 0 {
		t.Errorf("queues/main holds %v after the flood; want nothing", names)
	}
	if tmp, _ := os.ReadDir(filepath.Join(q.Dir(), queue.StagingDir)); len(tmp) != 0 {
		t.Errorf("staging holds %d files after the flood; want none", len(tmp))
	}

	// Then 4 signed 25 MiB deliveries at once (max_in_flight's 100 MiB):
	// queued whole, and streamed too.
	good := hmac.New(sha256.New, []byte(secret))
	io.Copy(good, body())
	goodSig := fmt.Sprintf("sha256=%x", good.Sum(nil))
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+addr+"/github-webhook", body())
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", 100+i))
			req.Header.Set("X-Hub-Signature-256", goodSig)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusAccepted {
				t.Errorf("signed 25 MiB delivery: %v, %v; want 202", resp, err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	hwm = testenv.ProcStatus(t, d.Cmd.Process.Pid, "VmHWM") * 1024
	t.Logf("dh-receive peak RSS (VmHWM) after 4 signed 25 MiB deliveries more: %.1f MiB", hwm/(1<<20))
	if hwm > maxAttackRSS {
		t.Errorf("dh-receive's peak RSS = %.1f MiB; want under %d MiB", hwm/(1<<20), maxAttackRSS>>20)
	}
	names, _ := q.List()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(q.Dir(), n))
		if err != nil {
			t.Fatal(err)
		}
		if e, err := event.DecodeGitHubEvent(data); err != nil || len(e.Payload) != size {
			t.Errorf("entry %s: %d payload bytes, %v; want %d", n, len(e.Payload), err, size)
		}
	}
	if len(names) != 4 {
		t.Errorf("queues/main holds %d entries; want the 4 signed deliveries", len(names))
	}
	d.Stop(t)
}

// repeat is an endless reader of one byte.
type repeat byte

func (r repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
