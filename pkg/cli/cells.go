package cli

import (
	"strconv"
	"strings"
	"time"
)

// Cells of the commands' tables (history, status): every empty value
// prints as "-", so that columns stay aligned and greppable.

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

// OneLine is the first line of s, cut to 100 bytes (on a rune boundary)
// with "…", or "-".
func OneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = strings.ToValidUTF8(s[:100], "") + "…"
	}
	return Dash(s)
}
