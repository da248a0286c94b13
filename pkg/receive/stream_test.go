package receive

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// formPayload decodes the first payload field of a form body as
// url.ParseQuery does, however the body is cut into writes.
func TestFormPayloadStreams(t *testing.T) {
	for _, body := range []string{
		"payload=" + url.QueryEscape(`{"zen":"a+b & c=d 100%"}`),
		"a=1&payload=%7B%7D&b=2",
		"payload=%7B%22x%22%3A1%7D&payload=%7B%7D",
		"xpayload=1&payloadx=2&payload=%7B+%7D",
		"payload=",
		"other=1",
		"",
	} {
		want := ""
		if q, err := url.ParseQuery(body); err == nil {
			want = q.Get("payload")
		}
		for _, chunk := range []int{1, 2, 3, 7, len(body) + 1} {
			var out bytes.Buffer
			fp := &formPayload{w: &out}
			for b := []byte(body); len(b) > 0; {
				n := min(chunk, len(b))
				if _, err := fp.Write(b[:n]); err != nil {
					t.Fatalf("Write(%q) of %q = %v", b[:n], body, err)
				}
				b = b[n:]
			}
			if err := fp.end(); err != nil || out.String() != want {
				t.Errorf("payload of %q in writes of %d = %q, %v; want %q", body, chunk, out.String(), err, want)
			}
		}
	}
	for _, bad := range []string{"payload=%7", "payload=%zz", "payload=%7B%"} {
		fp := &formPayload{w: &bytes.Buffer{}}
		_, err := fp.Write([]byte(bad))
		if err == nil {
			err = fp.end()
		}
		if err != errNotForm {
			t.Errorf("payload of %q: %v; want %v", bad, err, errNotForm)
		}
	}
}

// A body that would take more than max_in_flight is answered 503 with
// Retry-After, before it is read, and leaves nothing.
func TestMaxInFlight(t *testing.T) {
	r := start(t, "", func(s *Server) { s.Config.MaxInFlight = 10 })
	resp, err := http.DefaultClient.Do(delivery(r.url, "ping", []byte(`{"zen":"more than ten bytes"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "10" {
		t.Errorf("answer = %s, Retry-After %q; want 503, 10", resp.Status, resp.Header.Get("Retry-After"))
	}
	if names, _ := r.q.List(); len(names) != 0 {
		t.Errorf("queue holds %v", names)
	}
}
