package simulation_test

import (
	"context"
	"fmt"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/simulation"
)

// Ten hospitals on WDBC, two of them flipping the sign of their updates,
// against the coordinate-wise median.
func ExampleRun() {
	o := simulation.Options{
		Dataset: simulation.DatasetWDBC, Model: "logreg",
		Clients: 10, Byzantine: 2, Rounds: 5, Seed: 1,
		Attack:      attack.Config{Name: attack.NameSignFlip},
		Aggregation: aggregation.Defaults(aggregation.NameMedian, 10, 2),
	}
	res, err := simulation.Run(context.Background(), o, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(res.Rounds), "rounds; Byzantine clients", res.ByzantineClients)
	fmt.Println("accuracy above 90 %:", res.Accuracy > 0.9)
	// Output:
	// 5 rounds; Byzantine clients [1 7]
	// accuracy above 90 %: true
}
