// Package workers runs the tasks of one job on a bounded number of
// goroutines. The simulator's clients and grid cells and the coordinator's
// reads of a spill file are such jobs: each task reports an error, and the
// job's error must not depend on how the tasks were scheduled.
package workers

import (
	"context"
	"sync"
	"sync/atomic"
)

// Each calls f(i) for every i in [0, n) on up to limit goroutines (at
// least one) and returns the error of the lowest i that failed, or ctx's
// error for the tasks not started once ctx is done. With one goroutine it
// stops at the first failure, which is then the lowest.
func Each(ctx context.Context, limit, n int, f func(i int) error) error {
	if min(max(limit, 1), n) <= 1 {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			if err := ctx.Err(); err != nil {
				errs[i] = err
				continue
			}
			errs[i] = f(i)
		}
	}
	// The calling goroutine is one of the workers: a job split in two
	// starts one goroutine, not two, and the caller does not sleep while
	// the others wake up (anomaly's checks split every block of 16 Ki
	// parameters over the cores, hundreds of times a round).
	var wg sync.WaitGroup
	for range min(limit, n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
