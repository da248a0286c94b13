// dh-deploy runs the deployments of dh-deployer: one worker per deployment
// queue (the systemd template instance dh-deploy@NAME), which checks out the
// pushed commit, runs the deployment's build steps and records the run.
//
// Its commands arrive with the deploy stage; this build only answers
// --help and --version.
package main

import (
	"os"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-deploy",
	Summary: "check out, build and record one deployment's pushes",
}
