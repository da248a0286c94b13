package cell

import (
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
	}{
		{"", 10, ""},
		{"one", 10, "one"},
		{"  a\nb\n\n  \n", 10, "a b"},
		{"x\n  indented  \r\n", 0, "x indented"},
		{"bell\a and \x1b[31mred\n", 0, "bell and [31mred"},
		{"nginx: [emerg] x\n\tnginx: test failed", 0, "nginx: [emerg] x nginx: test failed"},
		{"bad \xff byte", 0, "bad \uFFFD byte"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abcde…"},
		{strings.Repeat("é", 150), 100, strings.Repeat("é", 99) + "…"},
		{strings.Repeat("ошибка\n", 200), 20, "ошибка ошибка ошибк…"},
	} {
		if got := Line(tt.in, tt.max); got != tt.want {
			t.Errorf("Line(%q, %d) = %q; want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestCells(t *testing.T) {
	long := strings.Repeat("é", 120)
	for _, tc := range []struct{ got, want string }{
		{Dash(""), "-"}, {Dash("x"), "x"},
		{Stamp(time.Time{}), "-"}, {Stamp(time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("CET", 3600))), "2026-11-22T09:00:00Z"},
		{ShortSHA(""), "-"}, {ShortSHA(strings.Repeat("a", 40)), strings.Repeat("a", 12)},
		{Num(nil), "-"}, {Num(new(3)), "3"},
		{Text(""), "-"}, {Text(" \n "), "-"}, {Text("first\nsecond"), "first second"}, {Text(long), strings.Repeat("é", 99) + "…"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q; want %q", tc.got, tc.want)
		}
	}
}
