package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// ProcStatus returns a field of /proc/PID/status in KiB, e.g. VmRSS (the
// resident memory now) or VmHWM (its peak).
func ProcStatus(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return kb
				}
			}
		}
	}
	tb.Fatalf("/proc/%d/status: no %s", pid, field)
	return 0
}
