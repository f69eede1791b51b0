package privacy

import (
	"fmt"
	"math"
	"slices"
)

// Event is Steps compositions of the Poisson-subsampled Gaussian mechanism:
// each step samples every record independently with probability Q and adds
// Gaussian noise of standard deviation Sigma times the ℓ2 sensitivity (the
// clipping norm in DP-SGD). Q = 1 is the plain Gaussian mechanism. The JSON
// names are the ones the CLI and the metrics files use.
type Event struct {
	Q     float64 `json:"q"`
	Sigma float64 `json:"sigma"`
	Steps int64   `json:"steps"`
}

// Validate checks that the event is one the accountant is defined on:
// 0 < Q ≤ 1, 0 < Sigma < ∞ and Steps ≥ 0.
func (e Event) Validate() error {
	if err := validateMechanism(e.Q, e.Sigma); err != nil {
		return err
	}
	if e.Steps < 0 {
		return invalid("steps = %d is negative", e.Steps)
	}
	return nil
}

// Compose returns the RDP at each order of the composition of events: the
// sum over events of Steps times one step's SampledGaussianRDP. Events with
// the same (Q, Sigma) share one evaluation of the per-step RDP, so a ledger
// of many rounds with a few configurations costs a few evaluations and a
// multiplication each, whatever the number of steps. An event with zero
// steps contributes nothing. A ledger asked about after every new event is
// better kept in a Composition, which gives the same sums without
// evaluating the mechanisms it has seen again.
func Compose(orders []float64, events ...Event) ([]float64, error) {
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	var (
		seen  []mechanism // first-seen order, so the sum is deterministic
		steps []float64   // steps[k] belongs to seen[k]
		index map[mechanism]int
	)
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, wrapEvent(i, err)
		}
		if e.Steps == 0 {
			continue
		}
		m := mechanism{e.Q, e.Sigma}
		// A ledger holds few configurations: a linear scan beats hashing
		// floats until there are many.
		k := -1
		if index == nil {
			k = slices.Index(seen, m)
		} else if j, ok := index[m]; ok {
			k = j
		}
		if k < 0 {
			k = len(seen)
			seen, steps = append(seen, m), append(steps, 0)
			if index != nil || len(seen) > 16 {
				if index == nil {
					index = make(map[mechanism]int)
					for j, s := range seen {
						index[s] = j
					}
				}
				index[m] = k
			}
		}
		steps[k] += float64(e.Steps)
	}
	total := make([]float64, len(orders))
	step := make([]float64, len(orders))
	for k, m := range seen {
		stepRDP(m.q, m.sigma, orders, step)
		addScaled(total, steps[k], step)
	}
	return total, nil
}

func wrapEvent(i int, err error) error {
	return fmt.Errorf("event %d: %w", i, err)
}

// ValidateDelta checks 0 < δ < 1.
func ValidateDelta(delta float64) error {
	if !(delta > 0 && delta < 1) {
		return invalid("δ = %v outside (0, 1)", delta)
	}
	return nil
}

// EpsilonFromRDP converts an RDP curve to the smallest ε such that the
// mechanism is (ε, δ)-DP, and returns the order that achieves it. For each
// order α with RDP r it takes the better of
//
//   - the KL-divergence bound: ε = 0 when δ² > 1 − e^(−r), and
//   - ε = r + log(1 − 1/α) − log(δ·α)/(α − 1) (Canonne, Kamath, Steinke 2020,
//     Proposition 12; also Asoodeh et al. 2020, Balle et al. 2020), used for
//     α > 1.01 only, where it is numerically stable,
//
// and minimises over the orders, the first minimal order winning ties — as
// dp_accounting's compute_epsilon does. ε is +Inf when no order gives a
// finite bound.
func EpsilonFromRDP(orders, rdp []float64, delta float64) (epsilon, order float64, err error) {
	if err := ValidateOrders(orders); err != nil {
		return 0, 0, err
	}
	if len(rdp) != len(orders) {
		return 0, 0, invalid("%d RDP values for %d orders", len(rdp), len(orders))
	}
	if err := ValidateDelta(delta); err != nil {
		return 0, 0, err
	}
	best, bestOrder := math.NaN(), orders[0]
	logDelta := math.Log(delta)
	for i, a := range orders {
		r := rdp[i]
		var eps float64
		switch {
		case math.IsNaN(r):
			eps = math.Inf(1) // never produced here; refuse to trust it
		case r <= 0:
			eps = 0
		case delta*delta+math.Expm1(-r) > 0:
			eps = 0
		case a > 1.01:
			eps = r + math.Log1p(-1/a) - (logDelta+math.Log(a))/(a-1)
		default:
			eps = math.Inf(1)
		}
		if math.IsNaN(best) || eps < best {
			best, bestOrder = eps, a
		}
	}
	return math.Max(0, best), bestOrder, nil
}

// DeltaFromRDP converts an RDP curve to the smallest δ such that the
// mechanism is (ε, δ)-DP, and the order that achieves it: the inverse of
// EpsilonFromRDP, with the same two bounds (dp_accounting's compute_delta).
func DeltaFromRDP(orders, rdp []float64, epsilon float64) (delta, order float64, err error) {
	if err := ValidateOrders(orders); err != nil {
		return 0, 0, err
	}
	if len(rdp) != len(orders) {
		return 0, 0, invalid("%d RDP values for %d orders", len(rdp), len(orders))
	}
	if !(epsilon >= 0) {
		return 0, 0, invalid("ε = %v is not a non-negative number", epsilon)
	}
	best, bestOrder := math.NaN(), orders[0]
	for i, a := range orders {
		r := rdp[i]
		var logDelta float64
		switch {
		case math.IsNaN(r):
			logDelta = 0
		case r <= 0:
			logDelta = math.Inf(-1)
		default:
			logDelta = 0.5 * math.Log1p(-math.Exp(-r))
		}
		if a > 1.01 && !math.IsNaN(r) && r > 0 {
			bound := (a-1)*(r-epsilon+math.Log1p(-1/a)) - math.Log(a)
			logDelta = math.Min(logDelta, bound)
		}
		if math.IsNaN(best) || logDelta < best {
			best, bestOrder = logDelta, a
		}
	}
	return math.Min(math.Exp(best), 1), bestOrder, nil
}

// Guarantee is an (ε, δ) pair with the Rényi order that gave it.
type Guarantee struct {
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	Order   float64 `json:"order"`
}

// Epsilon returns the (ε, δ) guarantee of the composition of events over
// the default orders: Compose then EpsilonFromRDP.
func Epsilon(delta float64, events ...Event) (Guarantee, error) {
	return epsilonOver(delta, func(orders []float64) ([]float64, error) { return Compose(orders, events...) })
}

// epsilonOver is the Epsilon functions' common path: it checks delta first,
// then converts the RDP curve rdp returns over the default orders into a
// guarantee.
func epsilonOver(delta float64, rdp func(orders []float64) ([]float64, error)) (Guarantee, error) {
	if err := ValidateDelta(delta); err != nil {
		return Guarantee{}, err
	}
	r, err := rdp(defaultOrders)
	if err != nil {
		return Guarantee{}, err
	}
	return guarantee(defaultOrders, r, delta)
}

// guarantee is the (ε, δ) guarantee of the RDP curve rdp over orders
// (EpsilonFromRDP), with the order that gives it.
func guarantee(orders, rdp []float64, delta float64) (Guarantee, error) {
	eps, order, err := EpsilonFromRDP(orders, rdp, delta)
	if err != nil {
		return Guarantee{}, err
	}
	return Guarantee{Epsilon: eps, Delta: delta, Order: order}, nil
}
