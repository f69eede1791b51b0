package partition_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/partition"
)

func ExampleSplit() {
	labels := []int{2, 0, 1, 0, 2, 1, 1, 0, 2} // the class of each row
	s, err := partition.Parse("sorted")
	if err != nil {
		fmt.Println(err)
		return
	}
	parts, err := partition.Split(labels, 3, 3, s, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for c, rows := range parts {
		fmt.Println("client", c, "rows", rows)
	}

	s, _ = partition.Parse("dirichlet:0.5")
	parts, _ = partition.Split(labels, 3, 3, s, rand.New(rand.NewPCG(1, 2)))
	n := 0
	for _, rows := range parts {
		n += len(rows)
	}
	fmt.Println(s, "dealt", n, "rows to", len(parts), "clients")

	_, err = partition.Split(labels, 3, 10, s, rand.New(rand.NewPCG(1, 2)))
	fmt.Println(err)
	// Output:
	// client 0 rows [1 3 7]
	// client 1 rows [2 5 6]
	// client 2 rows [0 4 8]
	// dirichlet:0.5 dealt 9 rows to 3 clients
	// partition: invalid input: 9 rows cannot give 10 clients a row each
}

func ExampleParse() {
	for _, in := range []string{"iid", "dirichlet:0.50", "dirichlet:0"} {
		s, err := partition.Parse(in)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: kind %s, alpha %v\n", s, s.Kind, s.Alpha)
	}
	// Output:
	// iid: kind iid, alpha 0
	// dirichlet:0.5: kind dirichlet, alpha 0.5
	// partition: invalid scheme "dirichlet:0": concentration 0 is not a positive finite number
}
