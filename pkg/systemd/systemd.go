// Package systemd speaks the two small protocols a daemon shares with
// systemd, without linking libsystemd: readiness notification
// (sd_notify(3), a datagram to $NOTIFY_SOCKET) and socket activation
// (sd_listen_fds(3), listening sockets passed from fd 3 on, with
// $LISTEN_PID and $LISTEN_FDS). Both are no-ops when not run by systemd.
// Booted is sd_booted(3): the one place that decides whether root work
// goes through systemd (polkit rules and root units) or through sudo.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Notify sends state (e.g. "READY=1", "STOPPING=1") to the service
// manager. It returns nil without doing anything when $NOTIFY_SOCKET is
// unset.
func Notify(getenv func(string) string, state string) error {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// listenFDsStart is the first file descriptor systemd passes.
const listenFDsStart = 3

// Listeners returns the listening sockets systemd passed to this process
// (socket activation). It fails if there are none.
func Listeners(getenv func(string) string) ([]net.Listener, error) {
	pid, err := strconv.Atoi(getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, errors.New("no sockets passed by systemd (LISTEN_PID is not this process)")
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, errors.New("no sockets passed by systemd (LISTEN_FDS)")
	}
	var ls []net.Listener
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "systemd-socket-"+strconv.Itoa(fd))
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("socket fd %d from systemd: %w", fd, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// ListenerNames returns the names of the sockets Listeners returns, in
// the same order: each socket unit's FileDescriptorName= (by default the
// unit's name), from $LISTEN_FDNAMES; nil if systemd did not set it.
func ListenerNames(getenv func(string) string) []string {
	v := getenv("LISTEN_FDNAMES")
	if v == "" {
		return nil
	}
	return strings.Split(v, ":")
}

// BootedDir is the directory whose presence means that systemd is the
// service manager of this host (sd_booted(3)). A variable for tests.
var BootedDir = "/run/systemd/system"

// Booted reports whether the host runs systemd as its service manager, as
// sd_booted(3) does: /run/systemd/system exists and is a directory. The
// tools choose how they reach root work by it (docs/nginx.md,
// docs/cert.md): through systemctl, polkit and root units when true,
// through sudo when false (containers without systemd).
func Booted() bool {
	fi, err := os.Lstat(BootedDir)
	return err == nil && fi.IsDir()
}
