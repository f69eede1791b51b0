package participant

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/model"
)

func TestTrainUpdate(t *testing.T) {
	spec := model.Spec{Kind: model.MLP, Features: 2, Classes: 2, Hidden: []int{3}}
	var x [][]float64
	var y []int
	for i := range 20 {
		x = append(x, []float64{float64(i % 3), float64(i % 5)})
		y = append(y, i%2)
	}
	plan := model.Plan{Epochs: 3, LearningRate: 0.1, BatchSize: 2}
	start := model.Init(spec, rand.New(rand.NewPCG(1, 2)))
	before := slices.Clone(start)

	delta, err := TrainUpdate(spec, start, x, y, plan, RoundRand(1, 2, 3))
	if err != nil {
		t.Fatalf("TrainUpdate: %v", err)
	}
	if !slices.Equal(start, before) {
		t.Errorf("TrainUpdate modified start")
	}
	trained, err := model.Train(spec, start, x, y, plan, RoundRand(1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range delta {
		if want := trained[i] - start[i]; delta[i] != want {
			t.Fatalf("TrainUpdate delta[%d] = %v, want trained − start = %v", i, delta[i], want)
		}
	}
	again, _ := TrainUpdate(spec, start, x, y, plan, RoundRand(1, 2, 4))
	if slices.Equal(again, delta) {
		t.Errorf("TrainUpdate with another round's rng gave the same update")
	}

	if _, err := TrainUpdate(spec, start[1:], x, y, plan, RoundRand(1, 2, 3)); err == nil {
		t.Errorf("TrainUpdate(short start) succeeded")
	}
	plan.LearningRate = 1e300
	if _, err := TrainUpdate(spec, start, x, y, plan, RoundRand(1, 2, 3)); !errors.Is(err, model.ErrDiverged) {
		t.Errorf("TrainUpdate(learning rate 1e300) = %v, want model.ErrDiverged", err)
	}
}
