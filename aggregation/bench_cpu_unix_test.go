//go:build unix

package aggregation

import "syscall"

// cpuSeconds is the CPU time (user and system) this process has used. On a
// shared machine it tells a kernel's work from the time other processes
// took the cores, which wall times and their ratios cannot.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
