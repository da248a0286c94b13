// dh-cert obtains and renews the TLS certificates of nginx sites with
// certbot, then has dh-nginx install or reload the sites that use them.
//
// Its commands arrive with the certificate stage; this build only answers
// --help and --version.
package main

import (
	"os"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-cert",
	Summary: "obtain and renew TLS certificates with certbot",
}
