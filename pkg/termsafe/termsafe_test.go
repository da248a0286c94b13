package termsafe

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"plain line\n\tindented\n", "plain line\n\tindented\n"},
		{"crlf\r\nline\r\n", "crlf\nline\n"},
		{"10%\r50%\r100%\n", "10%\n50%\n100%\n"},
		{"ok\rFAKE: deploy succeeded\n", "ok\nFAKE: deploy succeeded\n"},
		{"\x1b[31mred\x1b[0m\n", "^[[31mred^[[0m\n"},
		{"\x1b]52;c;ZXZpbA==\x07", "^[]52;c;ZXZpbA==^G"},
		{"\x1b]0;title\x1b\\", "^[]0;title^[\\"},
		{"nul\x00 bs\x08 del\x7f", "nul^@ bs^H del^?"},
		{"c1 \u009b31m csi", "c1 \uFFFD31m csi"},
		{"bad \xff\xfe byte", "bad \uFFFD\uFFFD byte"},
		{"naïve ошибка 日本 🙂\n", "naïve ошибка 日本 🙂\n"},
		{"trailing cr\r", "trailing cr\n"},
		{"cut rune \xe6\x97", "cut rune \uFFFD\uFFFD"}, // each byte of it
	} {
		// Whole, and cut at every byte: the same output.
		for cut := 0; cut <= len(tt.in); cut++ {
			var b bytes.Buffer
			w := NewWriter(&b)
			for _, part := range []string{tt.in[:cut], tt.in[cut:]} {
				if n, err := w.Write([]byte(part)); n != len(part) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", part, n, err, len(part))
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("%q written as %q + %q gives %q; want %q", tt.in, tt.in[:cut], tt.in[cut:], got, tt.want)
			}
		}
	}
}

// TestWriterBytewise writes a long hostile log one byte at a time.
func TestWriterBytewise(t *testing.T) {
	in := strings.Repeat("é\x1b[2K\r\n日\r", 100)
	var b bytes.Buffer
	w := NewWriter(&b)
	for i := range len(in) {
		w.Write([]byte{in[i]})
	}
	w.Flush()
	if want := strings.Repeat("é^[[2K\n日\n", 100); b.String() != want {
		t.Errorf("bytewise: got %q; want %q", b.String()[:40], want[:40])
	}
}

// BenchmarkWriter copies an 8 MiB build log (the cap of a run's log)
// through a Writer, 32 KiB at a time as follow.Copy reads, beside a plain
// copy into the same buffer: the cost of defusing.
func BenchmarkWriter(b *testing.B) {
	line := "[dh-deploy 10:02:11] step 1/2: cc -o app main.c \x1b[32mok\x1b[0m naïve 100%\r\n"
	log := []byte(strings.Repeat(line, 8<<20/len(line)))
	for _, name := range []string{"plain", "defused"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(log)))
			var out bytes.Buffer
			for range b.N {
				out.Reset()
				var w io.Writer = &out
				var t *Writer
				if name == "defused" {
					t = NewWriter(&out)
					w = t
				}
				for p := log; len(p) > 0; p = p[min(len(p), 32<<10):] {
					w.Write(p[:min(len(p), 32<<10)])
				}
				if t != nil {
					t.Flush()
				}
			}
		})
	}
}
