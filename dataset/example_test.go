package dataset_test

import (
	"fmt"
	"strings"

	"github.com/fedguard/fedguard/dataset"
)

func ExampleReadCSV() {
	const file = `id,age,tumour_mm,diagnosis
1,54,12.5,B
2,61,31.0,M
3,47,8.25,B
`
	t, err := dataset.ReadCSV(strings.NewReader(file), dataset.ReadOptions{
		Label:  "diagnosis",
		Ignore: []string{"id"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Features, t.Len(), "rows")
	fmt.Println(t.X[1], t.Labels[1])

	_, err = dataset.ReadCSV(strings.NewReader("age,diagnosis\n54,B\nfifty,M\n"),
		dataset.ReadOptions{Label: "diagnosis"})
	fmt.Println(err)
	// Output:
	// [age tumour_mm] 3 rows
	// [61 31] M
	// dataset: line 3: column "age": not a number (value "fifty")
}
