package privacy

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalid marks a parameter outside the domain the accountant is defined
// on (a sampling rate outside (0, 1], a non-positive σ, a δ outside (0, 1),
// a bad order grid …). Every validation error wraps it.
var ErrInvalid = errors.New("privacy: invalid parameter")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// MaxOrder bounds the orders an accountant accepts. The integer-order series
// has α+1 terms, so the bound also bounds the work per order; dp_accounting's
// largest default order is 1024.
const MaxOrder = 1 << 16

// maxFracTerms is dp_accounting's _MAX_STEPS_LOG_A_FRAC: a fractional order
// whose series has not converged after this many terms is excluded (+Inf).
const maxFracTerms = 1000

// logTwiceMaxFracTerms bounds log(Σ e^(x−max)) over the two series.
var logTwiceMaxFracTerms = math.Log(2 * maxFracTerms)

// defaultOrders is dp_accounting's DEFAULT_RDP_ORDERS (release 0.6.0):
// 1.1, 1.2, …, 10.9, then 11, 12, …, 63, then 128, 256, 512, 1024 — 156
// orders, fine near 1 where large-ε sequences have their optimum and coarse
// above where small-ε ones do.
var defaultOrders = func() []float64 {
	var o []float64
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 11; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512, 1024)
}()

// DefaultOrders returns a fresh copy of the default grid of Rényi orders,
// the same as dp_accounting's DEFAULT_RDP_ORDERS so that both report the
// same ε: 1.1 to 10.9 in steps of 0.1, the integers 11 to 63, and 128, 256,
// 512, 1024.
func DefaultOrders() []float64 {
	return append([]float64(nil), defaultOrders...)
}

// ValidateOrders checks an order grid: non-empty, every order finite, above
// 1 and at most MaxOrder.
func ValidateOrders(orders []float64) error {
	if len(orders) == 0 {
		return invalid("no Rényi orders")
	}
	for _, a := range orders {
		if !(a > 1 && a <= MaxOrder) {
			return invalid("Rényi order %v outside (1, %d]", a, MaxOrder)
		}
	}
	return nil
}

// validateMechanism checks a sampling rate and a noise multiplier.
func validateMechanism(q, sigma float64) error {
	if !(q > 0 && q <= 1) {
		return invalid("sampling rate q = %v outside (0, 1]", q)
	}
	if !(sigma > 0) || math.IsInf(sigma, 1) {
		return invalid("noise multiplier σ = %v is not a positive finite number", sigma)
	}
	return nil
}

// GaussianRDP returns the RDP at order α of the Gaussian mechanism with
// noise multiplier σ: α/(2σ²) (Mironov 2017, Proposition 7).
func GaussianRDP(sigma, order float64) float64 {
	return order / (2 * sigma * sigma)
}

// SampledGaussianRDP returns the RDP at each order of one step of the
// Poisson-subsampled Gaussian mechanism with sampling rate q and noise
// multiplier σ (Mironov, Talwar, Zhang 2019). For q = 1 it is GaussianRDP.
// An order whose value cannot be computed — the fractional series did not
// converge within dp_accounting's 1000 terms, or σ is so small that the
// value overflows — is +Inf, which only removes that order from the
// conversion to (ε, δ). The result never holds NaN or a negative value.
func SampledGaussianRDP(q, sigma float64, orders []float64) ([]float64, error) {
	if err := validateMechanism(q, sigma); err != nil {
		return nil, err
	}
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	out := make([]float64, len(orders))
	stepRDP(q, sigma, orders, out)
	return out, nil
}

// stepRDP sets out[i] to one step's RDP at orders[i], for a validated
// mechanism and validated orders. The fractional orders share one table of
// the first series' erfc terms, which do not depend on α.
func stepRDP(q, sigma float64, orders, out []float64) {
	tab := newErfcTable(q, sigma)
	for i, a := range orders {
		out[i] = sampledGaussianRDP(q, sigma, a, tab)
	}
}

// sampledGaussianRDP is SampledGaussianRDP at one validated order; tab is
// newErfcTable(q, sigma), shared between the orders of one mechanism.
func sampledGaussianRDP(q, sigma, alpha float64, tab *erfcTable) float64 {
	var r float64
	switch {
	case q == 1:
		r = GaussianRDP(sigma, alpha)
	case math.IsInf(1/(2*sigma*sigma), 1):
		// σ² underflows: the mechanism adds no noise worth the name.
		r = math.Inf(1)
	case alpha == math.Trunc(alpha):
		r = logAInt(q, sigma, int(alpha)) / (alpha - 1)
	default:
		r = logAFrac(q, sigma, alpha, tab) / (alpha - 1)
	}
	switch {
	case math.IsNaN(r):
		return math.Inf(1)
	case r < 0:
		// A_α ≥ 1, so log A_α ≥ 0; a negative value is rounding.
		return 0
	}
	return r
}

// logAInt returns log A_α for integer α and 0 < q < 1: the log of
// Σ_{i=0}^{α} C(α,i) q^i (1−q)^(α−i) exp((i²−i)/(2σ²)), summed in log space
// (dp_accounting's _compute_log_a_int). The binomial coefficients follow the
// recurrence C(α,i+1) = C(α,i)·(α−i)/(i+1) in log space rather than three
// log-gamma calls a term.
func logAInt(q, sigma float64, alpha int) float64 {
	var sum logSum
	logq, log1mq := math.Log(q), math.Log1p(-q)
	twoSigma2 := 2 * sigma * sigma
	fa := float64(alpha)
	logBinom := 0.0 // log C(α, 0)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		sum.add(logBinom + fi*logq + (fa-fi)*log1mq + (fi*fi-fi)/twoSigma2)
		logBinom += math.Log((fa - fi) / (fi + 1))
	}
	return sum.log()
}

// logAFrac returns log A_α for fractional α and 0 < q < 1 from the two
// series of Mironov, Talwar, Zhang 2019, Section 3.3, split at
// z0 = σ² log(1/q − 1) + 1/2 (dp_accounting's _compute_log_a_frac). The
// series stop once both terms decrease and are below e^−30 of the total;
// +Inf if that has not happened after maxFracTerms terms. The generalised
// binomial coefficients C(α,i) change sign past i = α; like dp_accounting
// (scipy's gammaln is log|Γ|) the series adds their absolute values, which
// bounds A_α from above.
func logAFrac(q, sigma, alpha float64, tab *erfcTable) float64 {
	var a0, a1 logSum
	z0, sqrt2Sigma := tab.z0, tab.sqrt2Sigma
	logq, log1mq := math.Log(q), math.Log1p(-q)
	twoSigma2 := 2 * sigma * sigma
	logBinom := 0.0 // log |C(α, 0)|
	lastS0, lastS1 := math.Inf(-1), math.Inf(-1)
	for i := range maxFracTerms {
		fi := float64(i)
		j := alpha - fi
		logS0 := logBinom + fi*logq + j*log1mq + (fi*fi-fi)/twoSigma2 + tab.logHalfErfc0(i)
		logS1 := logBinom + j*logq + fi*log1mq + (j*j-j)/twoSigma2 +
			(logErfc((z0-j)/sqrt2Sigma) - math.Ln2)
		a0.add(logS0)
		a1.add(logS1)
		// dp_accounting's stopping rule: both terms decreasing and the larger
		// below e^−30 of the total. The total is at least the largest term
		// seen and at most that times 2·maxFracTerms, so a term above
		// max − 30 + log(2·maxFracTerms) cannot pass and the comparison is
		// skipped; below, it is made without logarithms (belowTotal).
		if logS0 < lastS0 && logS1 < lastS1 {
			if big := math.Max(logS0, logS1); big < math.Max(a0.m, a1.m)-30+logTwiceMaxFracTerms && belowTotal(big+30, a0, a1) {
				return logSumOf(a0, a1)
			}
		}
		lastS0, lastS1 = logS0, logS1
		logBinom += math.Log(math.Abs(j) / (fi + 1))
	}
	return math.Inf(1)
}

// erfcTable holds, for one mechanism (q, σ), the terms
// log(erfc((i − z0)/(√2σ))/2) of the first fractional series, i = 0, 1, …:
// they do not depend on the order, so the up to 90 fractional orders of a
// grid compute each once. It grows as far as the slowest series needs.
type erfcTable struct {
	z0, sqrt2Sigma float64
	v              []float64
}

func newErfcTable(q, sigma float64) *erfcTable {
	return &erfcTable{
		z0:         sigma*sigma*math.Log(1/q-1) + 0.5,
		sqrt2Sigma: math.Sqrt2 * sigma,
	}
}

// logHalfErfc0 returns log(erfc((i − z0)/(√2σ))/2).
func (t *erfcTable) logHalfErfc0(i int) float64 {
	for len(t.v) <= i {
		t.v = append(t.v, logErfc((float64(len(t.v))-t.z0)/t.sqrt2Sigma)-math.Ln2)
	}
	return t.v[i]
}

// logSum accumulates log Σ e^x: the running maximum m and Σ e^(x−m), so that
// each term costs one exponential rather than the exp and log1p of a
// pairwise log-add.
type logSum struct {
	m, s float64 // the zero value is the empty sum: s = 0
}

func (l *logSum) add(x float64) {
	switch {
	case math.IsNaN(x):
		l.m, l.s = math.NaN(), 1
	case l.s == 0 || x > l.m:
		if math.IsInf(x, -1) {
			return
		}
		if l.s == 0 {
			l.m, l.s = x, 1
			return
		}
		l.s = l.s*math.Exp(l.m-x) + 1
		l.m = x
	default:
		l.s += math.Exp(x - l.m)
	}
}

// log returns log Σ e^x: −Inf for the empty sum, +Inf once a term is +Inf.
func (l logSum) log() float64 {
	if l.s == 0 {
		return math.Inf(-1)
	}
	if math.IsInf(l.m, 1) {
		return l.m
	}
	return l.m + math.Log(l.s)
}

// belowTotal reports whether x < log(Σa + Σb), comparing e^(x−M) with
// Σa·e^(ma−M) + Σb·e^(mb−M), M the larger running maximum: two
// exponentials instead of the three logarithms and an exponential of
// computing the log-sum. False when either side is NaN.
func belowTotal(x float64, a, b logSum) bool {
	m := math.Inf(-1)
	if a.s > 0 {
		m = a.m
	}
	if b.s > 0 && b.m > m {
		m = b.m
	}
	switch {
	case math.IsInf(m, -1):
		return false // both sums are empty: the total is log 0 = −Inf
	case math.IsInf(m, 1):
		return x < m
	}
	var sum float64
	if a.s > 0 {
		sum += a.s * math.Exp(a.m-m)
	}
	if b.s > 0 {
		sum += b.s * math.Exp(b.m-m)
	}
	return math.Exp(x-m) < sum
}

// logSumOf returns log(Σa + Σb).
func logSumOf(a, b logSum) float64 {
	return logAdd(a.log(), b.log())
}

// logAdd returns log(e^x + e^y) without overflow.
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) || math.IsInf(b, 1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logErfc returns log(erfc(x)), accurate where erfc(x) underflows: above
// x = 20 (erfc(20) ≈ 5e−176) it uses the asymptotic expansion
// erfc(x) = e^(−x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + 105/(16x⁸) − …),
// whose truncation error there is below 1e−12 relative.
func logErfc(x float64) float64 {
	if x < 20 {
		return math.Log(math.Erfc(x))
	}
	z := 1 / (2 * x * x) // each term is the previous times −(2k−1)/(2x²)
	series := 1 - z*(1-3*z*(1-5*z*(1-7*z*(1-9*z))))
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(series)
}
