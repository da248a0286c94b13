// Package notifytest starts what notifications are sent to, on 127.0.0.1,
// for tests: a chat incoming webhook (Hook) that records each post, and a
// small SMTP server (SMTP) that records each mail it accepts. Both can be
// told to fail the first requests, to test retries.
package notifytest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
)

// Post is one request the Hook received.
type Post struct {
	Path string
	Body map[string]any // the JSON object posted
	Raw  []byte
}

// Text is the message's text: "text" (Slack, Mattermost) or "content"
// (Discord).
func (p Post) Text() string {
	if s, ok := p.Body["text"].(string); ok {
		return s
	}
	s, _ := p.Body["content"].(string)
	return s
}

// Hook is a chat incoming webhook. It answers the statuses of Fail in
// turn, then 200 "ok".
type Hook struct {
	*httptest.Server
	mu    sync.Mutex
	posts []Post
	fail  []int
	got   chan struct{}
}

// NewHook starts a Hook that answers fail's statuses first; it is closed
// at the end of the test.
func NewHook(t testing.TB, fail ...int) *Hook {
	h := &Hook{fail: fail, got: make(chan struct{}, 1000)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		p := Post{Path: r.URL.Path, Raw: raw}
		if err := json.Unmarshal(raw, &p.Body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %q (%s); want a JSON object", raw, r.Header.Get("Content-Type"))
		}
		h.mu.Lock()
		code := http.StatusOK
		if len(h.fail) > 0 {
			code, h.fail = h.fail[0], h.fail[1:]
		} else {
			h.posts = append(h.posts, p)
		}
		h.mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
		if code == http.StatusOK {
			h.got <- struct{}{}
		}
	}))
	t.Cleanup(h.Close)
	return h
}

// Posts returns the posts answered 200, in order.
func (h *Hook) Posts() []Post {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Post(nil), h.posts...)
}

// Wait waits up to d until n posts were answered 200, and returns them.
func (h *Hook) Wait(t testing.TB, n int, d time.Duration) []Post {
	t.Helper()
	deadline := time.After(d)
	for len(h.Posts()) < n {
		select {
		case <-h.got:
		case <-deadline:
			t.Fatalf("webhook got %d posts in %s; want %d: %v", len(h.Posts()), d, n, h.Posts())
		}
	}
	return h.Posts()
}

// Mail is one mail the SMTP server accepted.
type Mail struct {
	From string
	To   []string
	Data []byte // as received, headers and body

	Header  mail.Header
	Subject string // decoded
	Body    string // decoded from quoted-printable
}

// SMTP is a minimal SMTP server: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA,
// RSET, NOOP, QUIT. It answers "451 try again" to the first Fail MAIL
// commands.
type SMTP struct {
	Addr string // host:port
	// User and Password, when User is set, are required (AUTH PLAIN).
	User, Password string

	l     net.Listener
	mu    sync.Mutex
	mails []Mail
	fail  int
	got   chan struct{}
	wg    sync.WaitGroup
}

// NewSMTP starts an SMTP server on 127.0.0.1 whose first fail MAIL
// commands get 451; it is stopped at the end of the test.
func NewSMTP(t testing.TB, fail int) *SMTP {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTP{Addr: l.Addr().String(), l: l, fail: fail, got: make(chan struct{}, 1000)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(t, c) }()
		}
	}()
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

// Mails returns the accepted mails, in order.
func (s *SMTP) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Wait waits up to d until n mails were accepted, and returns them.
func (s *SMTP) Wait(t testing.TB, n int, d time.Duration) []Mail {
	t.Helper()
	deadline := time.After(d)
	for len(s.Mails()) < n {
		select {
		case <-s.got:
		case <-deadline:
			t.Fatalf("smtp server got %d mails in %s; want %d", len(s.Mails()), d, n)
		}
	}
	return s.Mails()
}

func (s *SMTP) serve(t testing.TB, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	say("220 notifytest ESMTP")
	var m Mail
	authed := s.User == ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-notifytest")
			say("250 AUTH PLAIN")
		case "HELO", "NOOP":
			say("250 ok")
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			dec, _ := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(dec), "\x00")
			if strings.ToUpper(mech) == "PLAIN" && len(parts) == 3 && parts[1] == s.User && parts[2] == s.Password {
				authed = true
				say("235 ok")
			} else {
				say("535 authentication failed")
			}
		case "MAIL":
			s.mu.Lock()
			fail := s.fail > 0
			if fail {
				s.fail--
			}
			s.mu.Unlock()
			switch {
			case !authed:
				say("530 authentication required")
			case fail:
				say("451 try again later")
			default:
				m = Mail{From: address(arg)}
				say("250 ok")
			}
		case "RCPT":
			m.To = append(m.To, address(arg))
			say("250 ok")
		case "DATA":
			say("354 go ahead")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = []byte(data.String())
			if err := m.parse(); err != nil {
				t.Errorf("smtp server got a mail it cannot parse: %v\n%s", err, m.Data)
			}
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			s.got <- struct{}{}
			say("250 queued")
		case "RSET":
			m = Mail{}
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

func (m *Mail) parse() error {
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	if err != nil {
		return err
	}
	m.Header = msg.Header
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	m.Body = string(body)
	return err
}

// address takes the address out of "FROM:<a@b> ..." or "TO:<a@b>".
func address(arg string) string {
	_, a, _ := strings.Cut(arg, "<")
	a, _, _ = strings.Cut(a, ">")
	return a
}
