// Package model defines the models hospitals train in fedguard — multinomial logistic
// regression and a small multilayer perceptron — as flat parameter vectors, and the
// local training, evaluation and wire encoding of those vectors.
//
// Models are flat []float32 vectors so that the aggregation rules, clipping, secure
// aggregation and signing all work on plain vectors with no knowledge of layers.
// Training and evaluation compute in float64 (gonum BLAS for the batch products) and
// round to float32 only when returning parameters.
//
// # Architecture
//
// A [Spec] with Features F, Classes C and Hidden widths H1..Hh describes a network of
// layer widths L0 = F, L1 = H1, ..., Lh = Hh, Lh+1 = C. Each layer l = 1..h+1 computes
// z = W_l·a + b_l from the previous activation a; hidden layers apply ReLU, the last
// applies softmax. [LogReg] is the case h = 0 (softmax regression on the features).
// The loss is the mean softmax cross-entropy plus L2/2·Σ‖W_l‖² over weights (biases
// are not regularized).
//
// # Parameter vector layout (format version 1)
//
// The vector is the layers in order l = 1..h+1; for each layer, first its weight
// matrix W_l, L_l rows (outputs) × L_{l-1} columns (inputs), row-major — the weight
// from input i to output o is at offset + o·L_{l-1} + i — then its bias b_l (L_l
// values). For LogReg this is W (C×F, row-major) followed by b (C). The total is
// Σ L_l·(L_{l-1}+1) = [Spec.NumParams].
//
// # Wire format (format version 1)
//
// On the wire and for hashing, a vector is the concatenation of its values as IEEE 754
// binary32, little-endian, 4 bytes each, with no header: the length and layout are
// implied by the Spec, agreed out of band (the round manifest). NaN and ±Inf are
// never valid on the wire ([DecodeInto] refuses them with [ErrNonFinite]). [Digest] is
// SHA-256 of exactly these bytes. Any change to the layout or the encoding must bump
// [FormatVersion]; a reader refuses versions it does not know.
package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// FormatVersion is the wire layout version of parameter vectors this package reads and writes.
const FormatVersion = 1

// MaxParams bounds the size of a model (2·10⁹ parameters, 8 GB on the wire), so that a
// hostile or mistyped Spec fails validation instead of overflowing sizes or memory.
const MaxParams = 2_000_000_000

// Kind is a model family. Its numeric values equal the proto enum fedguard.v1.ModelKind
// so conversion at the wire edge is a plain cast.
type Kind int

// The model families.
const (
	// LogReg is multinomial (softmax) logistic regression.
	LogReg Kind = 1
	// MLP is a multilayer perceptron with ReLU hidden layers and a softmax output.
	MLP Kind = 2
	// Tensors is any model given as a list of named float32 tensors
	// ([Spec.Tensors]): a convolutional network, a transformer, whatever a
	// hospital's own trainer builds. Its parameter vector is the tensors'
	// values in list order, each row-major. This package only sizes it:
	// [Train], [Evaluate], [Predict] and [Init] refuse it with
	// [ErrNotBuiltIn], since only an external trainer knows the network.
	Tensors Kind = 3
)

// ErrNotBuiltIn means a Spec of kind Tensors was given to this package's
// training or evaluation, which know only the built-in networks.
var ErrNotBuiltIn = errors.New("model: a tensor-layout model has no built-in training; it needs an external trainer")

// Tensor is one named tensor of a [Tensors] model.
type Tensor struct {
	Name  string
	Shape []int // outermost first; empty for a scalar
}

// MaxTensors bounds the tensors of a layout (a large transformer has a few
// thousand), so that a hostile specification cannot make a party build an
// unbounded list.
const MaxTensors = 1 << 16

// MaxTensorName bounds a tensor's name in bytes.
const MaxTensorName = 1024

// ParseKind parses a kind's name as used in flags and config ("logreg", "mlp",
// case-insensitive).
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "logreg":
		return LogReg, nil
	case "mlp":
		return MLP, nil
	case "tensors":
		return Tensors, nil
	}
	return 0, fmt.Errorf("model: unknown model kind %q (want logreg, mlp or tensors)", s)
}

// String returns the name ParseKind accepts, or Kind(n) for an unknown value.
func (k Kind) String() string {
	switch k {
	case LogReg:
		return "logreg"
	case MLP:
		return "mlp"
	case Tensors:
		return "tensors"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Spec is the architecture of a model: with the parameter layout documented in the
// package, it is all a party needs to interpret a parameter vector.
type Spec struct {
	Kind     Kind
	Features int   // input width
	Classes  int   // output width (number of labels)
	Hidden   []int // hidden layer widths, MLP only (1+ layers)
	// Tensors is the layout of a Tensors model, in parameter-vector
	// order; nil for the built-in kinds. Features and Classes are then
	// informational (0 when the data has no feature columns).
	Tensors []Tensor
}

// Validate checks the Spec before anything is allocated from it: Features >= 1,
// Classes >= 2, Hidden empty for LogReg and 1+ positive widths for MLP, and at most
// MaxParams parameters.
func (s Spec) Validate() error {
	if s.Kind == Tensors {
		return s.validateTensors()
	}
	if len(s.Tensors) != 0 {
		return fmt.Errorf("model: %v takes no tensor list, got %d tensors", s.Kind, len(s.Tensors))
	}
	switch s.Kind {
	case LogReg:
		if len(s.Hidden) != 0 {
			return fmt.Errorf("model: logreg takes no hidden layers, got %v", s.Hidden)
		}
	case MLP:
		if len(s.Hidden) == 0 {
			return errors.New("model: mlp needs at least one hidden layer")
		}
	default:
		return fmt.Errorf("model: unknown model kind %v", s.Kind)
	}
	if s.Features < 1 {
		return fmt.Errorf("model: features %d, want >= 1", s.Features)
	}
	if s.Classes < 2 {
		return fmt.Errorf("model: classes %d, want >= 2", s.Classes)
	}
	for i, h := range s.Hidden {
		if h < 1 {
			return fmt.Errorf("model: hidden layer %d width %d, want >= 1", i, h)
		}
	}
	if n := s.NumParams(); n > MaxParams {
		return fmt.Errorf("model: %d parameters exceed MaxParams %d", n, MaxParams)
	}
	return nil
}

// NumParams returns the length of the parameter vector, Σ L_l·(L_{l-1}+1). For an
// oversized Spec it saturates above MaxParams rather than overflowing.
func (s Spec) NumParams() int {
	if s.Kind == Tensors {
		return tensorParams(s.Tensors)
	}
	sizes := s.sizes()
	total := 0
	for l := 1; l < len(sizes); l++ {
		in, out := sizes[l-1], sizes[l]
		if in < 0 || out < 0 || in > MaxParams || out > MaxParams {
			return MaxParams + 1
		}
		total += out * (in + 1) // each factor <= 2e9: the product fits in int64
		if total > MaxParams {
			return MaxParams + 1
		}
	}
	return total
}

// validateTensors checks a Tensors spec: 1 to MaxTensors tensors with
// distinct, non-empty names of at most MaxTensorName bytes, non-negative
// dimensions, no hidden layers, and 1 to MaxParams parameters.
func (s Spec) validateTensors() error {
	switch {
	case len(s.Hidden) != 0:
		return fmt.Errorf("model: tensors takes no hidden layers, got %v", s.Hidden)
	case len(s.Tensors) == 0:
		return errors.New("model: tensors: the layout has no tensor")
	case len(s.Tensors) > MaxTensors:
		return fmt.Errorf("model: tensors: %d tensors, at most %d", len(s.Tensors), MaxTensors)
	case s.Features < 0 || s.Classes < 0:
		return fmt.Errorf("model: tensors: features %d and classes %d must not be negative", s.Features, s.Classes)
	}
	seen := make(map[string]bool, len(s.Tensors))
	for i, t := range s.Tensors {
		switch {
		case t.Name == "" || len(t.Name) > MaxTensorName:
			return fmt.Errorf("model: tensors: tensor %d has a name of %d bytes, want 1 to %d", i, len(t.Name), MaxTensorName)
		case seen[t.Name]:
			return fmt.Errorf("model: tensors: %q appears twice", t.Name)
		}
		seen[t.Name] = true
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("model: tensors: %q has a negative dimension in %v", t.Name, t.Shape)
			}
		}
	}
	switch n := tensorParams(s.Tensors); {
	case n > MaxParams:
		return fmt.Errorf("model: %d parameters exceed MaxParams %d", n, MaxParams)
	case n == 0:
		return errors.New("model: tensors: the layout has no parameter")
	}
	return nil
}

// tensorParams sums the tensors' element counts, saturating above
// MaxParams (negative dimensions count as oversized).
func tensorParams(ts []Tensor) int {
	total := 0
	for _, t := range ts {
		n := 1
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > MaxParams/d) {
				return MaxParams + 1
			}
			n *= d
		}
		if total += n; total > MaxParams {
			return MaxParams + 1
		}
	}
	return total
}

// sizes returns the layer widths F, H1..Hh, C.
func (s Spec) sizes() []int {
	sz := make([]int, 0, len(s.Hidden)+2)
	sz = append(sz, s.Features)
	if s.Kind == MLP {
		sz = append(sz, s.Hidden...)
	}
	return append(sz, s.Classes)
}

// Init returns initial parameters: LogReg all zeros; MLP He/Xavier-uniform weights from rng, zero biases. Deterministic for the rng.
// Hidden layers draw from U(±√(6/fan_in)) (He, suited to ReLU), the output layer from
// U(±√(6/(fan_in+fan_out))) (Glorot/Xavier), drawn in parameter-vector order. It
// returns nil for an invalid Spec and for Tensors (whose network only its trainer
// knows: such a federation starts from a given model); rng may be nil for LogReg.
func Init(s Spec, rng *rand.Rand) []float32 {
	return initLayers(s, rng, func(in, out int, last bool) (limit float64, biases bool) {
		if last {
			return math.Sqrt(6 / float64(in+out)), false
		}
		return math.Sqrt(6 / float64(in)), false
	})
}

// InitTorch returns initial parameters as PyTorch's nn.Linear draws them
// by default (kaiming_uniform with a = √5): every weight and every bias of
// a layer from U(±1/√fan_in), drawn in parameter-vector order. The
// simulator offers it to compare with papers whose code keeps PyTorch's
// default; Init stays the default. LogReg is all zeros, as in Init; it
// returns nil where Init does.
func InitTorch(s Spec, rng *rand.Rand) []float32 {
	return initLayers(s, rng, func(in, _ int, _ bool) (float64, bool) {
		return 1 / math.Sqrt(float64(in)), true
	})
}

// initLayers draws an MLP's parameters layer by layer in parameter-vector
// order: each layer's weights, and its biases if bound says so (zero
// otherwise), from U(±limit). LogReg is all zeros; an invalid Spec and
// Tensors give nil.
func initLayers(s Spec, rng *rand.Rand, bound func(in, out int, last bool) (limit float64, biases bool)) []float32 {
	if s.Kind == Tensors || s.Validate() != nil {
		return nil
	}
	p := make([]float32, s.NumParams())
	if s.Kind == LogReg {
		return p
	}
	sizes := s.sizes()
	off := 0
	for l := 1; l < len(sizes); l++ {
		in, out := sizes[l-1], sizes[l]
		limit, biases := bound(in, out, l == len(sizes)-1)
		n := in * out
		if biases {
			n += out
		}
		for i := range p[off : off+n] {
			p[off+i] = float32((2*rng.Float64() - 1) * limit)
		}
		off += in*out + out
	}
	return p
}

// Plan is the local training schedule the coordinator sends with each round.
type Plan struct {
	Epochs       int     // passes over the local data, >= 1
	LearningRate float64 // SGD step size, > 0
	BatchSize    int     // rows per SGD step, >= 1 (the last batch of an epoch may be smaller)
	L2           float64 // weight decay coefficient λ in λ/2·‖W‖², >= 0
}

// Validate checks the plan, so a bad round configuration fails before training.
func (p Plan) Validate() error {
	switch {
	case p.Epochs < 1:
		return fmt.Errorf("model: plan: epochs %d, want >= 1", p.Epochs)
	case !(p.LearningRate > 0) || math.IsInf(p.LearningRate, 0):
		return fmt.Errorf("model: plan: learning rate %v, want a positive finite number", p.LearningRate)
	case p.BatchSize < 1:
		return fmt.Errorf("model: plan: batch size %d, want >= 1", p.BatchSize)
	case !(p.L2 >= 0) || math.IsInf(p.L2, 0):
		return fmt.Errorf("model: plan: L2 %v, want a finite number >= 0", p.L2)
	}
	return nil
}

// ErrDiverged means training produced a NaN or infinite parameter (for instance a
// learning rate far too large); the result must not be sent.
var ErrDiverged = errors.New("model: training diverged (non-finite parameter)")

// Train runs mini-batch SGD (softmax cross-entropy + L2/2·||W||² on weights, not biases) for p.Epochs over (x, y) shuffled by rng each epoch, starting from params, and returns new params (params untouched).
// Deterministic for the rng state. Errors: invalid spec or plan, shape mismatches,
// labels outside [0, Classes), non-finite inputs, empty data, and ErrDiverged.
func Train(s Spec, params []float32, x [][]float64, y []int, p Plan, rng *rand.Rand) ([]float32, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, errors.New("model: train: nil rng")
	}
	n, err := newNet(s, params, x, y)
	if err != nil {
		return nil, fmt.Errorf("model: train: %w", err)
	}
	w := toFloat64(params)
	g := make([]float64, len(w))
	ws := n.workspace(min(p.BatchSize, len(x)))
	perm := make([]int, len(x))
	for i := range perm {
		perm[i] = i
	}
	for range p.Epochs {
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for start := 0; start < len(perm); start += p.BatchSize {
			batch := perm[start:min(start+p.BatchSize, len(perm))]
			n.gradient(ws, w, g, x, y, batch, p.L2)
			lr := p.LearningRate
			for i := range w {
				w[i] -= lr * g[i]
			}
		}
	}
	return finalParams(w)
}

// finalParams rounds trained parameters to float32, refusing a model that
// diverged: a non-finite parameter would poison the aggregate.
func finalParams(w []float64) ([]float32, error) {
	out := make([]float32, len(w))
	for i, v := range w {
		f := float32(v)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("%w: parameter %d is %v", ErrDiverged, i, f)
		}
		out[i] = f
	}
	return out, nil
}

// Metrics summarize a model on a data set; they are reported to the coordinator.
type Metrics struct {
	Count    int     // rows evaluated
	Loss     float64 // mean cross-entropy loss (no L2 term)
	Accuracy float64 // share of rows whose most probable class is the label
}

// evalBatch is the number of rows Evaluate pushes through the network at once.
const evalBatch = 256

// Evaluate computes the mean cross-entropy and accuracy of params on (x, y). Empty
// data is an error, so a zero Metrics is never mistaken for a result.
func Evaluate(s Spec, params []float32, x [][]float64, y []int) (Metrics, error) {
	n, err := newNet(s, params, x, y)
	if err != nil {
		return Metrics{}, fmt.Errorf("model: evaluate: %w", err)
	}
	w := toFloat64(params)
	ws := n.workspace(min(evalBatch, len(x)))
	idx := make([]int, 0, evalBatch)
	var loss float64
	correct := 0
	for start := 0; start < len(x); start += evalBatch {
		idx = idx[:0]
		for i := start; i < min(start+evalBatch, len(x)); i++ {
			idx = append(idx, i)
		}
		probs := n.forward(ws, w, x, idx, y)
		c := n.sizes[len(n.sizes)-1]
		for r, i := range idx {
			row := probs.Data[r*probs.Stride : r*probs.Stride+c]
			loss += ws.loss[r]
			if argmax(row) == y[i] {
				correct++
			}
		}
	}
	m := float64(len(x))
	return Metrics{Count: len(x), Loss: loss / m, Accuracy: float64(correct) / m}, nil
}

// Predict returns the most probable class of one row and the class probabilities.
func Predict(s Spec, params []float32, x []float64) (int, []float64, error) {
	n, err := newNet(s, params, [][]float64{x}, []int{0})
	if err != nil {
		return 0, nil, fmt.Errorf("model: predict: %w", err)
	}
	ws := n.workspace(1)
	probs := n.forward(ws, toFloat64(params), [][]float64{x}, []int{0}, nil)
	p := append([]float64(nil), probs.Data[:s.Classes]...)
	return argmax(p), p, nil
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func toFloat64(p []float32) []float64 {
	w := make([]float64, len(p))
	for i, v := range p {
		w[i] = float64(v)
	}
	return w
}
