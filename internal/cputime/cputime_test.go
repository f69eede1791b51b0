//go:build unix

package cputime

import (
	"testing"
	"time"
)

// TestProcessCountsWork: a busy loop of at least 50 ms of CPU shows in
// the difference of two readings, and readings never go backwards.
func TestProcessCountsWork(t *testing.T) {
	before := Process()
	x := 1.0
	for Process()-before < 50*time.Millisecond {
		for range 1 << 16 {
			x = x*1.0000001 + 1e-9
		}
	}
	after := Process()
	if after < before+50*time.Millisecond {
		t.Fatalf("CPU time went from %v to %v after a busy loop (%v)", before, after, x)
	}
}
