package model_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/model"
)

func cnn() model.Spec {
	return model.Spec{Kind: model.Tensors, Classes: 10, Tensors: []model.Tensor{
		{Name: "conv1.weight", Shape: []int{8, 1, 3, 3}},
		{Name: "conv1.bias", Shape: []int{8}},
		{Name: "fc.weight", Shape: []int{10, 200}},
		{Name: "fc.bias", Shape: []int{10}},
		{Name: "scale", Shape: nil},
	}}
}

func TestTensorsSpec(t *testing.T) {
	s := cnn()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.NumParams(), 8*9+8+2000+10+1; got != want {
		t.Errorf("NumParams = %d, want %d", got, want)
	}
	if k, err := model.ParseKind("tensors"); err != nil || k != model.Tensors || k.String() != "tensors" {
		t.Errorf("ParseKind(tensors) = %v, %v", k, err)
	}
	if p := model.Init(s, rand.New(rand.NewPCG(1, 2))); p != nil {
		t.Errorf("Init of a tensor layout = %d values, want nil", len(p))
	}
	params := make([]float32, s.NumParams())
	x, y := [][]float64{{}}, []int{0}
	if _, err := model.Train(s, params, x, y, model.Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 1}, rand.New(rand.NewPCG(1, 2))); !errors.Is(err, model.ErrNotBuiltIn) {
		t.Errorf("Train: %v, want ErrNotBuiltIn", err)
	}
	if _, err := model.Evaluate(s, params, x, y); !errors.Is(err, model.ErrNotBuiltIn) {
		t.Errorf("Evaluate: %v, want ErrNotBuiltIn", err)
	}
	if _, _, err := model.Predict(s, params, nil); !errors.Is(err, model.ErrNotBuiltIn) {
		t.Errorf("Predict: %v, want ErrNotBuiltIn", err)
	}
}

func TestTensorsSpecRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*model.Spec)
		want string
	}{
		{"empty", func(s *model.Spec) { s.Tensors = nil }, "no tensor"},
		{"duplicate", func(s *model.Spec) { s.Tensors[1].Name = "conv1.weight" }, "appears twice"},
		{"unnamed", func(s *model.Spec) { s.Tensors[0].Name = "" }, "name of 0 bytes"},
		{"long name", func(s *model.Spec) { s.Tensors[0].Name = strings.Repeat("x", model.MaxTensorName+1) }, "name of"},
		{"negative", func(s *model.Spec) { s.Tensors[0].Shape = []int{8, -1} }, "negative dimension"},
		{"zero", func(s *model.Spec) { s.Tensors = []model.Tensor{{Name: "a", Shape: []int{0}}} }, "no parameter"},
		{"huge", func(s *model.Spec) { s.Tensors[0].Shape = []int{1 << 20, 1 << 20} }, "exceed MaxParams"},
		{"overflow", func(s *model.Spec) { s.Tensors[0].Shape = []int{1 << 40, 1 << 40, 1 << 40} }, "exceed MaxParams"},
		{"hidden", func(s *model.Spec) { s.Hidden = []int{4} }, "no hidden"},
		{"tensors on mlp", func(s *model.Spec) { s.Kind, s.Features, s.Hidden = model.MLP, 4, []int{3} }, "takes no tensor list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cnn()
			tc.edit(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
