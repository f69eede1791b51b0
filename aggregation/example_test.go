package aggregation_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/aggregation"
)

// Two hospitals' updates, weighted by their self-reported sample counts.
func ExampleFedAvg() {
	updates := []aggregation.Update{
		{ID: "hospital-a", Delta: []float32{1, 0}, Samples: 300},
		{ID: "hospital-b", Delta: []float32{0, 1}, Samples: 100},
	}
	dst := make([]float32, 2)
	rep, err := aggregation.FedAvg{}.Aggregate(dst, updates)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dst)
	for _, e := range rep.Entries {
		fmt.Printf("%s weight %.2f selected %v\n", e.ID, e.Weight, e.Selected)
	}
	// Output:
	// [0.75 0.25]
	// hospital-a weight 0.75 selected true
	// hospital-b weight 0.25 selected true
}

// Krum with one assumed Byzantine participant: five updates, of which "e"
// is far from the others. Krum keeps the update closest to its n−f−2 = 2
// nearest neighbours.
func ExampleNew() {
	rule, err := aggregation.New(aggregation.Config{Rule: "krum", F: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	updates := []aggregation.Update{
		{ID: "a", Delta: []float32{0, 0}, Samples: 10},
		{ID: "b", Delta: []float32{2, 0}, Samples: 10},
		{ID: "c", Delta: []float32{3, 0}, Samples: 10},
		{ID: "d", Delta: []float32{7, 0}, Samples: 10},
		{ID: "e", Delta: []float32{100, 0}, Samples: 1_000_000}, // claims count for nothing
	}
	dst := make([]float32, 2)
	rep, err := rule.Aggregate(dst, updates)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Rule, dst)
	for _, e := range rep.Entries {
		fmt.Printf("%s selected=%v %s\n", e.ID, e.Selected, e.Reason)
	}
	// Output:
	// krum [2 0]
	// a selected=false krum: score 13 not the lowest (5)
	// b selected=true krum: score 5 is the lowest
	// c selected=false krum: score 10 not the lowest (5)
	// d selected=false krum: score 41 not the lowest (5)
	// e selected=false krum: score 18058 not the lowest (5)
}

// A configuration refused before the first round: the coordinator checks
// the smallest cohort it may aggregate.
func ExampleConfig_CheckCohort() {
	c := aggregation.Config{Rule: "bulyan", F: 2}
	fmt.Println(c.CheckCohort(10))
	fmt.Println(c.CheckCohort(11))
	// Output:
	// aggregation: cohort does not meet the rule's precondition: bulyan needs n ≥ 4f+3, have n=10 f=2
	// <nil>
}

// Bucketing draws its buckets from a reader the caller seeds per round, so
// the round can be recomputed from its inputs and its seed.
func ExampleWithRand() {
	rule, err := aggregation.New(aggregation.Config{Rule: "median", Bucket: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	updates := []aggregation.Update{
		{ID: "a", Delta: []float32{0}}, {ID: "b", Delta: []float32{2}},
		{ID: "c", Delta: []float32{4}}, {ID: "d", Delta: []float32{10}},
	}
	dst := make([]float32, 1)
	_, err = rule.Aggregate(dst, updates)
	fmt.Println(err)

	var seed [32]byte // the coordinator derives one per round
	rep, err := aggregation.WithRand(rule, rand.NewChaCha8(seed)).Aggregate(dst, updates)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Rule, dst)
	for _, e := range rep.Entries {
		fmt.Printf("%s bucket %d\n", e.ID, e.Bucket)
	}
	// Output:
	// aggregation: no randomness source (use WithRand)
	// bucket+median [4]
	// a bucket 2
	// b bucket 2
	// c bucket 1
	// d bucket 1
}

// The configuration of a rule from its name alone, for 25 participants of
// which 5 may be Byzantine.
func ExampleDefaults() {
	for _, rule := range []string{"fedavg", "trimmed-mean", "multi-krum", "centered-clipping"} {
		c := aggregation.Defaults(rule, 25, 5)
		fmt.Printf("%+v %v\n", c, c.CheckCohort(25))
	}
	// Output:
	// {Rule:fedavg F:0 M:0 Beta:0 Tau:0 Iterations:0 Nu:0 Start: MaxSamples:0 NormClip:0 Bucket:0} <nil>
	// {Rule:trimmed-mean F:5 M:0 Beta:0.2 Tau:0 Iterations:0 Nu:0 Start: MaxSamples:0 NormClip:0 Bucket:0} <nil>
	// {Rule:multi-krum F:5 M:20 Beta:0 Tau:0 Iterations:0 Nu:0 Start: MaxSamples:0 NormClip:0 Bucket:0} <nil>
	// {Rule:centered-clipping F:5 M:0 Beta:0 Tau:1 Iterations:0 Nu:0 Start: MaxSamples:0 NormClip:0 Bucket:0} <nil>
}

// Kernel names the path the rules run on this machine; FEDGUARD_KERNEL
// forces one, and a path the CPU lacks is refused.
func ExampleKernel() {
	path, err := aggregation.Kernel()
	if err != nil {
		fmt.Println("refused:", err) // e.g. FEDGUARD_KERNEL=avx512 on a CPU without it
		return
	}
	fmt.Println("kernel path:", path, "of", aggregation.KernelPaths())
}
