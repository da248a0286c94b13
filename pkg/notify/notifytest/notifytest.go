// Package notifytest starts what notifications are sent to, on 127.0.0.1,
// for tests: a chat incoming webhook (Hook) that records each post, and a
// small SMTP server (SMTP) that records each mail it accepts. Both can be
// told to fail the first requests, to test retries.
package notifytest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
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
	posts record[Post]
	mu    sync.Mutex
	fail  []int
}

// NewHook starts a Hook that answers fail's statuses first; it is closed
// at the end of the test.
func NewHook(t testing.TB, fail ...int) *Hook {
	h := &Hook{fail: fail, posts: newRecord[Post]()}
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
		}
		h.mu.Unlock()
		if code == http.StatusOK {
			h.posts.add(p)
		}
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(h.Close)
	return h
}

// Posts returns the posts answered 200, in order.
func (h *Hook) Posts() []Post { return h.posts.all() }

// Wait waits up to d until n posts were answered 200, and returns them.
func (h *Hook) Wait(t testing.TB, n int, d time.Duration) []Post {
	t.Helper()
	return h.posts.wait(t, n, d, "webhook posts")
}

// Mail is one mail the SMTP server accepted.
type Mail struct {
	TLS  bool // it came after STARTTLS
	From string
	To   []string
	Data []byte // as received, headers and body

	Header  mail.Header
	Subject string // decoded
	Body    string // decoded from quoted-printable
}

// SMTP is a minimal SMTP server: EHLO/HELO, STARTTLS (with TLS set),
// AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. It answers "451 try
// again" to the first fail MAIL commands.
type SMTP struct {
	Addr string // host:port
	// User and Password, when User is set, are required (AUTH PLAIN).
	User, Password string
	// TLS, when set before the first connection, offers STARTTLS with it
	// (see SelfSigned).
	TLS *tls.Config

	l     net.Listener
	mails record[Mail]
	mu    sync.Mutex
	fail  int
	wg    sync.WaitGroup
}

// NewSMTP starts an SMTP server on 127.0.0.1 whose first fail MAIL
// commands get 451; it is stopped at the end of the test.
func NewSMTP(t testing.TB, fail int) *SMTP {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTP{Addr: l.Addr().String(), l: l, fail: fail, mails: newRecord[Mail]()}
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
func (s *SMTP) Mails() []Mail { return s.mails.all() }

// Wait waits up to d until n mails were accepted, and returns them.
func (s *SMTP) Wait(t testing.TB, n int, d time.Duration) []Mail {
	t.Helper()
	return s.mails.wait(t, n, d, "mails")
}

func (s *SMTP) serve(t testing.TB, c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	say("220 notifytest ESMTP")
	var m Mail
	authed, secure := s.User == "", false
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
			if s.TLS != nil && !secure {
				say("250-STARTTLS")
			}
			say("250 AUTH PLAIN")
		case "STARTTLS":
			if s.TLS == nil || secure {
				say("502 not offered")
				continue
			}
			say("220 go ahead")
			tc := tls.Server(c, s.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, secure = tc, bufio.NewReader(tc), true
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
				m = Mail{From: address(arg), TLS: secure}
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
			s.mails.add(m)
			say("250 queued")
		case "RSET":
			m = Mail{}
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			// RFC 5321 4.2.4: a command this small server does not
			// serve (VRFY, EXPN, HELP, ...) is refused, as a real one may.
			say("502 5.5.1 command not served by this test server")
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

// record is what a server received, in order, with a signal for each.
type record[T any] struct {
	mu    *sync.Mutex
	items *[]T
	got   chan struct{}
}

func newRecord[T any]() record[T] {
	return record[T]{mu: new(sync.Mutex), items: new([]T), got: make(chan struct{}, 1000)}
}

func (r record[T]) add(v T) {
	r.mu.Lock()
	*r.items = append(*r.items, v)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r record[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), *r.items...)
}

// wait waits up to d until n items came, and returns them all.
func (r record[T]) wait(t testing.TB, n int, d time.Duration, what string) []T {
	t.Helper()
	deadline := time.After(d)
	for len(r.all()) < n {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("got %d %s in %s; want %d", len(r.all()), what, d, n)
		}
	}
	return r.all()
}

// SelfSigned returns a server TLS configuration with a fresh certificate
// for 127.0.0.1, and a client configuration that trusts it alone.
func SelfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
