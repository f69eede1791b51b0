//go:build unix

package privacy

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used. The
// benchmarks report it per operation besides the wall time, because on a
// shared machine the wall time also counts the time other processes held
// the CPU.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
