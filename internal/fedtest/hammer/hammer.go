// Package hammer keeps goroutines doing the same thing again and again
// while a test does something else: the load of the concurrency tests
// (readers of an audit store while it is appended to, participants
// polling a coordinator while it retries), which run with -race.
//
// It is its own package, below internal/fedtest, so that packages fedtest
// imports (audit's conformance suite, coordinator's tests) can use it.
package hammer

import "sync"

// Start runs work(i) on n goroutines, i from 0 to n-1, each calling it again
// as soon as it returns true, until stop is called; a goroutine whose work
// returns false ends early. stop waits for every goroutine to end; later
// calls do nothing.
func Start(n int, work func(i int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if !work(i) {
					return
				}
			}
		})
	}
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}
