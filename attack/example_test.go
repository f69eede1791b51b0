package attack_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// One round of five participants, two of them Byzantine, crafting "A
// Little Is Enough" updates against the median. The attackers see the
// three honest updates and their own two; they all send μ − z·σ with
// Baruch et al.'s z for n = 5, f = 2.
func ExampleNew() {
	a, err := attack.New(attack.Config{Name: attack.NameALIE}, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	r := attack.Round{
		Honest: [][]float32{{1, 0}, {2, 0}, {3, 0}},
		Own:    [][]float32{{4, 0}, {5, 0}},
		Rule:   aggregation.Config{Rule: aggregation.NameMedian, F: 2},
		N:      5, F: 2,
		Rng: rand.New(rand.NewPCG(1, 2)),
	}
	crafted, err := a.Craft(r)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("z = %.4f\n", attack.DefaultZ(r.N, r.F))
	for _, u := range crafted {
		fmt.Printf("%.4f\n", u)
	}
	// Output:
	// z = 0.8416
	// [1.6693 0.0000]
	// [1.6693 0.0000]
}

// Backdoor attackers stamp a trigger on half of their rows, relabelled to
// the target class, and boost their update by n/f.
func ExampleBackdoor() {
	a, err := attack.New(attack.Config{Name: attack.NameBackdoor, Target: 1}, 4)
	if err != nil {
		fmt.Println(err)
		return
	}
	b := a.(attack.Backdoor)
	fmt.Println(b.Trigger([]float64{0.1, 0.2, 0.3, 0.4}), "→ class", b.Target())
	up, err := a.Craft(attack.Round{N: 10, F: 2, Own: [][]float32{{0.1, -0.2}, {0, 0.3}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(up)
	// Output:
	// [0.1 3 3 3] → class 1
	// [[0.5 -1] [0 1.5]]
}
