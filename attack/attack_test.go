package attack_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// The hand-made round: two honest updates and one Byzantine participant's
// own update, so the benign set is
//
//	b1 = [1 2 0 -1], b2 = [3 2 0 -3], b3 = [2 2 0 -2] (own),
//	μ = [2 2 0 -2], σ (m−1 denominator) = [1 0 0 1].
func handRound() attack.Round {
	return attack.Round{
		Honest: [][]float32{{1, 2, 0, -1}, {3, 2, 0, -3}},
		Own:    [][]float32{{2, 2, 0, -2}},
		N:      3, F: 1,
		Rng: rand.New(rand.NewPCG(1, 2)),
	}
}

func mustNew(t testing.TB, c attack.Config, features int) attack.Attack {
	t.Helper()
	a, err := attack.New(c, features)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return a
}

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-float64(b[i])) > tol*max(1, math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

func TestCraftHandMade(t *testing.T) {
	s3 := math.Sqrt(3)
	z0 := 0.43072729929545733 // Φ⁻¹(2/3): n = 3, f = 1, s = ⌊3/2+1⌋−1 = 1
	g := math.Sqrt(2.0 / 3)
	lin := 8 / math.Sqrt(12)
	u := 1 - (-lin+math.Sqrt(lin*lin+24))/2/math.Sqrt(12) // 1 − γ/‖μ‖ for "unit"
	for _, tc := range []struct {
		c    attack.Config
		want []float32
	}{
		{attack.Config{Name: attack.NameNone}, []float32{2, 2, 0, -2}},
		{attack.Config{}, []float32{2, 2, 0, -2}},
		{attack.Config{Name: attack.NameLabelFlip}, []float32{2, 2, 0, -2}},
		{attack.Config{Name: attack.NameSignFlip}, []float32{-2, -2, 0, 2}},
		// μ − zσ
		{attack.Config{Name: attack.NameALIE, Z: 1.5}, []float32{0.5, 2, 0, -3.5}},
		{attack.Config{Name: attack.NameALIE, Z: -1.5}, []float32{3.5, 2, 0, -0.5}},
		// The gradients' sign: μ + zσ of the updates, for Z and the default z.
		{attack.Config{Name: attack.NameALIE, Z: 1.5, ZSign: attack.ZSignGradients}, []float32{3.5, 2, 0, -0.5}},
		{attack.Config{Name: attack.NameALIE, Z: 1.5, ZSign: attack.ZSignUpdates}, []float32{0.5, 2, 0, -3.5}},
		{attack.Config{Name: attack.NameALIE, ZSign: attack.ZSignGradients}, []float32{float32(2 + z0), 2, 0, float32(-2 + z0)}},
		{attack.Config{Name: attack.NameALIE}, []float32{float32(2 - z0), 2, 0, float32(-2 - z0)}},
		// The bucketing code's z for n = 3, f = 1: Φ⁻¹((2−1)/2) = 0.
		{attack.Config{Name: attack.NameALIE, ZRule: attack.ZRuleBucketing}, []float32{2, 2, 0, -2}},
		// σ over the two honest updates only: √2 instead of 1.
		{attack.Config{Name: attack.NameALIE, Z: 1.5, HonestStats: true}, []float32{float32(2 - 1.5*math.Sqrt2), 2, 0, float32(-2 - 1.5*math.Sqrt2)}},
		{attack.Config{Name: attack.NameALIE, Z: 1.5, HonestStats: true, OwnOnly: true}, []float32{2, 2, 0, -2}},
		// −εμ
		{attack.Config{Name: attack.NameIPM}, []float32{-0.2, -0.2, 0, 0.2}},
		{attack.Config{Name: attack.NameIPM, Epsilon: 100}, []float32{-200, -200, 0, 200}},
		// μ − γσ: distances² to b1, b2, b3 are 2+2γ², 2+2γ², 2γ²; the
		// largest benign one is ‖b1−b2‖² = 8, so γ = √3.
		{attack.Config{Name: attack.NameMinMax}, []float32{float32(2 - s3), 2, 0, float32(-2 - s3)}},
		// Σ = 4+6γ² ≤ max(10, 10, 4) gives γ = 1.
		{attack.Config{Name: attack.NameMinSum}, []float32{1, 2, 0, -3}},
		// p = −sign(μ) = [−1 −1 0 1], ‖p‖² = 3: Σ = 4 + 3·3γ² (the cross
		// terms cancel as Σ(μ − bᵢ) = 0) ≤ 10 gives γ = √(2/3).
		{attack.Config{Name: attack.NameMinSum, Perturbation: "sign"}, []float32{float32(2 - g), float32(2 - g), 0, float32(-2 + g)}},
		// p = −μ/‖μ‖ = −μ/√12, ⟨μ−b2, p⟩ = 4/√12 (b2 is the far side):
		// 2 + 2γ·4/√12 + γ² ≤ 8, γ = (−lin + √(lin² + 24))/2 with lin = 8/√12,
		// and μ + γp = μ·(1 − γ/√12).
		{attack.Config{Name: attack.NameMinMax, Perturbation: "unit"}, []float32{float32(2 * u), float32(2 * u), 0, float32(-2 * u)}},
		{attack.Config{Name: attack.NameBackdoor}, []float32{6, 6, 0, -6}},
		{attack.Config{Name: attack.NameBackdoor, Scale: 0.5}, []float32{1, 1, 0, -1}},
	} {
		t.Run(fmt.Sprintf("%s%+v", tc.c.Name, tc.c), func(t *testing.T) {
			a := mustNew(t, tc.c, 4)
			got, err := a.Craft(handRound())
			if err != nil {
				t.Fatalf("Craft = %v", err)
			}
			if len(got) != 1 || !near(got[0], tc.want, 1e-5) {
				t.Errorf("Craft = %v, want [%v]", got, tc.want)
			}
		})
	}
}

// The min-sum update with the sign perturbation meets its constraint with
// equality (γ is maximal): Σᵢ‖mal − bᵢ‖² = max over benign of their sums, 10.
func TestMinSumSignConstraint(t *testing.T) {
	r := handRound()
	got, err := mustNew(t, attack.Config{Name: attack.NameMinSum, Perturbation: "sign"}, 4).Craft(r)
	if err != nil {
		t.Fatal(err)
	}
	benign := append(slices.Clone(r.Honest), r.Own...)
	var sum float64
	for _, b := range benign {
		sum += sq(got[0], b)
	}
	if math.Abs(sum-10) > 1e-4 {
		t.Errorf("Σ‖mal − bᵢ‖² = %v, want the threshold 10", sum)
	}
}

func sq(x, y []float32) float64 {
	var s float64
	for i := range x {
		e := float64(x[i]) - float64(y[i])
		s += e * e
	}
	return s
}

func TestFangTrim(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		// wmin = [1 2 0 -3], wmax = [3 2 0 -1], s = sign(μ) = [+ + 0 −].
		r := handRound()
		r.Honest = append(r.Honest, []float32{2, 2, 0, -2}, []float32{2, 2, 0, -2})
		r.Own = append(r.Own, []float32{2, 2, 0, -2})
		r.N, r.F = 6, 2
		got, err := mustNew(t, attack.Config{Name: attack.NameFangTrim}, 4).Craft(r)
		if err != nil {
			t.Fatal(err)
		}
		bounds := [][2]float32{{0.5, 1}, {1, 2}, {0, 0}, {-1, -0.5}}
		checkBounds(t, got, 2, bounds)
	})
	t.Run("partial", func(t *testing.T) {
		// OwnOnly over b1, b2, b3: μ ∓ [3σ, 4σ] against sign(μ).
		r := handRound()
		r.Own = append(slices.Clone(r.Honest), r.Own...)
		r.N, r.F = 3, 3
		r.Honest = [][]float32{} // N−F = 0
		got, err := mustNew(t, attack.Config{Name: attack.NameFangTrim, OwnOnly: true}, 4).Craft(r)
		if err != nil {
			t.Fatal(err)
		}
		checkBounds(t, got, 3, [][2]float32{{-2, -1}, {2, 2}, {0, 0}, {1, 2}})
	})
}

func checkBounds(t *testing.T, got [][]float32, f int, bounds [][2]float32) {
	t.Helper()
	if len(got) != f {
		t.Fatalf("Craft returned %d updates, want %d", len(got), f)
	}
	for i, w := range got {
		for j, x := range w {
			if x < bounds[j][0] || x > bounds[j][1] {
				t.Errorf("update %d coordinate %d = %v, want in %v", i, j, x, bounds[j])
			}
		}
	}
	if f > 1 && slices.Equal(got[0], got[1]) {
		t.Errorf("attackers drew the same values %v", got[0])
	}
}

func TestFangKrumIsSelected(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const d, honest, f = 20, 8, 3
	r := attack.Round{N: honest + f, F: f, Rule: aggregation.Config{Rule: "krum", F: f}, Rng: rng}
	gen := func() []float32 {
		v := make([]float32, d)
		for j := range v {
			v[j] = float32(0.1 + rng.NormFloat64())
		}
		return v
	}
	for range honest {
		r.Honest = append(r.Honest, gen())
	}
	for range f {
		r.Own = append(r.Own, gen())
	}
	mal, err := mustNew(t, attack.Config{Name: attack.NameFangKrum}, d).Craft(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(mal) != f {
		t.Fatalf("Craft returned %d updates, want %d", len(mal), f)
	}
	if slices.Equal(mal[0], make([]float32, d)) {
		t.Fatalf("λ fell below the threshold: %v", mal[0])
	}
	// −λ·sign(μ): every coordinate has the same magnitude.
	for j, x := range mal[0] {
		if math.Abs(float64(x)) != math.Abs(float64(mal[0][0])) {
			t.Fatalf("coordinate %d = %v, not ±λ = ±%v", j, x, math.Abs(float64(mal[0][0])))
		}
	}
	var ups []aggregation.Update
	for i, v := range r.Honest {
		ups = append(ups, aggregation.Update{ID: fmt.Sprintf("h%d", i), Delta: v, Samples: 1})
	}
	for i, v := range mal {
		ups = append(ups, aggregation.Update{ID: fmt.Sprintf("m%d", i), Delta: v, Samples: 1})
	}
	rule, err := aggregation.New(r.Rule)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, d)
	rep, err := rule.Aggregate(dst, ups)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dst, mal[0]) {
		for _, e := range rep.Entries {
			t.Logf("%s score %v selected %v", e.ID, e.Score, e.Selected)
		}
		t.Errorf("Krum picked %v, want the crafted %v", dst, mal[0])
	}
}

func TestDefaultZ(t *testing.T) {
	for _, tc := range []struct {
		n, f int
		want float64
	}{
		// s = ⌊50/2+1⌋ − 10 = 16, Φ⁻¹((50−16)/50) = Φ⁻¹(0.68).
		{50, 10, 0.46769879911450835},
		{3, 1, 0.43072729929545733},
		// s = 26 − 0 = 26 > n/2: z would be negative.
		{50, 0, 0},
		// Byzantine majority: s clamped to 1, Φ⁻¹(49/50).
		{50, 30, 2.053748910631823},
		{1, 1, 0},
		{0, 0, 0},
		{2, -5, 0},
	} {
		if got := attack.DefaultZ(tc.n, tc.f); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("DefaultZ(%d, %d) = %v, want %v", tc.n, tc.f, got, tc.want)
		}
	}
}

func TestDefaultZFor(t *testing.T) {
	for _, tc := range []struct {
		rule string
		n, f int
		want float64
	}{
		{"", 25, 5, 0.46769879911450835},
		{attack.ZRuleBaruch, 25, 5, 0.46769879911450835},
		// s = 8, Φ⁻¹((25−5−8)/(25−5)) = Φ⁻¹(0.6), the bucketing paper's
		// code's z for its n = 25, f = 5 experiments.
		{attack.ZRuleBucketing, 25, 5, 0.2533471031357998},
		{attack.ZRuleBucketing, 3, 1, 0},
		{attack.ZRuleBucketing, 5, 5, 0},
	} {
		if got := attack.DefaultZFor(tc.rule, tc.n, tc.f); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("DefaultZFor(%q, %d, %d) = %v, want %v", tc.rule, tc.n, tc.f, got, tc.want)
		}
	}
}

// TestALIEZFollowsRound checks that ALIE without Z takes its z from the
// round's own n and f, under either sign: a preset that mirrors the
// bucketing paper's code (ZRuleBucketing, ZSignGradients) keeps that
// code's formula when a run changes the number of clients or attackers.
func TestALIEZFollowsRound(t *testing.T) {
	c := attack.Config{Name: attack.NameALIE, ZRule: attack.ZRuleBucketing, ZSign: attack.ZSignGradients, HonestStats: true}
	for _, tc := range []struct{ n, f int }{{25, 5}, {30, 5}, {25, 8}, {51, 12}} {
		r := handRound()
		r.N, r.F = tc.n, tc.f
		r.Own = slices.Repeat(r.Own, tc.f)
		got, err := mustNew(t, c, 4).Craft(r)
		if err != nil {
			t.Fatal(err)
		}
		// μ = [2 2 0 −2], σ = [√2 0 0 √2] over the two honest updates.
		z := attack.DefaultZFor(attack.ZRuleBucketing, tc.n, tc.f)
		if z == 0 {
			t.Fatalf("DefaultZFor(bucketing, %d, %d) = 0: pick n and f with a z", tc.n, tc.f)
		}
		want := []float32{float32(2 + z*math.Sqrt2), 2, 0, float32(-2 + z*math.Sqrt2)}
		if len(got) != tc.f || !near(got[0], want, 1e-6) {
			t.Errorf("n = %d, f = %d: Craft = %v, want %d copies of %v (z = %v)", tc.n, tc.f, got, tc.f, want, z)
		}
	}
}

func TestLabelFlip(t *testing.T) {
	a := mustNew(t, attack.Config{Name: attack.NameLabelFlip}, 2)
	x := [][]float64{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}}
	y := []int{0, 3, 9, 12, -1}
	px, py := a.Poison(x, y, 10, nil)
	if want := []int{9, 6, 0, 12, -1}; !slices.Equal(py, want) {
		t.Errorf("Poison labels = %v, want %v", py, want)
	}
	if want := []int{0, 3, 9, 12, -1}; !slices.Equal(y, want) {
		t.Errorf("Poison changed its input labels to %v", y)
	}
	for i := range x {
		if !slices.Equal(px[i], x[i]) {
			t.Errorf("Poison changed row %d to %v", i, px[i])
		}
	}
	// Model poisoning attacks keep the rows.
	_, py = mustNew(t, attack.Config{Name: attack.NameIPM}, 2).Poison(x, y, 10, nil)
	if !slices.Equal(py, y) {
		t.Errorf("ipm Poison labels = %v, want %v", py, y)
	}
}

func TestBackdoorTrigger(t *testing.T) {
	a := mustNew(t, attack.Config{Name: attack.NameBackdoor, Target: 7}, 784).(attack.Backdoor)
	if a.Target() != 7 {
		t.Errorf("Target() = %d, want 7", a.Target())
	}
	x := make([]float64, 784)
	got := a.Trigger(x)
	for i, v := range got {
		r, c := i/28, i%28
		want := 0.0
		if r >= 24 && c >= 24 {
			want = 1
		}
		if v != want {
			t.Fatalf("Trigger pixel (%d,%d) = %v, want %v", r, c, v, want)
		}
	}
	if slices.ContainsFunc(x, func(v float64) bool { return v != 0 }) {
		t.Error("Trigger changed its input")
	}
	for _, tc := range []struct {
		features int
		x, want  []float64
	}{
		{5, []float64{1, 2, 3, 4, 5}, []float64{1, 2, 3, 3, 3}},
		{2, []float64{-1, -2}, []float64{3, 3}},
		{30, make([]float64, 30), append(make([]float64, 27), 3, 3, 3)},
	} {
		b := mustNew(t, attack.Config{Name: attack.NameBackdoor}, tc.features).(attack.Backdoor)
		if got := b.Trigger(tc.x); !slices.Equal(got, tc.want) {
			t.Errorf("Trigger(%v) = %v, want %v", tc.x, got, tc.want)
		}
		if b.Target() != 0 {
			t.Errorf("default Target() = %d, want 0", b.Target())
		}
	}
}

func TestBackdoorPoison(t *testing.T) {
	a := mustNew(t, attack.Config{Name: attack.NameBackdoor, Target: 2}, 3).(attack.Backdoor)
	const n = 9
	x := make([][]float64, n)
	y := make([]int, n)
	for i := range x {
		x[i] = []float64{float64(i), 0, 0}
		y[i] = 1
	}
	px, py := a.Poison(x, y, 10, rand.New(rand.NewPCG(3, 4)))
	stamped := 0
	for i := range px {
		switch {
		case slices.Equal(px[i], a.Trigger(x[i])) && py[i] == 2:
			stamped++
		case slices.Equal(px[i], x[i]) && py[i] == 1:
		default:
			t.Errorf("row %d = %v label %d: neither clean nor stamped", i, px[i], py[i])
		}
		if x[i][1] != 0 || y[i] != 1 {
			t.Errorf("Poison changed input row %d", i)
		}
	}
	if want := 5; stamped != want { // ⌈0.5·9⌉
		t.Errorf("Poison stamped %d rows, want %d", stamped, want)
	}
	// Deterministic given the generator.
	qx, qy := a.Poison(x, y, 10, rand.New(rand.NewPCG(3, 4)))
	for i := range px {
		if !slices.Equal(px[i], qx[i]) || py[i] != qy[i] {
			t.Errorf("row %d differs between two runs with the same seed", i)
		}
	}
	// A target that is not a class: nothing changes.
	_, py = a.Poison(x, y, 2, nil)
	if !slices.Equal(py, y) {
		t.Errorf("Poison with target ≥ classes relabelled: %v", py)
	}
}

func TestBackdoorScale(t *testing.T) {
	r := attack.Round{N: 10, F: 2, Own: [][]float32{{1, -1}, {0.5, 2}}}
	got, err := mustNew(t, attack.Config{Name: attack.NameBackdoor}, 2).Craft(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]float32{{5, -5}, {2.5, 10}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Craft = %v, want %v (scale n/f = 5)", got, want)
	}
}

func TestDeterminism(t *testing.T) {
	for _, name := range attack.Names {
		t.Run(name, func(t *testing.T) {
			a := mustNew(t, attack.Config{Name: name}, 4)
			run := func() [][]float32 {
				r := handRound()
				r.Rng = rand.New(rand.NewPCG(9, 9))
				got, err := a.Craft(r)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			if x, y := run(), run(); !slices.EqualFunc(x, y, slices.Equal) {
				t.Errorf("two runs with the same seed: %v and %v", x, y)
			}
		})
	}
}

// Every attack returns exactly F finite vectors of the model's length on
// edge cases, and never changes its inputs.
func TestEdgeCases(t *testing.T) {
	huge := float32(3e38)
	rounds := map[string]attack.Round{
		"no attackers":       {N: 3, Honest: [][]float32{{1}, {2}, {3}}},
		"nobody":             {},
		"one own only":       {N: 1, F: 1, Own: [][]float32{{1, -2, 3}}},
		"one honest one own": {N: 2, F: 1, Honest: [][]float32{{1, 2}}, Own: [][]float32{{1, 2}}},
		"all equal":          {N: 5, F: 2, Honest: [][]float32{{1, 1}, {1, 1}, {1, 1}}, Own: [][]float32{{1, 1}, {1, 1}}},
		"zeros":              {N: 4, F: 2, Honest: [][]float32{{0, 0}, {0, 0}}, Own: [][]float32{{0, 0}, {0, 0}}},
		"empty model":        {N: 3, F: 1, Honest: [][]float32{{}, {}}, Own: [][]float32{{}}},
		"huge":               {N: 3, F: 1, Honest: [][]float32{{huge, -huge}, {-huge, huge}}, Own: [][]float32{{huge, huge}}},
		"byzantine majority": {N: 4, F: 3, Honest: [][]float32{{1, 2}}, Own: [][]float32{{1, 0}, {0, 1}, {2, 2}}},
	}
	for name, r := range rounds {
		for _, an := range attack.Names {
			for _, ownOnly := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/own=%v", name, an, ownOnly), func(t *testing.T) {
					r := r
					r.Rng = rand.New(rand.NewPCG(1, 1))
					before := fmt.Sprint(r.Honest, r.Own)
					got, err := mustNew(t, attack.Config{Name: an, OwnOnly: ownOnly}, 2).Craft(r)
					if err != nil {
						t.Fatalf("Craft = %v", err)
					}
					if got == nil || len(got) != r.F {
						t.Fatalf("Craft returned %d updates (nil %v), want %d", len(got), got == nil, r.F)
					}
					d := 0
					if len(r.Own) > 0 {
						d = len(r.Own[0])
					}
					for i, v := range got {
						if len(v) != d {
							t.Errorf("update %d has %d parameters, want %d", i, len(v), d)
						}
						for _, x := range v {
							if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
								t.Errorf("update %d = %v is not finite", i, v)
								break
							}
						}
					}
					if after := fmt.Sprint(r.Honest, r.Own); after != before {
						t.Errorf("Craft changed its inputs: %s, was %s", after, before)
					}
				})
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		c        attack.Config
		features int
		want     error
	}{
		{attack.Config{Name: "flip"}, 4, attack.ErrUnknown},
		{attack.Config{Name: "IPM"}, 4, attack.ErrUnknown},
		{attack.Config{Name: attack.NameGaussian, Sigma: -1}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameGaussian, Sigma: math.Inf(1)}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameIPM, Epsilon: -0.1}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameIPM, Epsilon: math.NaN()}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameALIE, Z: math.NaN()}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameALIE, ZRule: "xie"}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameIPM, ZRule: attack.ZRuleBucketing}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameALIE, ZSign: "grad"}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameIPM, ZSign: attack.ZSignGradients}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameMinMax, Perturbation: "gauss"}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameBackdoor, Scale: -2}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameBackdoor, Target: -1}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameBackdoor}, 0, attack.ErrConfig},
		{attack.Config{Name: attack.NameNone}, -1, attack.ErrConfig},
		// Parameters of another attack.
		{attack.Config{Name: attack.NameIPM, Sigma: 1}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameLabelFlip, Target: 3}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameALIE, Perturbation: "std"}, 4, attack.ErrConfig},
		{attack.Config{Name: attack.NameSignFlip, Scale: 2}, 4, attack.ErrConfig},
	} {
		if _, err := attack.New(tc.c, tc.features); !errors.Is(err, tc.want) {
			t.Errorf("New(%+v, %d) = %v, want %v", tc.c, tc.features, err, tc.want)
		}
	}
	for _, name := range attack.Names {
		a, err := attack.New(attack.Config{Name: name}, 784)
		if err != nil || a.Name() != name {
			t.Errorf("New(%q) = %v, %v; want the attack", name, a, err)
		}
	}
}

func TestCraftErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		attack string
		r      attack.Round
	}{
		"F > N":          {attack.NameNone, attack.Round{N: 1, F: 2, Own: [][]float32{{1}, {1}}}},
		"negative N":     {attack.NameNone, attack.Round{N: -1}},
		"own count":      {attack.NameIPM, attack.Round{N: 3, F: 2, Own: [][]float32{{1}}}},
		"too many":       {attack.NameIPM, attack.Round{N: 2, F: 1, Own: [][]float32{{1}}, Honest: [][]float32{{1}, {2}}}},
		"ragged":         {attack.NameALIE, attack.Round{N: 3, F: 1, Own: [][]float32{{1, 2}}, Honest: [][]float32{{1}, {2, 3}}}},
		"global length":  {attack.NameMinMax, attack.Round{N: 1, F: 1, Own: [][]float32{{1, 2}}, Global: []float32{0}}},
		"NaN":            {attack.NameSignFlip, attack.Round{N: 2, F: 1, Own: [][]float32{{1}}, Honest: [][]float32{{float32(math.NaN())}}}},
		"Inf":            {attack.NameFangKrum, attack.Round{N: 1, F: 1, Own: [][]float32{{float32(math.Inf(-1))}}}},
		"gaussian nil":   {attack.NameGaussian, attack.Round{N: 1, F: 1, Own: [][]float32{{1}}}},
		"fang-trim nil":  {attack.NameFangTrim, attack.Round{N: 1, F: 1, Own: [][]float32{{1}}}},
		"backdoor count": {attack.NameBackdoor, attack.Round{N: 1, F: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := mustNew(t, attack.Config{Name: tc.attack}, 2).Craft(tc.r)
			if !errors.Is(err, attack.ErrRound) {
				t.Errorf("Craft = %v, want %v", err, attack.ErrRound)
			}
		})
	}
}
