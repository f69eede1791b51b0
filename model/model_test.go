package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestNumParams(t *testing.T) {
	tests := []struct {
		s    Spec
		want int
	}{
		{Spec{Kind: LogReg, Features: 30, Classes: 2}, 30*2 + 2},
		{Spec{Kind: LogReg, Features: 784, Classes: 10}, 7850},
		{Spec{Kind: MLP, Features: 30, Classes: 2, Hidden: []int{16}}, 30*16 + 16 + 16*2 + 2},
		{Spec{Kind: MLP, Features: 3, Classes: 3, Hidden: []int{4, 5}}, 3*4 + 4 + 4*5 + 5 + 5*3 + 3},
		{Spec{Kind: MLP, Features: 784, Classes: 10, Hidden: []int{128, 64}}, 784*128 + 128 + 128*64 + 64 + 64*10 + 10},
		{Spec{Kind: MLP, Features: 1 << 40, Classes: 2, Hidden: []int{1 << 40}}, MaxParams + 1},
	}
	for _, tt := range tests {
		if got := tt.s.NumParams(); got != tt.want {
			t.Errorf("%+v.NumParams() = %d, want %d", tt.s, got, tt.want)
		}
		if p := Init(tt.s, rand.New(rand.NewPCG(1, 1))); tt.want <= MaxParams && len(p) != tt.want {
			t.Errorf("len(Init(%+v)) = %d, want %d", tt.s, len(p), tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		s    Spec
		want string // "" = valid
	}{
		{Spec{Kind: LogReg, Features: 1, Classes: 2}, ""},
		{Spec{Kind: MLP, Features: 1, Classes: 2, Hidden: []int{1}}, ""},
		{Spec{Kind: 0, Features: 1, Classes: 2}, "unknown model kind Kind(0)"},
		{Spec{Kind: LogReg, Features: 0, Classes: 2}, "features 0, want >= 1"},
		{Spec{Kind: LogReg, Features: 1, Classes: 1}, "classes 1, want >= 2"},
		{Spec{Kind: LogReg, Features: 1, Classes: 2, Hidden: []int{3}}, "logreg takes no hidden layers"},
		{Spec{Kind: MLP, Features: 1, Classes: 2}, "mlp needs at least one hidden layer"},
		{Spec{Kind: MLP, Features: 1, Classes: 2, Hidden: []int{4, 0}}, "hidden layer 1 width 0"},
		{Spec{Kind: MLP, Features: 1, Classes: 2, Hidden: []int{-5}}, "hidden layer 0 width -5"},
		{Spec{Kind: LogReg, Features: 1_000_000_000, Classes: 3}, "exceed MaxParams"},
		{Spec{Kind: MLP, Features: 100_000, Classes: 2, Hidden: []int{100_000}}, "exceed MaxParams"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.s, err, tt.want)
		}
	}
	if Init(Spec{Kind: MLP, Features: 1, Classes: 2}, nil) != nil {
		t.Errorf("Init(invalid spec) != nil")
	}
}

func TestKind(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want Kind
	}{{"logreg", LogReg}, {"MLP", MLP}, {" mlp ", MLP}} {
		got, err := ParseKind(tt.s)
		if err != nil || got != tt.want {
			t.Errorf("ParseKind(%q) = %v, %v, want %v", tt.s, got, err, tt.want)
		}
	}
	if _, err := ParseKind("cnn"); err == nil || !strings.Contains(err.Error(), `unknown model kind "cnn"`) {
		t.Errorf("ParseKind(cnn) error = %v", err)
	}
	if LogReg.String() != "logreg" || MLP.String() != "mlp" || Kind(7).String() != "Kind(7)" {
		t.Errorf("String() = %q %q %q", LogReg, MLP, Kind(7))
	}
	// The proto enum fedguard.v1.ModelKind uses the same numbers.
	if LogReg != 1 || MLP != 2 {
		t.Errorf("LogReg, MLP = %d, %d, want 1, 2", LogReg, MLP)
	}
}

func TestPlanValidate(t *testing.T) {
	ok := Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 1}
	tests := []struct {
		p    Plan
		want string
	}{
		{ok, ""},
		{Plan{Epochs: 0, LearningRate: 0.1, BatchSize: 1}, "epochs 0"},
		{Plan{Epochs: 1, LearningRate: 0, BatchSize: 1}, "learning rate 0"},
		{Plan{Epochs: 1, LearningRate: math.NaN(), BatchSize: 1}, "learning rate NaN"},
		{Plan{Epochs: 1, LearningRate: math.Inf(1), BatchSize: 1}, "learning rate +Inf"},
		{Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 0}, "batch size 0"},
		{Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 1, L2: -1}, "L2 -1"},
		{Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 1, L2: math.NaN()}, "L2 NaN"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.p, err, tt.want)
		}
	}
}

func TestInit(t *testing.T) {
	s := Spec{Kind: MLP, Features: 30, Classes: 2, Hidden: []int{16}}
	a := Init(s, rand.New(rand.NewPCG(9, 9)))
	b := Init(s, rand.New(rand.NewPCG(9, 9)))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("Init not deterministic at %d", i)
		}
	}
	// W1 within He bound, b1 zero, W2 within Glorot bound, b2 zero.
	he, glorot := math.Sqrt(6.0/30), math.Sqrt(6.0/18)
	check := func(name string, v []float32, bound float64, zero bool) {
		t.Helper()
		nonzero := 0
		for _, x := range v {
			if math.Abs(float64(x)) > bound {
				t.Errorf("%s value %v outside ±%v", name, x, bound)
			}
			if x != 0 {
				nonzero++
			}
		}
		if zero && nonzero != 0 || !zero && nonzero < len(v)*9/10 {
			t.Errorf("%s: %d of %d non-zero", name, nonzero, len(v))
		}
	}
	check("W1", a[:480], he, false)
	check("b1", a[480:496], 0, true)
	check("W2", a[496:528], glorot, false)
	check("b2", a[528:], 0, true)
	for _, v := range Init(Spec{Kind: LogReg, Features: 4, Classes: 3}, nil) {
		if v != 0 {
			t.Fatalf("LogReg Init not zero")
		}
	}
}

// TestGradient compares the analytic gradient Train descends with central finite
// differences of the objective, on tiny nets with L2.
func TestGradient(t *testing.T) {
	specs := []Spec{
		{Kind: LogReg, Features: 3, Classes: 2},
		{Kind: LogReg, Features: 4, Classes: 3},
		{Kind: MLP, Features: 3, Classes: 3, Hidden: []int{5}},
		{Kind: MLP, Features: 3, Classes: 4, Hidden: []int{4, 3}},
	}
	for _, s := range specs {
		t.Run(s.Kind.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(s.NumParams())))
			const rows = 7
			x := make([][]float64, rows)
			y := make([]int, rows)
			for i := range x {
				x[i] = make([]float64, s.Features)
				for j := range x[i] {
					x[i][j] = rng.NormFloat64()
				}
				y[i] = rng.IntN(s.Classes)
			}
			params := make([]float32, s.NumParams())
			n, err := newNet(s, params, x, y)
			if err != nil {
				t.Fatal(err)
			}
			w := make([]float64, len(params))
			for i := range w {
				w[i] = rng.NormFloat64()
			}
			idx := []int{0, 1, 2, 3, 4, 5, 6}
			ws := n.workspace(rows)
			const l2 = 0.3
			g := make([]float64, len(w))
			n.gradient(ws, w, g, x, y, idx, l2)
			scratch := make([]float64, len(w))
			const h = 1e-6
			for i := range w {
				orig := w[i]
				w[i] = orig + h
				up := n.gradient(ws, w, scratch, x, y, idx, l2)
				w[i] = orig - h
				down := n.gradient(ws, w, scratch, x, y, idx, l2)
				w[i] = orig
				fd := (up - down) / (2 * h)
				if math.Abs(fd-g[i]) > 1e-6+1e-5*math.Abs(fd) {
					t.Errorf("gradient[%d] = %.9g, finite difference %.9g", i, g[i], fd)
				}
			}
		})
	}
}

func TestTrainErrors(t *testing.T) {
	s := Spec{Kind: LogReg, Features: 2, Classes: 2}
	p := Plan{Epochs: 1, LearningRate: 0.1, BatchSize: 2}
	params := Init(s, nil)
	x := [][]float64{{1, 2}, {3, 4}}
	y := []int{0, 1}
	rng := rand.New(rand.NewPCG(1, 1))
	nan := float32(math.NaN())
	tests := []struct {
		name   string
		s      Spec
		params []float32
		x      [][]float64
		y      []int
		p      Plan
		rng    *rand.Rand
		want   string
	}{
		{"bad spec", Spec{Kind: LogReg, Features: 2, Classes: 1}, params, x, y, p, rng, "classes 1"},
		{"bad plan", s, params, x, y, Plan{}, rng, "epochs 0"},
		{"nil rng", s, params, x, y, p, nil, "nil rng"},
		{"params length", s, params[:5], x, y, p, rng, "5 parameters, spec logreg needs 6"},
		{"params NaN", s, []float32{0, 0, nan, 0, 0, 0}, x, y, p, rng, "parameter 2 is NaN"},
		{"empty", s, params, nil, nil, p, rng, "empty data"},
		{"rows vs labels", s, params, x, y[:1], p, rng, "2 rows but 1 labels"},
		{"row width", s, params, [][]float64{{1, 2}, {3}}, y, p, rng, "row 1 has 1 features, spec has 2"},
		{"non-finite x", s, params, [][]float64{{1, math.Inf(-1)}, {3, 4}}, y, p, rng, "row 0 feature 1 is -Inf"},
		{"label range", s, params, x, []int{0, 2}, p, rng, "row 1 label 2 outside [0, 2)"},
		{"diverged", s, params, [][]float64{{1e30, -1e30}, {-1e30, 1e30}}, y, Plan{Epochs: 3, LearningRate: 1e30, BatchSize: 1}, rng, "training diverged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Train(tt.s, tt.params, tt.x, tt.y, tt.p, tt.rng)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Train error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Evaluate(s, params, nil, nil); err == nil || !strings.Contains(err.Error(), "model: evaluate: empty data") {
		t.Errorf("Evaluate(empty) error = %v", err)
	}
	if _, _, err := Predict(s, params, []float64{1}); err == nil || !strings.Contains(err.Error(), "row 0 has 1 features") {
		t.Errorf("Predict(short row) error = %v", err)
	}
}

func TestPredictMatchesEvaluate(t *testing.T) {
	s := Spec{Kind: MLP, Features: 2, Classes: 3, Hidden: []int{4}}
	params := Init(s, rand.New(rand.NewPCG(2, 2)))
	x := []float64{0.5, -1.5}
	c, probs, err := Predict(s, params, x)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, p := range probs {
		sum += p
	}
	if len(probs) != 3 || math.Abs(sum-1) > 1e-12 || probs[c] < probs[(c+1)%3] || probs[c] < probs[(c+2)%3] {
		t.Fatalf("Predict = %d, %v", c, probs)
	}
	m, err := Evaluate(s, params, [][]float64{x}, []int{c})
	if err != nil {
		t.Fatal(err)
	}
	if m.Count != 1 || m.Accuracy != 1 || math.Abs(m.Loss+math.Log(probs[c])) > 1e-12 {
		t.Errorf("Evaluate = %+v, want count 1, accuracy 1, loss %v", m, -math.Log(probs[c]))
	}
}

func TestLossStaysFiniteOnConfidentMistakes(t *testing.T) {
	s := Spec{Kind: LogReg, Features: 1, Classes: 2}
	params := []float32{1e4, -1e4, 0, 0} // class 0 for x > 0 with logit gap 2e4·x
	m, err := Evaluate(s, params, [][]float64{{10}}, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if math.IsInf(m.Loss, 0) || math.Abs(m.Loss-2e5) > 1e-6 || m.Accuracy != 0 {
		t.Errorf("Evaluate(confident mistake) = %+v, want loss 2e5, accuracy 0", m)
	}
}

// TestInitTorch: every weight and bias of a layer within PyTorch
// nn.Linear's default bound 1/√fan_in, biases not zero, the same draw for
// the same seed, and LogReg all zeros.
func TestInitTorch(t *testing.T) {
	s := Spec{Kind: MLP, Features: 12, Hidden: []int{20}, Classes: 3}
	a := InitTorch(s, rand.New(rand.NewPCG(1, 2)))
	if len(a) != s.NumParams() {
		t.Fatalf("len %d, want %d", len(a), s.NumParams())
	}
	layers := []struct {
		name   string
		lo, hi int
		bound  float64
	}{
		{"W1 b1", 0, 12*20 + 20, 1 / math.Sqrt(12)},
		{"W2 b2", 12*20 + 20, len(a), 1 / math.Sqrt(20)},
	}
	for _, l := range layers {
		var nonzero int
		for _, v := range a[l.lo:l.hi] {
			if math.Abs(float64(v)) > l.bound {
				t.Errorf("%s: %v outside ±%v", l.name, v, l.bound)
			}
			if v != 0 {
				nonzero++
			}
		}
		if nonzero != l.hi-l.lo {
			t.Errorf("%s: %d of %d parameters are zero, want none (biases too)", l.name, l.hi-l.lo-nonzero, l.hi-l.lo)
		}
	}
	if b := InitTorch(s, rand.New(rand.NewPCG(1, 2))); !slices.Equal(a, b) {
		t.Error("two draws with the same seed differ")
	}
	if z := InitTorch(Spec{Kind: LogReg, Features: 3, Classes: 2}, nil); slices.ContainsFunc(z, func(v float32) bool { return v != 0 }) {
		t.Errorf("LogReg = %v, want zeros", z)
	}
}
