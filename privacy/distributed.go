package privacy

import (
	"fmt"
	"math"
)

// MaxClients bounds DistributedDiscreteGaussian.Clients: τ is a sum over the
// clients, and a federation of hospitals is far smaller.
const MaxClients = 1 << 20

// DistributedDiscreteGaussian is Steps releases of a sum, computed under
// secure aggregation, to which each of Clients clients has added its own
// discrete Gaussian noise N_Z(0, Sigma²) on every coordinate of an integer
// vector of dimension Dim: the distributed discrete Gaussian mechanism of
// Kairouz, Liu and Steinke (ICML 2021). The sum of discrete Gaussians is not
// a discrete Gaussian; their Theorem 1 and Proposition 14 bound how far it is
// with the term
//
//	τ = 10 · Σ_{k=1}^{n−1} exp(−2π²σ² · k/(k+1)),
//
// which vanishes quickly as σ grows: τ ≈ 0.85 for σ = 1/2 and 2 clients,
// 5.4e−4 for σ = 1 and 10 clients, 2.3e−9 for σ = 1.5 and 100 clients.
//
// All quantities are in units of the integer grid the clients' updates are
// scaled and rounded to: Sigma is the discrete Gaussian's parameter (each
// client's, not the sum's), and L2 and L1 bound the ℓ2 and ℓ1 norms of the
// difference one client's contribution makes to the sum after scaling,
// rotation and rounding (ConditionalRoundingL2Bound gives L2 from the
// clipping norm). A client's whole update is the unit of privacy (user-level
// DP for the federation), not a patient's record.
//
// Clients is the fewest clients whose noise is in any released sum: each
// client adds 1/n-th of the noise the sum needs, so when clients drop out
// after masking the sum has less noise. Accounting at the smallest number of
// survivors a round may be unmasked with is the worst case the protocol
// allows.
type DistributedDiscreteGaussian struct {
	Sigma   float64 `json:"sigma"`
	Clients int     `json:"clients"`
	Dim     int     `json:"dim"`
	L2      float64 `json:"l2"`
	L1      float64 `json:"l1,omitempty"` // 0: the bound L2·min(√Dim, L2) that holds on the integer grid
	Steps   int64   `json:"steps"`
}

// Validate checks the mechanism is one the theorem covers: Sigma ≥ 1/2 and
// finite, 1 ≤ Clients ≤ MaxClients, Dim ≥ 1, L2 > 0 and finite, L1 either 0
// or at least L2 (‖x‖₁ ≥ ‖x‖₂) and finite, Steps ≥ 0.
func (m DistributedDiscreteGaussian) Validate() error {
	switch {
	case !(m.Sigma >= 0.5) || math.IsInf(m.Sigma, 1):
		return invalid("distributed discrete Gaussian: σ = %v is not a finite number ≥ 1/2 (Kairouz, Liu, Steinke 2021, Theorem 1)", m.Sigma)
	case m.Clients < 1 || m.Clients > MaxClients:
		return invalid("distributed discrete Gaussian: %d clients outside [1, %d]", m.Clients, MaxClients)
	case m.Dim < 1:
		return invalid("distributed discrete Gaussian: dimension %d < 1", m.Dim)
	case !(m.L2 > 0) || math.IsInf(m.L2, 1):
		return invalid("distributed discrete Gaussian: ℓ2 sensitivity %v is not positive and finite", m.L2)
	case m.L1 != 0 && (!(m.L1 >= m.L2) || math.IsInf(m.L1, 1)):
		return invalid("distributed discrete Gaussian: ℓ1 sensitivity %v is neither 0 nor a finite number ≥ the ℓ2 sensitivity %v", m.L1, m.L2)
	case m.Steps < 0:
		return invalid("distributed discrete Gaussian: steps = %d is negative", m.Steps)
	}
	return nil
}

// Tau returns τ = 10 · Σ_{k=1}^{n−1} exp(−2π²σ² · k/(k+1)) (Kairouz, Liu,
// Steinke 2021, Theorem 1): 0 for a single client, whose noise is an exact
// discrete Gaussian.
func (m DistributedDiscreteGaussian) Tau() float64 {
	c := -2 * math.Pi * math.Pi * m.Sigma * m.Sigma
	var sum float64
	for k := 1; k < m.Clients; k++ {
		sum += math.Exp(c * float64(k) / float64(k+1))
	}
	return 10 * sum
}

// l1 is L1, or its bound on the integer grid when unset: ‖x‖₁ ≤ √d‖x‖₂,
// and ‖x‖₁ ≤ ‖x‖₂² because every non-zero coordinate is at least 1 in
// absolute value (below L2 = 1 the only integer vector is 0, and the bound
// is kept at L2 so that L1 ≥ L2 holds).
func (m DistributedDiscreteGaussian) l1() float64 {
	if m.L1 != 0 {
		return m.L1
	}
	return m.L2 * math.Min(math.Sqrt(float64(m.Dim)), math.Max(m.L2, 1))
}

// stepRDP returns one release's RDP at order α: the least of the three
// bounds of Kairouz, Liu, Steinke 2021, Proposition 14 (Eq. 17), with
// a = L2/(√n σ) and b = L1/(√n σ) the sensitivities over the standard
// deviation of the summed noise:
//
//	α/2 · a² + τd,   α/2 · (a² + 2bτ + τ²d),   α/2 · (a + τ√d)².
func (m DistributedDiscreteGaussian) stepRDP(alpha, tau float64) float64 {
	a, b, d := m.scaled()
	s := a + tau*math.Sqrt(d)
	return minNotNaN(
		alpha/2*a*a+tau*d,
		alpha/2*(a*a+2*b*tau+tau*tau*d),
		alpha/2*s*s,
	)
}

// scaled returns a = L2/(√n σ), b = L1/(√n σ) and d as a float.
func (m DistributedDiscreteGaussian) scaled() (a, b, d float64) {
	scale := math.Sqrt(float64(m.Clients)) * m.Sigma
	return m.L2 / scale, m.l1() / scale, float64(m.Dim)
}

// minNotNaN is the least of xs, reading NaN as +Inf: a bound that overflowed
// into ∞·0 is no bound, and must not poison the others.
func minNotNaN(xs ...float64) float64 {
	best := math.Inf(1)
	for _, x := range xs {
		if x < best {
			best = x
		}
	}
	return best
}

// RDP returns the RDP at each order of the Steps releases: Steps times one
// release's bound (Proposition 14), which holds at every real α ≥ 1.
func (m DistributedDiscreteGaussian) RDP(orders []float64) ([]float64, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	out := make([]float64, len(orders))
	if m.Steps == 0 {
		return out, nil
	}
	tau := m.Tau()
	for i, a := range orders {
		out[i] = float64(m.Steps) * m.stepRDP(a, tau)
	}
	return out, nil
}

// ZCDP returns ρ such that one release is ρ-zCDP (RDP α·ρ at every order):
// the two bounds of Proposition 14 without an additive term,
// ρ = ½ · min((a + τ√d)², a² + 2bτ + τ²d). For a single client (τ = 0) it is
// the discrete Gaussian's L2²/(2σ²) (Canonne, Kamath, Steinke 2020,
// Proposition 5). Steps releases are Steps·ρ-zCDP.
func (m DistributedDiscreteGaussian) ZCDP() (float64, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	tau := m.Tau()
	a, b, d := m.scaled()
	s := a + tau*math.Sqrt(d)
	return 0.5 * minNotNaN(s*s, a*a+2*b*tau+tau*tau*d), nil
}

// Epsilon returns the (ε, δ) guarantee of the Steps releases over the
// default orders (EpsilonFromRDP).
func (m DistributedDiscreteGaussian) Epsilon(delta float64) (Guarantee, error) {
	return epsilonOver(delta, m.RDP)
}

// ConditionalRoundingL2Bound returns the ℓ2 norm bound, on the integer grid,
// of a vector of ℓ2 norm at most c (already scaled to grid units) after
// randomized rounding of each of its dim coordinates, conditioned on the
// rounded norm being at most the returned bound (Kairouz, Liu, Steinke 2021,
// Section 4.1 and Theorem 1): min(c + √d, √(c² + d/4 + √(2 log(1/β)) ·
// (c + √d/2))). beta in [0, 1) is the probability bound of one rounding
// attempt failing the condition; β = 0 means unconditional rounding, whose
// bound is c + √d.
func ConditionalRoundingL2Bound(c, beta float64, dim int) (float64, error) {
	if !(c > 0) || math.IsInf(c, 1) {
		return 0, invalid("conditional rounding: norm %v is not positive and finite", c)
	}
	if !(beta >= 0 && beta < 1) {
		return 0, invalid("conditional rounding: β = %v outside [0, 1)", beta)
	}
	if dim < 1 {
		return 0, invalid("conditional rounding: dimension %d < 1", dim)
	}
	d := float64(dim)
	b1 := c + math.Sqrt(d)
	if beta == 0 {
		return b1, nil
	}
	b2 := math.Sqrt(c*c + d/4 + math.Sqrt(2*math.Log(1/beta))*(c+math.Sqrt(d)/2))
	return math.Min(b1, b2), nil
}

// DistributedEpsilon returns the (ε, δ) guarantee of the composition of
// releases of distributed discrete Gaussian mechanisms that may differ
// from one another (another noise level, another number of clients or
// dimension from round to round): their RDP curves, over the default
// orders, add up (EpsilonFromRDP converts the sum). Mechanisms with the
// same parameters are computed once and counted Steps times each, so a
// hospital's ledger of a long federation costs its distinct rounds, not
// its length. No mechanism is ε = 0.
func DistributedEpsilon(delta float64, ms ...DistributedDiscreteGaussian) (Guarantee, error) {
	if err := ValidateDelta(delta); err != nil {
		return Guarantee{}, err
	}
	type key struct {
		sigma, l2, l1 float64
		clients, dim  int
	}
	steps := map[key]int64{}
	var keys []key
	for i, m := range ms {
		if err := m.Validate(); err != nil {
			return Guarantee{}, fmt.Errorf("mechanism %d: %w", i, err)
		}
		k := key{m.Sigma, m.L2, m.L1, m.Clients, m.Dim}
		if _, ok := steps[k]; !ok {
			keys = append(keys, k)
		}
		if m.Steps > math.MaxInt64-steps[k] {
			return Guarantee{}, invalid("distributed discrete Gaussian: more than %d releases", int64(math.MaxInt64))
		}
		steps[k] += m.Steps
	}
	total := make([]float64, len(defaultOrders))
	for _, k := range keys {
		m := DistributedDiscreteGaussian{Sigma: k.sigma, Clients: k.clients, Dim: k.dim, L2: k.l2, L1: k.l1, Steps: steps[k]}
		rdp, err := m.RDP(defaultOrders)
		if err != nil {
			return Guarantee{}, err
		}
		for i, r := range rdp {
			total[i] += r
		}
	}
	return guarantee(defaultOrders, total, delta)
}
