package model_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

// wdbcSplit returns standardized wdbc train and test data from a stratified 80/20
// split, scaled with the training set's statistics only.
func wdbcSplit(t testing.TB, seed uint64) (xtr [][]float64, ytr []int, xte [][]float64, yte []int) {
	t.Helper()
	tab, err := dataset.ReadCSV(bytes.NewReader(wdbc.CSV), dataset.ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		t.Fatal(err)
	}
	train, test := tab.Split(0.2, rand.New(rand.NewPCG(seed, 0)))
	sc, err := dataset.ScalingFrom(train.Stats())
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Standardize(sc); err != nil {
		t.Fatal(err)
	}
	if err := test.Standardize(sc); err != nil {
		t.Fatal(err)
	}
	if ytr, err = train.Encode(wdbc.Classes()); err != nil {
		t.Fatal(err)
	}
	if yte, err = test.Encode(wdbc.Classes()); err != nil {
		t.Fatal(err)
	}
	return train.X, ytr, test.X, yte
}

func TestTrainWDBC(t *testing.T) {
	xtr, ytr, xte, yte := wdbcSplit(t, 42)
	tests := []struct {
		name    string
		spec    model.Spec
		plan    model.Plan
		minAcc  float64
		maxLoss float64
	}{
		{"logreg", model.Spec{Kind: model.LogReg, Features: 30, Classes: 2},
			model.Plan{Epochs: 50, LearningRate: 0.05, BatchSize: 32, L2: 1e-3}, 0.95, 0.15},
		{"mlp", model.Spec{Kind: model.MLP, Features: 30, Classes: 2, Hidden: []int{16}},
			model.Plan{Epochs: 50, LearningRate: 0.05, BatchSize: 32, L2: 1e-3}, 0.94, 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			init := model.Init(tt.spec, rand.New(rand.NewPCG(1, 2)))
			before := slices.Clone(init)
			params, err := model.Train(tt.spec, init, xtr, ytr, tt.plan, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(init, before) {
				t.Errorf("Train modified its params argument")
			}
			start, _ := model.Evaluate(tt.spec, init, xtr, ytr)
			tr, err := model.Evaluate(tt.spec, params, xtr, ytr)
			if err != nil {
				t.Fatal(err)
			}
			te, err := model.Evaluate(tt.spec, params, xte, yte)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: train loss %.4f → %.4f, accuracy %.4f; test loss %.4f, accuracy %.4f (%d rows)",
				tt.name, start.Loss, tr.Loss, tr.Accuracy, te.Loss, te.Accuracy, te.Count)
			if te.Count != 113 || te.Accuracy < tt.minAcc || te.Loss > tt.maxLoss {
				t.Errorf("%s test metrics %+v, want count 113 (71 B + 42 M), accuracy >= %v, loss <= %v", tt.name, te, tt.minAcc, tt.maxLoss)
			}
			if tr.Loss >= start.Loss {
				t.Errorf("training did not lower the loss: %v → %v", start.Loss, tr.Loss)
			}

			// Deterministic for the seed, different for another.
			again, _ := model.Train(tt.spec, init, xtr, ytr, tt.plan, rand.New(rand.NewPCG(3, 4)))
			if model.Digest(again) != model.Digest(params) {
				t.Errorf("Train with the same seed gave different parameters")
			}
			other, _ := model.Train(tt.spec, init, xtr, ytr, tt.plan, rand.New(rand.NewPCG(5, 6)))
			if model.Digest(other) == model.Digest(params) {
				t.Errorf("Train with another seed gave identical parameters")
			}
		})
	}
}

// TestTrainWDBCSplits checks the accuracy is not luck of one split.
func TestTrainWDBCSplits(t *testing.T) {
	if testing.Short() {
		t.Skip("long (trains on several WDBC splits): skipped by -short; `make test` runs it")
	}
	s := model.Spec{Kind: model.LogReg, Features: 30, Classes: 2}
	p := model.Plan{Epochs: 30, LearningRate: 0.05, BatchSize: 32, L2: 1e-3}
	sum := 0.0
	const splits = 5
	for seed := range uint64(splits) {
		xtr, ytr, xte, yte := wdbcSplit(t, 100+seed)
		params, err := model.Train(s, model.Init(s, nil), xtr, ytr, p, rand.New(rand.NewPCG(seed, 1)))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := model.Evaluate(s, params, xte, yte)
		sum += m.Accuracy
	}
	t.Logf("logreg mean test accuracy over %d splits: %.4f", splits, sum/splits)
	if sum/splits < 0.95 {
		t.Errorf("mean test accuracy %.4f, want >= 0.95", sum/splits)
	}
}
