package deploy

import (
	"errors"
	"fmt"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/pause"
)

// errWaiting wraps the reason an entry waits (paused, outside the deploy
// windows): a queue.Retry, so the queue keeps it, in order, and tries again.
var errWaiting = errors.New("waiting")

// heldError is Deploy's error for a request that is not forced while the
// deployment is held (paused, or outside its windows).
type heldError struct{ why string }

func (e *heldError) Error() string { return e.why }

// holdReason says why the deployment may not deploy now, or "".
func (w *Worker) holdReason(now time.Time) string {
	if p := pause.Get(w.cfg, w.d.Name); p != nil {
		return p.String()
	}
	if in, next := w.d.InWindow(now); !in {
		return fmt.Sprintf("outside the deploy windows %q; the next opens %s", w.d.Windows, next.Format(time.RFC3339))
	}
	return ""
}
