package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// ShutdownTimeout is how long requests in flight may finish when the
// server stops.
const ShutdownTimeout = 5 * time.Second

// Listen opens status.listen: "host:port" (TCP) or an absolute path (a
// unix socket, mode 0660, replacing a stale socket file).
func Listen(network, address string) (net.Listener, error) {
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(address) // left by a previous run
		}
	}
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, unavailableError{fmt.Errorf("status page: %w", err)}
	}
	if network == "unix" {
		if err := os.Chmod(address, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("status page: %w", err) // a *fs.PathError: exit 74
		}
	}
	return l, nil
}

// Serve answers requests on l with h until ctx is cancelled, then lets
// requests in flight finish for up to ShutdownTimeout.
func Serve(ctx context.Context, l net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a log is up to 8 MiB
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	logger.Info("serving the status page", "addr", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("status page: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status page: %w", err)
	}
	return nil
}
