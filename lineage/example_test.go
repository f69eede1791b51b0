package lineage_test

import (
	"crypto/sha256"
	"fmt"

	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
)

// A hospital's data version: the same file, columns and rows give the same
// version; one row less gives another.
func ExampleSalt_Version() {
	salt := lineage.SaltFor([]byte("the federation CA certificate, DER"))
	file := sha256.Sum256([]byte("radius,texture,diagnosis\n14.1,19.3,B\n20.6,29.3,M\n"))
	columns := []string{"radius", "texture", "diagnosis"}
	v1, _ := salt.Version(lineage.Description{FileSHA256: file, Columns: columns, Rows: []int{0, 1}})
	again, _ := salt.Version(lineage.Description{FileSHA256: file, Columns: columns, Rows: []int{0, 1}})
	fewer, _ := salt.Version(lineage.Description{FileSHA256: file, Columns: columns, Rows: []int{1}})
	fmt.Println(v1 == again, v1 == fewer)
	// Output: true false
}

// Trace lists which data versions trained each model version.
func ExampleTrace() {
	a1, a2 := fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2)
	rounds := []manifest.Round{
		{Round: 1, ModelSHA256: fmt.Sprintf("%064x", 11), Included: []manifest.Contributor{{Name: "hospital-a", DataSHA256: a1}}},
		{Round: 2, ModelSHA256: fmt.Sprintf("%064x", 12), Included: []manifest.Contributor{{Name: "hospital-a", DataSHA256: a2}}},
	}
	trace, _ := lineage.Trace(rounds, 2)
	for _, mv := range trace {
		fmt.Println(mv.Round, mv.Hospitals[0].Name, mv.Hospitals[0].Change)
	}
	// Output:
	// 1 hospital-a first
	// 2 hospital-a changed
}
