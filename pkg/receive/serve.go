package receive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// Listen opens the configured listener: "host:port" (TCP), an absolute
// path (a unix socket, mode 0660, replacing a stale socket file), or
// "systemd" (the first socket passed by socket activation).
func Listen(addr string, getenv func(string) string) (net.Listener, error) {
	switch {
	case addr == "systemd":
		ls, err := systemd.Listeners(getenv)
		if err != nil {
			return nil, err
		}
		for _, l := range ls[1:] {
			l.Close()
		}
		return ls[0], nil
	case strings.HasPrefix(addr, "/"):
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr) // left by a previous run
		}
		l, err := net.Listen("unix", addr)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(addr, 0o660); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	default:
		return net.Listen("tcp", addr)
	}
}

// Serve answers requests on l until ctx is cancelled, then stops accepting
// and gives in-flight requests up to shutdown_timeout to finish.
func (s *Server) Serve(ctx context.Context, l net.Listener, getenv func(string) string) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.Config.ReadHeaderTimeout,
		ReadTimeout:       s.Config.ReadTimeout,
		WriteTimeout:      s.Config.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.Logger.Info("listening", "addr", l.Addr().String(), "path", s.Config.Path, "queue", s.Queue.Dir())
	if err := systemd.Notify(getenv, "READY=1"); err != nil {
		s.Logger.Warn("readiness notification failed", "err", err)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	systemd.Notify(getenv, "STOPPING=1")
	s.Logger.Info("shutting down", "grace", s.Config.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Health is the answer of GET /healthz.
type Health struct {
	Status      string   `json:"status"` // "ok" or "unhealthy"
	Reasons     []string `json:"reasons,omitempty"`
	QueueDepth  int      `json:"queue_depth"`
	OldestAge   string   `json:"oldest_age,omitempty"`
	FreeBytes   uint64   `json:"free_bytes"`
	FailedCount int      `json:"failed"`
}

// Check reports whether deliveries can be accepted and are being routed:
// the queue's staging directory takes a file, free disk is above
// min_free_bytes, and the oldest waiting entry is younger than
// max_queue_age (an older one means dh-route is stalled).
func (s *Server) Check() Health {
	h := Health{Status: "ok"}
	staging := filepath.Join(s.Queue.Dir(), queue.StagingDir)
	if f, err := os.CreateTemp(staging, "healthz-"); err != nil {
		h.Reasons = append(h.Reasons, "queue not writable: "+err.Error())
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.Queue.Dir(), &fs); err != nil {
		h.Reasons = append(h.Reasons, "statfs: "+err.Error())
	} else {
		h.FreeBytes = fs.Bavail * uint64(fs.Bsize)
		if h.FreeBytes < uint64(s.Config.MinFreeBytes) {
			h.Reasons = append(h.Reasons, fmt.Sprintf("free disk %d bytes is below min_free_bytes %d", h.FreeBytes, s.Config.MinFreeBytes))
		}
	}
	st, err := s.Queue.Stats()
	if err != nil {
		h.Reasons = append(h.Reasons, "read queue: "+err.Error())
	}
	h.QueueDepth, h.FailedCount = st.Depth, st.Failed
	if !st.Oldest.IsZero() {
		age := s.Now().Sub(st.Oldest).Round(time.Millisecond)
		h.OldestAge = age.String()
		if age > s.Config.MaxQueueAge {
			h.Reasons = append(h.Reasons, fmt.Sprintf("oldest entry waits for %s, longer than max_queue_age %s: is dh-route running?", age, s.Config.MaxQueueAge))
		}
	}
	if len(h.Reasons) > 0 {
		h.Status = "unhealthy"
	}
	return h
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.Check()
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}
