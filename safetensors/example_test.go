package safetensors_test

import (
	"bytes"
	"fmt"

	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// A built-in model's flat parameter vector goes out as named tensors and
// comes back as the same vector: what an external trainer exchanges with
// the agent each round.
func Example() {
	spec := model.Spec{Kind: model.LogReg, Features: 3, Classes: 2}
	layout, err := safetensors.SpecLayout(spec)
	if err != nil {
		panic(err)
	}
	params := []float32{0.5, -1, 2, 0, 0.25, 1, -0.5, 0.125}
	var file bytes.Buffer
	if err := safetensors.Write(&file, layout, params, map[string]string{"round": "7"}); err != nil {
		panic(err)
	}

	r, err := safetensors.Open(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		panic(err)
	}
	back := make([]float32, layout.NumParams())
	if err := r.ReadInto(layout, back); err != nil {
		panic(err)
	}
	d := layout.Digest()
	fmt.Println(r.Layout())
	fmt.Println(back, r.Metadata()["round"])
	fmt.Printf("layout sha256:%x…\n", d[:8])
	// Output:
	// layers.1.weight[2 3] layers.1.bias[2]
	// [0.5 -1 2 0 0.25 1 -0.5 0.125] 7
	// layout sha256:895d792a958f0d6a…
}
