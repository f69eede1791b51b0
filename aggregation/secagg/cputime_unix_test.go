//go:build unix

package secagg

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time, user and system, the process has used:
// benchmarks report it per sample as well as the wall time, which grows
// with the machine's load.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
