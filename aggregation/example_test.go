package aggregation_test

import (
	"fmt"

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
