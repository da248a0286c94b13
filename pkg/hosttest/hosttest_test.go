package hosttest_test

import (
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/hosttest"
)

// TestBootReboot boots the container, checks systemd is PID 1 with a
// private network, and that a file written before a reboot is there after.
func TestBootReboot(t *testing.T) {
	h := hosttest.New(t)
	h.Boot(t)
	if out := h.Run(t, "cat /proc/1/comm; ls /sys/class/net"); out != "systemd\nlo\n" {
		t.Fatalf("PID 1 and the network interfaces = %q; want systemd and lo alone", out)
	}
	h.Run(t, "echo kept > /var/lib/hosttest-mark")
	h.Reboot(t)
	if out := h.Run(t, "cat /var/lib/hosttest-mark; systemctl show -P ActiveState postgresql@15-main"); !strings.HasPrefix(out, "kept\nactive") {
		t.Fatalf("after a reboot: %q; want the mark kept and PostgreSQL running", out)
	}
}
