package deploy

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
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// PauseFile is the file whose presence pauses a deployment (in its queue
// directory) or every deployment (in queue_dir).
const PauseFile = ".paused"

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

func pausePath(cfg *config.Config, deployment string) string {
	if deployment == "" {
		return filepath.Join(cfg.QueueDir, PauseFile)
	}
	return filepath.Join(cfg.QueuePath(deployment), PauseFile)
}

// SetPause pauses a deployment ("" for all): its worker leaves entries
// queued until Resume. Durable; pausing again replaces the reason.
func SetPause(cfg *config.Config, p Pause) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	path := pausePath(cfg, p.Deployment)
	if err := os.MkdirAll(filepath.Dir(path), 0o2770); err != nil {
		return sysexits.New(sysexits.IOErr, err)
	}
	return durable.WriteFile(path, append(data, '\n'), 0o644)
}

// Resume ends a pause; resuming what is not paused is not an error.
func Resume(cfg *config.Config, deployment string) error {
	return durable.Remove(pausePath(cfg, deployment))
}

// Paused returns the pause that holds the deployment, its own or the
// global one, or nil. A pause file that cannot be read still pauses.
func Paused(cfg *config.Config, deployment string) *Pause {
	for _, d := range []string{"", deployment} {
		data, err := os.ReadFile(pausePath(cfg, d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		p := &Pause{Deployment: d}
		if err != nil || json.Unmarshal(data, p) != nil {
			p.Reason = fmt.Sprintf("unreadable pause file %s", pausePath(cfg, d))
		}
		p.Deployment = d
		return p
	}
	return nil
}

// errWaiting wraps the reason an entry waits (paused, outside the deploy
// windows): a TempFail, so the queue keeps it, in order, and tries again.
var errWaiting = errors.New("waiting")

// holdReason says why the deployment may not deploy now, or "".
func (w *Worker) holdReason(now time.Time) string {
	if p := Paused(w.cfg, w.d.Name); p != nil {
		return p.String()
	}
	if in, next := w.d.InWindow(now); !in {
		return fmt.Sprintf("outside the deploy windows %q; the next opens %s", w.d.Windows, next.Format(time.RFC3339))
	}
	return ""
}
