package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Man renders the manual page file as `MANWIDTH=width man --warnings -l
// FILE` does (man-db, groff), and returns the text (plain: stdout is not a
// terminal) and what man and groff warned about. A wide width breaks no
// line, for tests that look for whole lines.
func Man(t testing.TB, file string, width int) (text, warnings string) {
	t.Helper()
	cmd := exec.Command(Command(t, "man"), "--warnings", "-l", file)
	cmd.Env = append(os.Environ(), "MANWIDTH="+strconv.Itoa(width), "LC_ALL=C.UTF-8", "MANPAGER=cat", "PAGER=cat")
	var out, errs strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("man -l %s: %v\n%s", file, err, errs.String())
	}
	return out.String(), errs.String()
}
