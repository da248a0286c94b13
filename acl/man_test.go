package acl_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
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
	if _, warnings := testenv.Man(t, file, 80); warnings != "" {
		t.Errorf("MANWIDTH=80 man --warnings -l dh-deployer-acl.8 warns:\n%s", warnings)
	}
	text, _ := testenv.Man(t, file, 1000)
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
