package workers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestEach: every task runs once, and the error returned is the lowest
// index's whatever the number of goroutines, or the context's.
func TestEach(t *testing.T) {
	for _, limit := range []int{0, 1, 2, 7, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var runs [50]atomic.Int32
			if err := Each(context.Background(), limit, len(runs), func(i int) error {
				runs[i].Add(1)
				runtime.Gosched()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for i := range runs {
				if r := runs[i].Load(); r != 1 {
					t.Fatalf("task %d ran %d times", i, r)
				}
			}
			err := Each(context.Background(), limit, 50, func(i int) error {
				if i%10 == 7 {
					return fmt.Errorf("task %d", i)
				}
				return nil
			})
			if err == nil || err.Error() != "task 7" {
				t.Fatalf("Each = %v, want task 7's error", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := Each(ctx, limit, 5, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
				t.Fatalf("Each after cancel = %v, want context.Canceled", err)
			}
			if err := Each(context.Background(), limit, 0, func(int) error { return errors.New("ran") }); err != nil {
				t.Fatalf("Each of no task = %v", err)
			}
		})
	}
}

// TestIndexed: every task runs once, w stays below Count and no two
// concurrent calls share it, and one goroutine runs the tasks in order.
func TestIndexed(t *testing.T) {
	for _, tc := range []struct{ limit, n, count int }{
		{0, 5, 1}, {1, 5, 1}, {2, 0, 0}, {3, 1, 1}, {4, 50, 4}, {100, 7, 7},
	} {
		t.Run(fmt.Sprintf("limit %d n %d", tc.limit, tc.n), func(t *testing.T) {
			if c := Count(tc.limit, tc.n); c != tc.count {
				t.Fatalf("Count = %d, want %d", c, tc.count)
			}
			runs := make([]atomic.Int32, tc.n)
			busy := make([]atomic.Bool, max(tc.count, 1))
			var order []int
			var bad atomic.Value
			Indexed(tc.limit, tc.n, func(w, i int) {
				if w < 0 || w >= tc.count {
					bad.Store(fmt.Sprintf("task %d on goroutine %d of %d", i, w, tc.count))
					return
				}
				if busy[w].Swap(true) {
					bad.Store(fmt.Sprintf("two concurrent calls with w = %d", w))
				}
				runs[i].Add(1)
				runtime.Gosched()
				if tc.count == 1 {
					order = append(order, i)
				}
				busy[w].Store(false)
			})
			if msg := bad.Load(); msg != nil {
				t.Fatal(msg)
			}
			for i := range runs {
				if r := runs[i].Load(); r != 1 {
					t.Fatalf("task %d ran %d times", i, r)
				}
			}
			if tc.count == 1 {
				for k, i := range order {
					if i != k {
						t.Fatalf("one goroutine ran the tasks in the order %v", order)
					}
				}
			}
		})
	}
}
