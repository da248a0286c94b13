// dh-nginx installs the nginx sites of nginx-kind deployments into
// /etc/nginx/conf.d, tests the configuration with nginx -t and reloads
// nginx, restoring the previous files when the test fails.
//
// Its commands arrive with the nginx stage; this build only answers
// --help and --version.
package main

import (
	"os"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-nginx",
	Summary: "install nginx sites safely: write, nginx -t, reload or restore",
}
