// dh-route is the main queue worker of dh-deployer: it consumes
// queues/main, records every GitHub delivery in the event table, and
// forwards each push to the queues of the deployments that follow its
// branch (or voids it, with a recorded reason).
//
// Usage:
//
//	dh-route [-c FILE] migrate     apply the embedded database migrations
//
// The configuration is read from -c FILE, else $DH_CONFIG, else
// /etc/dh-deployer/config.toml; $DH_DATABASE_URL overrides database_url.
// Exit status follows sysexits(3): 0 ok, 64 usage, 75 temporary failure
// (database down), 78 bad configuration.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

func main() { os.Exit(cli.Main(app)) }

var app = &cli.App{
	Name:    "dh-route",
	Summary: "route GitHub deliveries from queues/main to the deployment queues",
	Commands: []*cli.Command{
		{Name: "migrate", Summary: "apply the embedded database migrations", Run: migrate},
	},
}

func migrate(ctx context.Context, env *cli.Env, _ []string) error {
	cfg, err := config.Load(env.Config)
	if err != nil {
		return err
	}
	from, to, err := store.Migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(env.Stdout, "database schema is up to date (version %d)\n", to)
	} else {
		fmt.Fprintf(env.Stdout, "migrated database schema from version %d to %d\n", from, to)
	}
	return nil
}
