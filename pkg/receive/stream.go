package receive

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/github"
)

// A delivery's body is never held in memory: streamBody copies it into
// the entry's staging file (after the entry's head, event.EncodeHead)
// while every secret's HMAC is computed over it and event.PayloadChecker
// checks that the payload is a JSON object, and rejects it, leaving
// nothing, when no secret matches (403) or the payload is not one (400,
// said only to a verified sender). A request's memory is therefore a few
// buffers whatever its size, and
// the bytes being received at once are bounded by receive.max_in_flight
// (budget): a request that would go over it gets 503 and Retry-After.

// rejection is a request's own fault, answered with status; any other
// error while streaming is the queue's (503).
type rejection struct {
	status int
	why    string
}

func (r *rejection) Error() string { return r.why }

// budget counts the request body bytes in flight across requests.
type budget struct {
	mu   sync.Mutex
	used int64
}

// take reserves n bytes if that keeps the total within max.
func (b *budget) take(n, max int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > max {
		return false
	}
	b.used += n
	return true
}

// current returns the bytes reserved now.
func (b *budget) current() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// retryAfter is the Retry-After (seconds) of a 503 for a full budget.
const retryAfter = 10

// incoming is one webhook request on its way into its staging file.
type incoming struct {
	event    *event.GitHubEvent // the entry, from the headers
	head     []byte             // the entry up to its payload (event.EncodeHead)
	reserved int64              // bytes counted in flight (budget)
	body     io.Reader          // the request body, bounded by max_body
	form     bool               // body is application/x-www-form-urlencoded
	sum      []byte             // the signature to verify
	bodyMAC  *github.Verifier   // of secrets, fresh: the body's
	secrets  [][]byte           // receive.secret_files
	tooBig   *rejection         // the answer to a body over max_body
	payload  int64              // set by streamBody: the payload's length
}

// streamBody writes the entry into w: its head, the payload streamed from
// the body, and event.PayloadEnd; it reads nothing back. A body that does
// not verify, or whose payload is not a JSON object, is a *rejection;
// other errors are file's.
func (d *incoming) streamBody(file io.Writer) error {
	// Buffered: a usual delivery (a few KiB) is one write of the file.
	// The buffers are pooled: allocating (and zeroing) them anew for each
	// request was a sixth of the handler's CPU.
	bufs := streamBufs.Get().(*streamBuf)
	defer streamBufs.Put(bufs)
	w := bufs.w
	w.Reset(file)
	defer w.Reset(nil) // hold no file while pooled
	if _, err := w.Write(d.head); err != nil {
		return err
	}
	bodyMAC := d.bodyMAC
	var check event.PayloadChecker
	out := &durable.Counter{W: w}
	dst := io.MultiWriter(out, &check)
	var fp *formPayload
	var payloadMAC *github.Verifier
	if d.form {
		// GitHub signs the form body as sent; Gitea signs the JSON
		// payload even when it sends a form.
		payloadMAC = github.NewVerifier(d.secrets)
		fp = &formPayload{w: io.MultiWriter(out, &check, payloadMAC)}
		dst = fp
	}
	src := &readErr{r: io.TeeReader(d.body, bodyMAC)}
	_, err := io.CopyBuffer(dst, src, bufs.copy)
	if err == nil && fp != nil {
		err = fp.end()
	}
	switch {
	case src.err != nil:
		var tooBig *http.MaxBytesError
		if errors.As(src.err, &tooBig) {
			return d.tooBig
		}
		return &rejection{http.StatusBadRequest, "read body: " + src.err.Error()}
	case errors.Is(err, errNotForm):
		if bodyMAC.Verify(d.sum) != nil {
			return &rejection{http.StatusForbidden, github.ErrBadSignature.Error()}
		}
		return &rejection{http.StatusBadRequest, "form body is not URL-encoded"}
	case err != nil:
		return err
	}
	if bodyMAC.Verify(d.sum) != nil && (fp == nil || payloadMAC.Verify(d.sum) != nil) {
		return &rejection{http.StatusForbidden, github.ErrBadSignature.Error()}
	}
	if fp != nil && out.N == 0 {
		return &rejection{http.StatusBadRequest, "form body has no payload field"}
	}
	if err := check.Check(); err != nil {
		return &rejection{http.StatusBadRequest, err.Error()}
	}
	d.payload = out.N
	if _, err = io.WriteString(w, event.PayloadEnd); err != nil {
		return err
	}
	return w.Flush()
}

// streamBuf is the memory streamBody needs for one request.
type streamBuf struct {
	w    *bufio.Writer // the staging file's buffer
	copy []byte        // io.CopyBuffer's, from the body
}

var streamBufs = sync.Pool{New: func() any {
	return &streamBuf{w: bufio.NewWriterSize(nil, 32<<10), copy: make([]byte, 32<<10)}
}}

// readErr remembers its reader's error, so that a copy's read errors (the
// client's) can be told from its write errors (the disk's).
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

var errNotForm = errors.New("malformed URL encoding")

// formPayload is a writer that takes an application/x-www-form-urlencoded
// body and writes the decoded value of its first "payload" field to w, as
// url.ParseQuery would decode it, without holding the body.
type formPayload struct {
	w       io.Writer
	key     []byte // the current field's name so far (at most len("payload")+1 bytes)
	inValue bool   // after the current field's '='
	found   bool   // the payload field was seen
	copying bool   // in the first payload field's value
	esc     []byte // a pending %XX escape
	out     []byte
}

func (fp *formPayload) Write(p []byte) (int, error) {
	fp.out = fp.out[:0]
	for _, c := range p {
		switch {
		case c == '&':
			if err := fp.endField(); err != nil {
				return 0, err
			}
		case !fp.inValue && c == '=':
			fp.inValue = true
			if string(fp.key) == "payload" && !fp.found {
				fp.found, fp.copying = true, true
			}
		case !fp.inValue:
			if len(fp.key) <= len("payload") {
				fp.key = append(fp.key, c)
			}
		case !fp.copying:
		case len(fp.esc) > 0 || c == '%':
			fp.esc = append(fp.esc, c)
			if len(fp.esc) == 3 {
				v, err := strconv.ParseUint(string(fp.esc[1:]), 16, 8)
				if err != nil {
					return 0, errNotForm
				}
				fp.out = append(fp.out, byte(v))
				fp.esc = fp.esc[:0]
			}
		case c == '+':
			fp.out = append(fp.out, ' ')
		default:
			fp.out = append(fp.out, c)
		}
	}
	if _, err := fp.w.Write(fp.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (fp *formPayload) endField() error {
	if len(fp.esc) > 0 {
		return errNotForm
	}
	fp.key, fp.inValue, fp.copying = fp.key[:0], false, false
	return nil
}

// end is called after the last Write.
func (fp *formPayload) end() error { return fp.endField() }
