package coordinator

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"

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
// Serve starts and every quotaTick. Below Config.MinFreeBytes (plus, when
// rounds spill their updates, the room one round's spill file may still
// need: spillReserve) the coordinator pauses: every call but the health check is refused with
// ResourceExhausted (counted, not written, see quota.go), no new round
// opens, and fedguard_disk_paused is 1, which the FedguardDiskNearlyFull
// alert reports. A round in progress closes or fails as usual (its
// records are small). Once the space is back above the threshold the
// coordinator resumes on its own.
//
// The disk can fill faster than the guard checks. A write that then fails
// with ENOSPC or EDQUOT pauses the coordinator at once (record), and the
// round loop, instead of exiting, abandons the attempt it was opening or
// closing and retries the round once the guard resumes (pauseDiskFull).
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
	reserve := c.spillReserve()
	low := free < c.cfg.MinFreeBytes+reserve
	if c.disk.paused.Swap(low) == low {
		return
	}
	if low {
		c.metrics.diskPaused.Set(1)
		c.opts.log.ErrorContext(ctx, "pausing: the data directory's disk is nearly full; calls are refused until space is freed",
			"free_bytes", free, "min_free_bytes", c.cfg.MinFreeBytes, "spill_reserve_bytes", reserve, "data_dir", c.cfg.DataDir)
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

// isDiskFull reports whether err is a write that failed for want of space
// or quota (ENOSPC, EDQUOT).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// pauseDiskFull handles a round-loop write that failed because the disk
// filled up between two checks of the guard: the coordinator pauses as
// the guard would, instead of exiting. The failed write stored nothing
// (an audit batch is all or nothing, a bbolt transaction rolls back), and
// nothing in memory changed before it, except in a round that was
// closing, whose updates are already dropped: so the open attempt, if
// any, is abandoned as a crash would abandon it (no round_failed record,
// which cannot be written now) and the round is retried with the next
// attempt once the disk has room again. It returns how long the loop
// waits before it tries again: a backoff doubling from one second to
// quotaTick, after which the guard's own check resumes the coordinator.
func (c *Coordinator) pauseDiskFull(ctx context.Context, err error, inARow int) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pauseForDisk(ctx, err)
	if r := c.round; r != nil {
		const reason = "the coordinator's disk is full"
		c.opts.log.WarnContext(ctx, "round attempt abandoned: the disk is full; the round is retried once it has room",
			"round", r.number, "attempt", r.attempt, "failures_in_a_row", inARow)
		c.noteFailedLocked(r, reason)
		c.attempt++
		c.retry.resume = nil
		c.dropSpill(ctx, r)
		c.round, c.phase, c.cohortSince = nil, phaseCohort, time.Time{}
		c.broadcastLocked()
	}
	return min(time.Second<<min(inARow-1, 8), quotaTick)
}

// pauseForDisk sets the paused state after a write failed for want of
// space: the guard's next check (quotaTick) resumes once the free space is
// back above Config.MinFreeBytes.
func (c *Coordinator) pauseForDisk(ctx context.Context, err error) {
	if c.disk.paused.Swap(true) {
		return
	}
	c.metrics.diskPaused.Set(1)
	c.opts.log.ErrorContext(ctx, "pausing: the data directory's disk is full; calls are refused until space is freed",
		"error", err, "data_dir", c.cfg.DataDir)
}
