package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
)

// jsonObject is res encoded as JSON and decoded as an object: the fields a
// reader of the benchmark's --json output sees.
func jsonObject(t *testing.T, res any) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(res); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestAggregateJSON(t *testing.T) {
	res, err := Aggregate(context.Background(), AggregateOptions{Rule: "fedavg", N: 3, D: 100, F: -1, Runs: 2})
	if err != nil {
		t.Fatalf("Aggregate: %v", err)
	}
	got := jsonObject(t, res)
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"d", "kernel", "n", "pass_kernel", "pass_seconds", "ratio", "rule", "seconds"}; !slices.Equal(keys, want) {
		t.Errorf("JSON keys = %v, want %v", keys, want)
	}
	if got["rule"] != "fedavg" || got["n"] != 3.0 || got["d"] != 100.0 {
		t.Errorf("JSON = %v, want rule fedavg, n 3, d 100", got)
	}
	if s, p := got["seconds"].(float64), got["pass_seconds"].(float64); !(s > 0 && p > 0) {
		t.Errorf("JSON = %v, want positive times", got)
	}
	if k, _ := aggregation.Kernel(); got["kernel"] != k || !slices.Contains(aggregation.KernelPaths(), k) {
		t.Errorf("JSON kernel = %v, want the path that ran (%q, one of %v)", got["kernel"], k, aggregation.KernelPaths())
	}
}

func TestAggregateDefaults(t *testing.T) {
	for _, tc := range []struct {
		rule string
		n    int
		want int
	}{
		{"fedavg", 50, 0}, {"median", 50, 24}, {"trimmed-mean", 10, 4}, {"krum", 50, 23},
		{"multi-krum", 10, 3}, {"bulyan", 50, 11}, {"centered-clipping", 10, 4}, {"bulyan", 3, 0},
	} {
		o := AggregateOptions{Rule: tc.rule, N: tc.n, F: -1}
		c := o.config()
		if c.F != tc.want {
			t.Errorf("config(%q, n=%d).F = %d, want %d", tc.rule, tc.n, c.F, tc.want)
		}
		if err := c.CheckCohort(tc.n); err != nil {
			t.Errorf("config(%q, n=%d) = %+v: CheckCohort: %v", tc.rule, tc.n, c, err)
		}
	}
}

func TestAggregateEveryRule(t *testing.T) {
	for _, rule := range []string{"fedavg", "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "centered-clipping"} {
		res, err := Aggregate(context.Background(), AggregateOptions{Rule: rule, N: 7, D: 33, F: -1, Runs: 1})
		if err != nil || res.Rule != rule {
			t.Errorf("Aggregate(%q) = %+v, %v", rule, res, err)
		}
	}
}

func TestAggregateRefuses(t *testing.T) {
	for _, o := range []AggregateOptions{
		{Rule: "fedavg", N: 0, D: 10},
		{Rule: "krum", N: 4, D: 10, F: 1},
		{Rule: "no-such-rule", N: 4, D: 10},
	} {
		if _, err := Aggregate(context.Background(), o); err == nil {
			t.Errorf("Aggregate(%+v) succeeded, want an error", o)
		}
	}
	_, err := Aggregate(context.Background(), AggregateOptions{Rule: "krum", N: 4, D: 10, F: 1})
	if !errors.Is(err, aggregation.ErrCohort) {
		t.Errorf("Aggregate(krum, n=4, f=1) = %v, want ErrCohort", err)
	}
}

func TestSumPass(t *testing.T) {
	xs := [][]float32{{1, 2, 3}, {4, 5, 6}}
	dst := []float32{9, 9, 9}
	SumPass(dst, xs)
	if want := []float32{5, 7, 9}; !slices.Equal(dst, want) {
		t.Errorf("SumPass = %v, want %v", dst, want)
	}
}
