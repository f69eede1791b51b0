package coordinator

import (
	"testing"
	"time"
)

// TestRetryDelay checks the backoff between failed attempts: doubling from
// retryBackoffMin, capped at retryBackoffMax, each drawn from the upper
// half of its bound.
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		n     int
		bound time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{8, 128 * time.Second},
		{9, 256 * time.Second},
		{10, retryBackoffMax},
		{40, retryBackoffMax},
		{1 << 30, retryBackoffMax},
	}
	for _, tt := range tests {
		for range 100 {
			if d := retryDelay(tt.n); d < tt.bound/2 || d > tt.bound {
				t.Fatalf("retryDelay(%d) = %v, want in [%v, %v]", tt.n, d, tt.bound/2, tt.bound)
			}
		}
	}
}
