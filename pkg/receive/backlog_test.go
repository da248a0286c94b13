package receive

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
)

// At [queues.main] max_entries, or below the free-space floor, a delivery
// gets 503 with Retry-After before its body is read (a client expecting
// 100-continue never sends it) and leaves nothing in the queue or staging.
func TestFullQueueAnswers503BeforeReading(t *testing.T) {
	r := start(t, "", nil)
	r.q.SetLimits(queue.Limits{MaxEntries: 2})
	for i := 0; i < 2; i++ {
		if status, answer := do(t, delivery(r.url, "push", []byte(`{"zen":"x"}`))); status != http.StatusAccepted {
			t.Fatalf("delivery %d = %d %v; want 202", i, status, answer)
		}
	}
	refused := func(what string) {
		t.Helper()
		// With "Expect: 100-continue" the client sends the body only once
		// the handler starts reading it.
		body := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte(" "), 1<<20))}
		req := delivery(r.url, "push", nil)
		req.Body, req.ContentLength = io.NopCloser(body), 1<<20
		req.Header.Set("Expect", "100-continue")
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if body.n != 0 {
			t.Errorf("%s: the server asked for the body (%d bytes sent); want an answer before reading it", what, body.n)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != strconv.Itoa(RetryAfter) ||
			!bytes.Contains(b, []byte("queue is full")) {
			t.Errorf("%s = %d, Retry-After %q, %s; want 503, Retry-After %d, saying the queue is full",
				what, resp.StatusCode, resp.Header.Get("Retry-After"), b, RetryAfter)
		}
		// The token route too.
		req, _ = http.NewRequest("POST", r.url+"/deploy/api", strings.NewReader(`{}`))
		if status, _ := do(t, req); status != http.StatusServiceUnavailable {
			t.Errorf("%s: POST /deploy/api = %d; want 503", what, status)
		}
		if names, _ := r.q.List(); len(names) != 2 {
			t.Errorf("%s: queue has %d entries; want the 2 accepted", what, len(names))
		}
		if tmp, _ := os.ReadDir(filepath.Join(r.q.Dir(), queue.StagingDir)); len(tmp) != 0 {
			t.Errorf("%s: staging has %d files", what, len(tmp))
		}
	}
	refused("delivery at max_entries")
	r.q.SetLimits(queue.Limits{MinFreeBytes: 1 << 62})
	refused("delivery below the free-space floor")
	r.q.SetLimits(queue.Limits{MaxEntries: 3})
	if status, answer := do(t, delivery(r.url, "push", []byte(`{"zen":"x"}`))); status != http.StatusAccepted {
		t.Errorf("delivery under the raised limit = %d %v; want 202", status, answer)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
