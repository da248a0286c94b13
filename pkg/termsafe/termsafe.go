// Package termsafe passes text that a build or a push chose (a run's log,
// a result line) on to a person's terminal without letting it drive the
// terminal: escape sequences could set the window title, write the
// clipboard (OSC 52), hide or recolour text, and a carriage return could
// overwrite a line printed before it, as `dh-deploy logs --follow` and
// `dh-receive hook --wait` (through git push) print a log as it grows.
//
// Guarantees:
//
//   - Line feeds and tabs pass as they are; CR LF becomes LF and a CR
//     alone becomes LF (a progress bar prints one line per update instead
//     of overwriting, so no earlier line can be hidden).
//   - Every other C0 control character and DEL is shown in caret notation
//     (ESC as "^[", BEL as "^G", DEL as "^?"): the sequence stays readable
//     and inert.
//   - C1 control characters (U+0080 to U+009F, which some terminals read as
//     ESC sequences) and bytes that are not UTF-8 become U+FFFD.
//   - A Writer keeps at most 3 bytes between writes (a character or a
//     CR LF cut by a write boundary), so a stream is defused the same
//     whatever its pieces; Flush writes them out at the end.
//
// Not done: bidirectional overrides and other printable characters pass
// unchanged.
//
// The package imports nothing of this module.
package termsafe

import (
	"io"
	"unicode/utf8"
)

// Writer writes to an underlying writer the text written to it, defused
// as the package says. It is not safe for concurrent use.
type Writer struct {
	w    io.Writer
	held []byte // a trailing CR or the start of a character cut by the last write
	out  []byte
}

// NewWriter returns a Writer that writes defused text to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write defuses p and writes it to the underlying writer, except the
// bytes of a CR or character that the next write may complete. It
// returns len(p) unless the underlying writer failed.
func (t *Writer) Write(p []byte) (int, error) {
	data := p
	if len(t.held) > 0 {
		data = append(t.held, p...)
		t.held = nil
	}
	rest := t.defuse(data, false)
	if len(rest) > 0 {
		t.held = append([]byte(nil), rest...)
	}
	if _, err := t.w.Write(t.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out what a Write held back: a CR as LF, each byte of an
// incomplete character as U+FFFD.
func (t *Writer) Flush() error {
	if len(t.held) == 0 {
		return nil
	}
	data := t.held
	t.held = nil
	t.defuse(data, true)
	_, err := t.w.Write(t.out)
	return err
}

// defuse puts data, defused, in t.out and returns its unfinished end
// (none when final).
func (t *Writer) defuse(data []byte, final bool) (rest []byte) {
	out := t.out[:0]
	defer func() { t.out = out }()
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\r':
			switch {
			case i+1 < len(data):
				if data[i+1] != '\n' {
					out = append(out, '\n')
				}
			case !final:
				return data[i:] // is LF next?
			default:
				out = append(out, '\n')
			}
			i++
		case passes(c):
			// A run of printable ASCII, LF and tab: copied as it is.
			j := i + 1
			for j < len(data) && passes(data[j]) {
				j++
			}
			out = append(out, data[i:j]...)
			i = j
		case c < 0x20 || c == 0x7f:
			out = append(out, '^', c^0x40)
			i++
		case !final && !utf8.FullRune(data[i:]):
			return data[i:]
		default:
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 || r >= 0x80 && r <= 0x9f {
				out = append(out, "\uFFFD"...)
			} else {
				out = append(out, data[i:i+n]...)
			}
			i += max(n, 1)
		}
	}
	return nil
}

// passes reports whether c is printable ASCII, LF or tab.
func passes(c byte) bool { return c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' }
