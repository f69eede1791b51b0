//go:build unix

package benchmark

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time, user and system, that the process has
// used so far. SecAgg runs one participant or the server at a time, so
// the difference around a call is that call's CPU, on every core it
// used: unlike its wall time, it does not grow with the machine's load.
// It returns 0 if the system cannot tell.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
