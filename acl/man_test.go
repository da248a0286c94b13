package acl_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
)

// dh-deployer-acl's manual page, made from its --help as make build makes
// it (cmd/dh-manpage: cli.TextManual), renders without a warning from
// man(1) and shows every command its --help lists.
func TestManPage(t *testing.T) {
	help, err := exec.Command("./dh-deployer-acl", "--help").Output()
	if err != nil {
		t.Fatalf("dh-deployer-acl --help: %v", err)
	}
	page, err := cli.TextManual("dh-deployer-acl", "8", string(help))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dh-deployer-acl.8")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	man := func(width string) (stdout, stderr string) {
		t.Helper()
		cmd := exec.Command("man", "--warnings", "-l", file)
		cmd.Env = append(os.Environ(), "MANWIDTH="+width, "LC_ALL=C.UTF-8", "MANPAGER=cat", "PAGER=cat")
		var out, errs strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errs
		if err := cmd.Run(); err != nil {
			t.Fatalf("man -l %s: %v\n%s (man comes with Debian's man-db)", file, err, errs.String())
		}
		return out.String(), errs.String()
	}
	if _, warnings := man("80"); warnings != "" {
		t.Errorf("MANWIDTH=80 man --warnings -l dh-deployer-acl.8 warns:\n%s", warnings)
	}
	text, _ := man("1000")
	var commands int
	for line := range strings.Lines(string(help)) {
		if usage, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "  dh-deployer-acl "); ok {
			commands++
			if !strings.Contains(text, "dh-deployer-acl "+usage) {
				t.Errorf("the manual page lacks the command %q", usage)
			}
		}
	}
	if commands < 5 {
		t.Errorf("dh-deployer-acl --help lists %d commands; want its five", commands)
	}
	if _, err := cli.TextManual("dh-deployer-acl", "8", "usage: something else\n"); err == nil {
		t.Errorf("TextManual of a help of another shape = nil; want an error")
	}
}
