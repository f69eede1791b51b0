package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedguard/fedguard/model"
)

func seeded(a, b uint64) *rand.Rand {
	var seed [32]byte
	seed[0], seed[8] = byte(a), byte(b)
	return rand.New(rand.NewChaCha8(seed))
}

func norm(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// TestTrainDPClipping checks the per-example bound: one step with no
// noise, q = 1 and learning rate 1 moves the model by the mean of the
// clipped gradients, so by at most C; with a single row whose gradient
// is far above C, by exactly C.
func TestTrainDPClipping(t *testing.T) {
	spec := model.Spec{Kind: model.MLP, Features: 5, Classes: 3, Hidden: []int{4}}
	init := model.Init(spec, rand.New(rand.NewPCG(1, 2)))
	big := [][]float64{{100, -80, 60, 90, -70}}
	for _, c := range []float64{0.01, 0.5, 2} {
		out, err := model.TrainDP(spec, init, big, []int{1}, model.Plan{Epochs: 1, LearningRate: 1, BatchSize: 1},
			model.DP{Q: 1, Sigma: 0, Clip: c, Rand: seeded(1, 1)})
		if err != nil {
			t.Fatal(err)
		}
		d := make([]float32, len(out))
		for i := range out {
			d[i] = out[i] - init[i]
		}
		if got := norm(d); math.Abs(got-c) > 1e-5*c+1e-6 {
			t.Errorf("C=%v: one row moved the model by %v, want exactly C", c, got)
		}
	}
	// Many rows: the mean of clipped gradients stays within C.
	x, y := synth(200, 5, 3, 7)
	const c = 0.1
	out, err := model.TrainDP(spec, init, x, y, model.Plan{Epochs: 1, LearningRate: 1, BatchSize: 1},
		model.DP{Q: 1, Sigma: 0, Clip: c, Rand: seeded(2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	d := make([]float32, len(out))
	for i := range out {
		d[i] = out[i] - init[i]
	}
	if got := norm(d); got > c*(1+1e-5) {
		t.Errorf("mean of clipped gradients has norm %v > C = %v", got, c)
	}
}

// synth returns n rows of f features with labels in [0, k) from a fixed
// linear rule, so that a model can learn something.
func synth(n, f, k int, seed uint64) ([][]float64, []int) {
	rng := rand.New(rand.NewPCG(seed, 0))
	x := make([][]float64, n)
	y := make([]int, n)
	for i := range x {
		x[i] = make([]float64, f)
		for j := range x[i] {
			x[i][j] = rng.NormFloat64()
		}
		y[i] = int(math.Abs(x[i][0]*3+x[i][1])) % k
	}
	return x, y
}

// TestTrainDPNoiseVariance checks that the noise added to each coordinate
// has standard deviation σ·C before the division by the expected batch
// size: the difference between a noisy and a noise-free step (same data,
// q = 1, so the same gradient) is the noise times −lr/(qN).
func TestTrainDPNoiseVariance(t *testing.T) {
	spec := model.Spec{Kind: model.LogReg, Features: 100, Classes: 10}
	init := model.Init(spec, nil)
	x, y := synth(4, 100, 10, 3)
	plan := model.Plan{Epochs: 1, LearningRate: 0.5, BatchSize: 4}
	const sigma, clip = 1.3, 0.7
	clean, err := model.TrainDP(spec, init, x, y, plan, model.DP{Q: 1, Sigma: 0, Clip: clip, Rand: seeded(3, 0)})
	if err != nil {
		t.Fatal(err)
	}
	noisy, err := model.TrainDP(spec, init, x, y, plan, model.DP{Q: 1, Sigma: sigma, Clip: clip, Rand: seeded(3, 1)})
	if err != nil {
		t.Fatal(err)
	}
	scale := plan.LearningRate / float64(len(x)) // lr/(qN)
	var sum, sumSq float64
	for i := range noisy {
		z := float64(noisy[i]-clean[i]) / -scale
		sum += z
		sumSq += z * z
	}
	k := float64(len(noisy))
	mean := sum / k
	variance := sumSq/k - mean*mean
	want := sigma * sigma * clip * clip
	// The sample variance of k normals has relative standard deviation
	// √(2/k) ≈ 1.4 % here; 6 % is over four of them.
	if math.Abs(variance/want-1) > 0.06 {
		t.Errorf("noise variance %v, want σ²C² = %v (k = %v)", variance, want, k)
	}
	if math.Abs(mean) > 4*sigma*clip/math.Sqrt(k) {
		t.Errorf("noise mean %v, want 0", mean)
	}
}

// TestTrainDPPlainSGD checks that DP-SGD without noise, sampling or
// clipping is full-batch SGD. Train sums the batch's gradients inside one
// matrix product and TrainDP row by row, so the float64 sums may differ in
// the last bits; after rounding to float32 they agree to 1e-6.
func TestTrainDPPlainSGD(t *testing.T) {
	spec := model.Spec{Kind: model.MLP, Features: 5, Classes: 3, Hidden: []int{8}}
	init := model.Init(spec, rand.New(rand.NewPCG(4, 5)))
	x, y := synth(64, 5, 3, 9)
	plan := model.Plan{Epochs: 5, LearningRate: 0.3, BatchSize: len(x), L2: 1e-3}
	want, err := model.Train(spec, init, x, y, plan, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := model.TrainDP(spec, init, x, y, plan, model.DP{Q: 1, Sigma: 0, Clip: math.Inf(1), Rand: seeded(5, 5)})
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range want {
		if got[i] == want[i] {
			same++
		}
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("parameter %d: DP-SGD %v, SGD %v", i, got[i], want[i])
		}
	}
	t.Logf("%d of %d parameters bit-identical", same, len(want))
}

// TestTrainDPSampling checks that Poisson sampling uses about q·N rows per
// step: with clipping at C and lr 1, one step with no noise on rows whose
// gradients all point the same way (all the same row) moves the model by
// C·(sampled rows)/(qN).
func TestTrainDPSampling(t *testing.T) {
	spec := model.Spec{Kind: model.LogReg, Features: 2, Classes: 2}
	init := model.Init(spec, nil)
	const n, q, c = 10000, 0.1, 1.0
	x := make([][]float64, n)
	y := make([]int, n)
	for i := range x {
		x[i] = []float64{50, -50}
	}
	// DPSteps(1, 0.1) = 10 steps; run one epoch with q = 1 to get the
	// per-step reference, then compare total movement over 10 steps.
	out, err := model.TrainDP(spec, init, x, y, model.Plan{Epochs: 1, LearningRate: 1e-3, BatchSize: 1},
		model.DP{Q: q, Sigma: 0, Clip: c, Rand: seeded(6, 6)})
	if err != nil {
		t.Fatal(err)
	}
	d := make([]float32, len(out))
	for i := range out {
		d[i] = out[i] - init[i]
	}
	// Expected movement: 10 steps × lr × C × (sampled/qN) ≈ 10 × 1e-3 × 1
	// while the gradient direction stays clipped (it does: the rows are
	// far from fitted after so small steps). Binomial(1e4, 0.1) over ten
	// steps has relative sd 1 %.
	got := norm(d) / (10 * 1e-3 * c)
	if math.Abs(got-1) > 0.05 {
		t.Errorf("movement ratio %v, want 1 (Poisson batches of q·N rows)", got)
	}
}

func TestDPValidate(t *testing.T) {
	for _, d := range []model.DP{
		{Q: 0, Sigma: 1, Clip: 1}, {Q: 1.5, Sigma: 1, Clip: 1}, {Q: math.NaN(), Sigma: 1, Clip: 1},
		{Q: 0.1, Sigma: -1, Clip: 1}, {Q: 0.1, Sigma: math.Inf(1), Clip: 1}, {Q: 0.1, Sigma: 1, Clip: 0},
		{Q: 0.1, Sigma: 1, Clip: math.NaN()},
	} {
		if err := d.Validate(); err == nil {
			t.Errorf("%+v: no error", d)
		}
	}
	if got := model.DPSteps(3, 0.01); got != 300 {
		t.Errorf("DPSteps(3, 0.01) = %d, want 300", got)
	}
	if got := model.DPSteps(2, 0.3); got != 8 {
		t.Errorf("DPSteps(2, 0.3) = %d, want 8", got)
	}
	if got := model.DPRate(32, 64); got != 0.5 {
		t.Errorf("DPRate(32, 64) = %v", got)
	}
}
