// Package cell formats values as one line of text. Line is the one way
// to cut text to one line (log attributes, error messages, chat messages,
// commit status descriptions); Dash, Stamp, ShortSHA, Num and Text are
// the cells of the tools' tables and of the status page, where an empty
// value prints as "-" so that columns stay aligned and greppable.
//
// The package imports nothing of this module.
package cell

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Line returns s on one line: invalid UTF-8 replaced by U+FFFD, runs of
// white space and control characters (line breaks included) turned into
// one space, leading and trailing ones dropped. If that is longer than
// max runes (max > 0), it is cut to max runes, the last one "…".
func Line(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// Dash is s, or "-" if it is empty.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Stamp is t in UTC as RFC 3339, or "-" for the zero time.
func Stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ShortSHA is a commit's first 12 characters, or "-".
func ShortSHA(sha string) string { return Dash(sha[:min(12, len(sha))]) }

// Num is *n, or "-" for nil.
func Num(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

// TextMax is how many runes a Text cell keeps.
const TextMax = 100

// Text is s as a cell: Line(s, TextMax), or "-".
func Text(s string) string { return Dash(Line(s, TextMax)) }
