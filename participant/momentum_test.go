package participant_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// momentumRounds trains tr for rounds rounds, each from its own starting
// model, and returns the updates it sent.
func momentumRounds(t *testing.T, tr *participant.LocalTrainer, starts [][]float32) [][]float32 {
	t.Helper()
	spec := testSpec()
	if _, err := tr.Prepare(spec); err != nil {
		t.Fatal(err)
	}
	k := len(spec.GetFeatures())
	sc := &fedguardv1.FeatureScaling{Mean: make([]float64, k), Std: slices.Repeat([]float64{1}, k)}
	var out [][]float32
	for r, start := range starts {
		a := &fedguardv1.RoundAssignment{Round: uint64(r + 1), Seed: 77, Scaling: sc,
			Plan: &fedguardv1.TrainingPlan{LocalEpochs: 1, LearningRate: 0.1, BatchSize: 8}}
		res, err := tr.Train(context.Background(), a, start)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Delta)
	}
	return out
}

// TestLocalTrainerMomentum: with momentum β the trainer sends, round after
// round, the recursion of its plain updates u (those of the same trainer
// without momentum, from the same starting models): m₁ = (1−β)u₁,
// m₂ = (1−β)u₂ + βm₁ (ema) and m₁ = u₁, m₂ = βm₁ + u₂ (heavy-ball), in
// float32 as model.Momentum computes. β = 0 sends the plain updates, bit
// for bit.
func TestLocalTrainerMomentum(t *testing.T) {
	n := testSpec().GetNumParams()
	starts := make([][]float32, 3)
	for r := range starts {
		starts[r] = make([]float32, n)
		for j := range starts[r] {
			starts[r][j] = float32(r+1) * 0.01 * float32(j%5-2)
		}
	}
	plain := momentumRounds(t, &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Seed: 3}, starts)
	zero := momentumRounds(t, &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Seed: 3, MomentumStyle: model.MomentumHeavyBall}, starts)
	for r := range plain {
		if !slices.Equal(f32bits(plain[r]), f32bits(zero[r])) {
			t.Fatalf("β = 0, round %d: update differs from the trainer without momentum", r+1)
		}
	}
	const beta = 0.9
	for _, style := range []string{model.MomentumEMA, model.MomentumHeavyBall} {
		got := momentumRounds(t, &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Seed: 3, Momentum: beta, MomentumStyle: style}, starts)
		m := make([]float32, n)
		b := float32(beta)
		for r, u := range plain {
			for j, v := range u {
				if style == model.MomentumHeavyBall {
					m[j] = b*m[j] + v
				} else {
					m[j] = (1-b)*v + b*m[j]
				}
			}
			if !slices.Equal(f32bits(got[r]), f32bits(m)) {
				t.Fatalf("%s round %d: sent %v…, want the momentum %v…", style, r+1, got[r][:3], m[:3])
			}
			if r > 0 && slices.Equal(f32bits(got[r]), f32bits(u)) {
				t.Fatalf("%s round %d: momentum changed nothing", style, r+1)
			}
		}
	}
}

func f32bits(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = math.Float32bits(x)
	}
	return out
}
