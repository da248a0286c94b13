// Package pause holds and releases deployments: a pause is a file, in the
// deployment's queue directory (or in queue_dir for all of them), that the
// deployment's worker reads before each deployment and the status page
// shows. docs/deploy.md has the operator's side.
package pause

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
)

// File is the file whose presence pauses a deployment (in its queue
// directory) or every deployment (in queue_dir).
const File = ".paused"

// Pause says who paused a deployment (or all of them), when and why.
type Pause struct {
	Deployment string    `json:"deployment,omitempty"` // "" for all
	Reason     string    `json:"reason,omitempty"`
	By         string    `json:"by,omitempty"`
	Since      time.Time `json:"since"`
}

func (p *Pause) String() string {
	what := "deployment " + p.Deployment
	if p.Deployment == "" {
		what = "all deployments"
	}
	s := fmt.Sprintf("%s paused since %s", what, p.Since.UTC().Format(time.RFC3339))
	if p.By != "" {
		s += " by " + p.By
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

func path(cfg *config.Config, deployment string) string {
	if deployment == "" {
		return filepath.Join(cfg.QueueDir, File)
	}
	return filepath.Join(cfg.QueuePath(deployment), File)
}

// Set pauses a deployment ("" for all): its worker leaves entries
// queued until Resume. Durable; pausing again replaces the reason.
func Set(cfg *config.Config, p Pause) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	path := path(cfg, p.Deployment)
	// The queue directory, made like queue.Init makes it (setgid: Go's
	// MkdirAll alone drops the bit).
	if err := durable.MkdirAll(filepath.Dir(path), os.ModeSetgid|0o770); err != nil {
		return err
	}
	return durable.WriteFile(path, append(data, '\n'), 0o644)
}

// Resume ends a pause; resuming what is not paused is not an error.
func Resume(cfg *config.Config, deployment string) error {
	return durable.Remove(path(cfg, deployment))
}

// Get returns the pause that holds the deployment, its own or the
// global one, or nil. A pause file that cannot be read still pauses.
func Get(cfg *config.Config, deployment string) *Pause {
	for _, d := range []string{"", deployment} {
		data, err := os.ReadFile(path(cfg, d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		p := &Pause{Deployment: d}
		if err != nil || json.Unmarshal(data, p) != nil {
			p.Reason = fmt.Sprintf("unreadable pause file %s", path(cfg, d))
		}
		p.Deployment = d
		return p
	}
	return nil
}
