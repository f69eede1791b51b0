// Package workers runs the tasks of one job on a bounded number of
// goroutines. The simulator's clients and grid cells and the coordinator's
// reads of a spill file are such jobs: each task reports an error, and the
// job's error must not depend on how the tasks were scheduled. The
// aggregation kernels and the secure-aggregation server are jobs of
// another form: their tasks cannot fail, and each keeps scratch space per
// goroutine (Indexed).
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
	if Count(limit, n) <= 1 {
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
	Indexed(limit, n, func(_, i int) {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			return
		}
		errs[i] = f(i)
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Indexed calls f(w, i) for every i in [0, n) on Count(limit, n)
// goroutines and returns when all calls have. w, in [0, Count(limit, n)),
// names the goroutine making the call: no two concurrent calls share it,
// so f may keep scratch space per goroutine. Each goroutine takes the next
// i not yet taken, so which w serves which i depends on scheduling; f must
// not let its result depend on it. With one goroutine, the calling one
// makes the calls f(0, 0), f(0, 1), … in order.
func Indexed(limit, n int, f func(w, i int)) {
	goroutines := Count(limit, n)
	if goroutines <= 1 {
		for i := range n {
			f(0, i)
		}
		return
	}
	var next atomic.Int64
	work := func(w int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(w, i)
		}
	}
	// The calling goroutine is worker 0: a job split in two starts one
	// goroutine, not two, and the caller does not sleep while the others
	// wake up (anomaly's checks split every block of 16 Ki parameters over
	// the cores, hundreds of times a round).
	var wg sync.WaitGroup
	for w := 1; w < goroutines; w++ {
		wg.Go(func() { work(w) })
	}
	work(0)
	wg.Wait()
}

// Count is the number of goroutines Each and Indexed use for n tasks with
// the given limit: limit, at least one, and at most n (0 for no task).
func Count(limit, n int) int { return min(max(limit, 1), n) }
