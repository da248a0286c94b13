package cli_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
)

// A queue's writers follow the configuration SIGHUP reloads, so that an
// entry of a writer the reload added is taken at the next scan.
func TestWritersFollowReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	write := func(writers string) {
		doc := fmt.Sprintf("queue_dir = %q\nstate_dir = %q\n[queues.main]\nwriters = [%s]\n", dir, dir, writers)
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`"root"`)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	env := &cli.Env{Config: file, Logger: slog.New(slog.DiscardHandler)}
	hup, stop := env.Hangups()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup.Reload(ctx, cfg, func(*config.Config) error { return nil })
	writers := hup.Writers(config.MainQueue)
	if got := writers(); !slices.Equal(got, []int{0}) {
		t.Fatalf("writers = %v; want [0] (root)", got)
	}
	write(`"root", "nobody"`)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for i := 0; len(writers()) != 2; i++ {
		if i == 500 {
			t.Fatalf("writers = %v 5 s after SIGHUP; want root and nobody", writers())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
