package validation_test

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/fedguard/fedguard/validation"
)

func ExampleCheck() {
	exp, err := validation.ParseExpectations([]byte(`{
	  "version": 1,
	  "label": {"column": "diagnosis", "classes": [
	    {"value": "B", "min_share": 0.3, "max_share": 0.8},
	    {"value": "M", "min_share": 0.2, "max_share": 0.7}]},
	  "ignore": ["id"],
	  "columns": [{"name": "radius", "type": "number", "min": 0, "max": 40, "max_missing": 0}]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	data := "id,radius,diagnosis\n1,12.5,B\n2,41.2,M\n3,18,B\n"
	rep, err := validation.Check(strings.NewReader(data), exp)
	if err != nil {
		fmt.Println(err)
		return
	}
	rep.WriteTable(os.Stdout)
	// Output:
	// SEVERITY  RULE   COLUMN  COUNT  MESSAGE
	// warn      pii    id      -      looks like personal data (identifier: header); ignored, so not trained on
	// error     range  radius  1/3    1 of 3 cells out of range [0, 40] (0 below, 1 above; observed min 12.5, max 41.2)
	// 3 rows, 3 columns: 1 error, 1 warning
}

func ExamplePropose() {
	data := "record,radius,diagnosis\n1,12.5,B\n2,20.5,M\n3,18,B\n4,9.5,B\n"
	exp, err := validation.Propose(strings.NewReader(data), "diagnosis", validation.IgnoreColumns("record"))
	if err != nil {
		fmt.Println(err)
		return
	}
	c := exp.Columns[0]
	fmt.Printf("%s: %s in [%v, %v]\n", c.Name, c.Type, *c.Min, *c.Max)
	for _, cl := range exp.Label.Classes {
		fmt.Printf("class %s: share in [%v, %v]\n", cl.Value, cl.MinShare, cl.MaxShare)
	}

	// A file with personal data is refused, naming the columns but no value.
	pii := "name,email,radius,diagnosis\nAnn de Vries,ann@example.org,12.5,B\nJohn Smith,js@example.com,20.5,M\n"
	_, err = validation.Propose(strings.NewReader(pii), "diagnosis")
	fmt.Println(errors.Is(err, validation.ErrPII))
	fmt.Println(err)
	// Output:
	// radius: number in [8.4, 21.6]
	// class B: share in [0.65, 0.85]
	// class M: share in [0.15, 0.35]
	// true
	// validation: columns look like personal data: "name" (name: header, 2/2 values); "email" (email: header, 2/2 values) (ignore them, or remove them from the file)
}
