// Package cputime reads the CPU time, user and system, that this process
// has used. Benchmarks report it beside the wall time: on a shared machine
// the wall time also counts the time other processes held the cores, and
// the CPU time around a call is that call's work on every core it used.
package cputime

import "time"

// Process returns the CPU time this process has used so far, or 0 where
// the system cannot tell (the difference of two readings is then 0 too).
func Process() time.Duration { return process() }
