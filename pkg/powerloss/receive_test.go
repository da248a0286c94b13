package powerloss_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/demo"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestReceivePowerLoss runs dh-receive with queue_dir on the crash file
// system under 8 concurrent signed senders and cuts the power at a random
// moment, round after round (dh-receive restarts on what survived): every
// delivery it answered 202 must be in queues/main byte for byte, and no
// entry may be partial.
func TestReceivePowerLoss(t *testing.T) {
	bin := testenv.Build(t, "dh-receive")
	fs := crashfs.Mount(t)
	spool := makeQueues(t, fs, "main")
	main := filepath.Join(spool, "main")

	etc := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	secret := []byte(base64.StdEncoding.EncodeToString(key))
	secretFile := filepath.Join(etc, "webhook-secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	config := filepath.Join(etc, "config.toml")
	doc := fmt.Sprintf(`queue_dir    = %q
state_dir    = %q
database_url = "postgres:///dh_deployer?host=/nonexistent&sslmode=disable"

[receive]
listen         = %q
secret_files   = [%q]
min_free_bytes = 0

[queues.main] # never consumed here: no backlog limits
max_entries = 0
max_bytes   = 0
`, spool, t.TempDir(), addr, secretFile)
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + addr + "/github-webhook"

	acked := map[string][]byte{} // delivery -> payload, answered 202 and not yet found lost
	c := tally{stage: "dh-receive"}
	b := bounds(t)
	for b.another(c.rounds, 0) {
		var out testenv.Buffer
		cmd := exec.Command(bin, "-c", config, "serve")
		cmd.Dir = "/" // not on the mount, which is remounted under it
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHealthy(t, client, "http://"+addr+"/healthz", &out)

		ctx, stop := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					guid := demo.NewGUID()
					payload := pushPayload(guid)
					status, _, err := demo.Deliver(ctx, client, url, secret, "push", guid, payload)
					if err == nil && status == http.StatusAccepted {
						mu.Lock()
						acked[guid] = payload
						c.acked++
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(100+mrand.IntN(700)) * time.Millisecond)
		cut(t, fs, cmd)
		stop()
		wg.Wait()
		c.rounds++

		got := scan(t, main, true)
		c.corrupt += len(got.corrupt)
		if len(got.corrupt) > 0 {
			t.Errorf("round %d: %d partial entries in queues/main:\n%s", c.rounds, len(got.corrupt), some(got.corrupt, 5))
		}
		var lost []string
		for guid, payload := range acked {
			evs := got.entries[guid]
			switch {
			case len(evs) == 0:
				lost = append(lost, guid+": no whole entry")
			case !bytes.Equal(evs[0].Payload, payload):
				lost = append(lost, fmt.Sprintf("%s: payload %d bytes, want %d", guid, len(evs[0].Payload), len(payload)))
			default:
				continue
			}
			delete(acked, guid) // counted once
		}
		c.lost += len(lost)
		if len(lost) > 0 {
			t.Errorf("round %d: %d acknowledged deliveries lost or changed:\n%s", c.rounds, len(lost), some(lost, 5))
		}
		// Empty the queue, as a consumer would, so that the next round
		// counts only its own and the file system stays small.
		emptyQueue(t, main)
		clear(acked)
	}
	c.report(t, fs, b)
}

// pushPayload is a push whose size varies from a few hundred bytes to
// 64 KiB, so that some are cut in the middle of their writes.
func pushPayload(guid string) []byte {
	pad := strings.Repeat("p", mrand.IntN(64<<10))
	return fmt.Appendf(nil, `{"ref":"refs/heads/main","after":"%040x","repository":{"full_name":"crash/receive"},"delivery":%q,"pad":%q}`,
		mrand.Uint64(), guid, pad)
}

// waitHealthy waits until dh-receive answers /healthz.
func waitHealthy(t *testing.T, client *http.Client, url string, out *testenv.Buffer) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dh-receive does not answer %s; its output:\n%s", url, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCorrupt removes the entries scan found corrupt, durably.
func removeCorrupt(t *testing.T, dir string, corrupt []string) {
	t.Helper()
	var names []string
	for _, c := range corrupt {
		name, _, _ := strings.Cut(c, " ")
		names = append(names, name)
	}
	remove(t, dir, names)
}

// emptyQueue removes every entry of the queue at dir, durably.
func emptyQueue(t *testing.T, dir string) {
	t.Helper()
	names, err := queue.Open(dir).List()
	if err != nil {
		t.Fatal(err)
	}
	remove(t, dir, names)
}

// remove removes the files names (relative to dir) and syncs dir and
// dir/failed.
func remove(t *testing.T, dir string, names []string) {
	t.Helper()
	if len(names) == 0 {
		return
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, queue.FailedDir)} {
		if err := durable.SyncDir(d); err != nil {
			t.Fatal(err)
		}
	}
}
