// dh-manpage writes the manual page of a program that is not built on
// pkg/cli (dh-deployer-acl, a shell script) from its --help text, read
// on standard input, with cli.TextManual; the tools print their own
// (TOOL --man). make build runs it; it is a development tool, not
// installed.
//
// Usage:
//
//	acl/dh-deployer-acl --help | dh-manpage dh-deployer-acl 8 > dh-deployer-acl.8
//
// Exit status: 0 ok, 64 usage, 65 a help text of another shape.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: PROGRAM --help | dh-manpage NAME SECTION > NAME.SECTION")
		os.Exit(64)
	}
	help, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dh-manpage: error:", err)
		os.Exit(74)
	}
	page, err := cli.TextManual(os.Args[1], os.Args[2], string(help))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dh-manpage: error:", err)
		os.Exit(65)
	}
	fmt.Print(page)
}
