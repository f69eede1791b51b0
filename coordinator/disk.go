package coordinator

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
)

// DefaultMinFreeBytes is the free space on the data directory's file
// system below which the coordinator pauses (Config.MinFreeBytes).
const DefaultMinFreeBytes = 256 << 20

// diskGuard pauses the coordinator before its disk is full: a round
// commit or an audit append that fails half-way for want of space is the
// one failure the coordinator cannot recover from on its own.
//
// The free space of the data directory's file system is checked when
// Serve starts and every quotaTick. Below Config.MinFreeBytes the
// coordinator pauses: every call but the health check is refused with
// ResourceExhausted (counted, not written, see quota.go), no new round
// opens, and fedguard_disk_paused is 1, which the FedguardDiskNearlyFull
// alert reports. A round in progress closes or fails as usual (its
// records are small). Once the space is back above the threshold the
// coordinator resumes on its own.
type diskGuard struct {
	paused atomic.Bool
}

// checkDisk measures the free space and pauses or resumes.
func (c *Coordinator) checkDisk(ctx context.Context) {
	free, err := freeBytes(c.cfg.DataDir)
	if err != nil {
		return // unsupported or transient: keep the last state
	}
	c.metrics.diskFree.Set(float64(free))
	low := free < c.cfg.MinFreeBytes
	if c.disk.paused.Swap(low) == low {
		return
	}
	if low {
		c.metrics.diskPaused.Set(1)
		c.opts.log.ErrorContext(ctx, "pausing: the data directory's disk is nearly full; calls are refused until space is freed",
			"free_bytes", free, "min_free_bytes", c.cfg.MinFreeBytes, "data_dir", c.cfg.DataDir)
		return
	}
	c.metrics.diskPaused.Set(0)
	c.opts.log.InfoContext(ctx, "resuming: free space is back above the threshold", "free_bytes", free, "min_free_bytes", c.cfg.MinFreeBytes)
	c.poke()
}

// errDiskPaused refuses calls while the disk is nearly full.
func (c *Coordinator) errDiskPaused(who string, method string) error {
	c.quota.suppress(who, audit.KindCallRefused, c.opts.now())
	c.metrics.eventsSuppressed.WithLabelValues(audit.KindCallRefused).Inc()
	return &quotaError{status.Newf(codes.ResourceExhausted,
		"the coordinator is paused: its disk is nearly full (%s refused); try again later", method)}
}
