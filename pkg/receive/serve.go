package receive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// HookSocketName is the FileDescriptorName= of the hook's socket unit
// (dh-receive-hook.socket).
const HookSocketName = "hook"

// HookGroup is the group whose members may connect to the hook socket
// (dh-deployer-acl hook USER adds a user to it).
const HookGroup = "dh-hook"

// Listen opens the configured listeners. web is where HTTP is served:
// "host:port" (TCP), an absolute path (a unix socket, mode 0660,
// replacing a stale socket file), or "systemd" (the first socket passed
// by socket activation that is not the hook's). hook, when hookSocket is
// not empty, is the git hook's unix socket: under socket activation the
// socket named HookSocketName, otherwise one made at hookSocket (mode
// 0660, group HookGroup when it exists).
func Listen(addr, hookSocket string, getenv func(string) string) (web, hook net.Listener, err error) {
	if addr == "systemd" {
		ls, err := systemd.Listeners(getenv)
		if err != nil {
			return nil, nil, err
		}
		names := systemd.ListenerNames(getenv)
		for i, l := range ls {
			switch {
			case i < len(names) && names[i] == HookSocketName && hookSocket != "" && hook == nil:
				hook = l
			case i < len(names) && names[i] == HookSocketName, web != nil:
				l.Close()
			default:
				web = l
			}
		}
		switch {
		case web == nil:
			err = errors.New("systemd passed no socket for HTTP (only the hook's)")
		case hookSocket != "" && hook == nil:
			err = errors.New("receive.hook_users is set but systemd passed no socket named " + HookSocketName +
				": enable dh-receive-hook.socket (or empty hook_users)")
		}
		if err != nil {
			for _, l := range []net.Listener{web, hook} {
				if l != nil {
					l.Close()
				}
			}
			return nil, nil, err
		}
		return web, hook, nil
	}
	if strings.HasPrefix(addr, "/") {
		web, err = listenUnix(addr, -1)
	} else {
		web, err = net.Listen("tcp", addr)
	}
	if err != nil || hookSocket == "" {
		return web, nil, err
	}
	gid := -1
	if g, err := user.LookupGroup(HookGroup); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if hook, err = listenUnix(hookSocket, gid); err != nil {
		web.Close()
		return nil, nil, fmt.Errorf("hook socket: %w", err)
	}
	return web, hook, nil
}

// listenUnix listens on a unix socket at path with mode 0660 (and group
// gid unless it is -1), replacing a stale socket but no other file.
func listenUnix(path string, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path) // left by a previous run
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	err = os.Chmod(path, 0o660)
	if err == nil && gid >= 0 {
		if err = os.Chown(path, -1, gid); err != nil {
			err = fmt.Errorf("%w (dh-receive must be a member of %s, as the sysusers file makes it)", err, HookGroup)
		}
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Serve answers requests on l until ctx is cancelled, then stops accepting
// and gives in-flight requests up to shutdown_timeout to finish. Once it
// listens it calls ready (cli.Env.Ready: READY=1 to the service manager),
// and the function ready returns when it starts stopping; ready may be
// nil.
func (s *Server) Serve(ctx context.Context, l net.Listener, ready func(status string) (stopping func())) error {
	if ready == nil {
		ready = func(string) func() { return func() {} }
	}
	stopWaiting, cancelWaiting := context.WithCancel(context.Background())
	defer cancelWaiting()
	s.stopping = stopWaiting
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.Config.ReadHeaderTimeout,
		ReadTimeout:       s.Config.ReadTimeout,
		WriteTimeout:      s.Config.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l) }()
	var hook *http.Server
	if s.HookListener != nil {
		hook = &http.Server{
			Handler:           s.HookHandler(),
			ReadHeaderTimeout: s.Config.ReadHeaderTimeout,
			ReadTimeout:       s.Config.ReadTimeout,
			WriteTimeout:      s.Config.WriteTimeout,
			ConnContext:       withPeer,
			ErrorLog:          srv.ErrorLog,
		}
		go func() { errc <- hook.Serve(s.HookListener) }()
		s.Logger.Info("listening for the git hook", "addr", s.HookListener.Addr().String())
	}
	s.Logger.Info("listening", "addr", l.Addr().String(), "path", s.Config.Path, "queue", s.Queue.Dir())
	stopping := ready("receiving deliveries on " + l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopping()
	cancelWaiting() // requests waiting for their runs answer now, so the shutdown is not held up
	s.Logger.Info("shutting down", "grace", s.Config.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if hook != nil {
		if err := hook.Shutdown(sctx); err != nil {
			hook.Close()
			return fmt.Errorf("shutdown: %w", err)
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
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
