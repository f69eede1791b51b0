package workers

import (
	"context"
	"errors"
	"fmt"
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
