package cli

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

// fuzzModel is a logistic model over features f1, f2 with label y.
func fuzzModel() (servedModel, dataset.Scaling) {
	spec := model.Spec{Kind: model.LogReg, Features: 2, Classes: 2}
	return servedModel{
		spec:   spec,
		config: coordinator.ModelConfig{Kind: "logreg", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"}},
		params: []float32{0.5, -1, 0.25, 2, -0.5, 0.125},
	}, dataset.Scaling{Mean: []float64{1, -2}, Std: []float64{2, 0.5}}
}

// TestScoreCSV: rows are scored in order with the scaling applied, and
// bad input is a clear error.
func TestScoreCSV(t *testing.T) {
	m, sc := fuzzModel()
	var got []prediction
	n, err := scoreCSV(strings.NewReader("f2,id,f1,y\n-2,a,1,B\n0,b,3,M\n"), m, sc, "id", func(p prediction) error {
		got = append(got, p)
		return nil
	})
	if err != nil || n != 2 || len(got) != 2 {
		t.Fatalf("scoreCSV = %d, %v, %v", n, err, got)
	}
	// Row a standardizes to (0, 0): the biases alone decide.
	_, probs, _ := model.Predict(m.spec, m.params, []float64{0, 0})
	if got[0].id != "a" || got[0].label != "B" || math.Abs(got[0].probability-slices.Max(probs)) > 1e-12 {
		t.Errorf("row a = %+v, want id a, label B, probability %v", got[0], slices.Max(probs))
	}
	for _, tc := range []struct{ in, want string }{
		{"", "no header"},
		{"f1,f2\n", "header but no data rows"},
		{"f1,f2\n1,x\n", `column "f2": not a number`},
		{"f1,f2\n1,NaN\n", `column "f2": non-finite value`},
		{"f1,f1,f2\n1,1,1\n", `column "f1" appears twice`},
		{"f1,f2\n1\n", "row 1"},
	} {
		_, err := scoreCSV(strings.NewReader(tc.in), m, sc, "", func(prediction) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("scoreCSV(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzScoreCSV: any input is scored or refused with an error, never a
// panic; every prediction is a class of the model with a probability in
// [0, 1], one per row.
func FuzzScoreCSV(f *testing.F) {
	for _, s := range []string{
		"f1,f2\n1,2\n3,4\n",
		"id,f2,f1,y\nx,1,2,B\ny,-1e3,5e-3,M\n",
		"\ufefff1,f2\n\"1\",\"2\"\n",
		"f1,f2,extra\n1,2,3\n",
		"f1\n1\n",
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "id")
	}
	m, sc := fuzzModel()
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		emitted := 0
		n, err := scoreCSV(bytes.NewReader(data), m, sc, id, func(p prediction) error {
			emitted++
			if !slices.Contains(m.config.Classes, p.class) || !(p.probability >= 0 && p.probability <= 1) {
				return errors.New("bad prediction")
			}
			return nil
		})
		if err != nil && err.Error() == "bad prediction" {
			t.Fatalf("scoreCSV(%q) emitted a bad prediction", data)
		}
		if err == nil && n != emitted {
			t.Fatalf("scoreCSV(%q) = %d rows, emitted %d", data, n, emitted)
		}
	})
}
