// Package partition splits a labelled data set among simulated clients:
// IID, label-skewed by a Dirichlet distribution, or sorted by label.
//
// # Schemes
//
// A [Scheme] is written as on the command line and read by [Parse]:
//
//   - "iid": the rows are shuffled and dealt out evenly; client sizes differ
//     by at most one.
//   - "dirichlet:ALPHA" (ALPHA > 0 and finite): label skew after Hsu, Qi
//     and Brown, "Measuring the effects of non-identical data distribution
//     for federated visual classification", arXiv:1909.06335, 2019. For each
//     class, proportions p ~ Dir(ALPHA·1) are drawn over the clients and the
//     rows of that class are dealt out in those proportions (largest
//     remainder rounding). This is the per-class form used by Yurochkin et
//     al. (ICML 2019) and Wang et al. (FedMA, ICLR 2020) and by most
//     reproductions of Hsu et al., who draw each client's class mix instead;
//     the per-class form uses every row exactly once. Small ALPHA gives each
//     client few classes (and unequal sizes); large ALPHA tends to iid.
//   - "sorted": the rows are sorted by label (stably, so rows of one label
//     keep their order) and cut into contiguous shards of even size, shard i
//     going to client i: the pathological non-IID split of McMahan et al.,
//     "Communication-efficient learning of deep networks from decentralized
//     data", AISTATS 2017 (they cut 200 shards and give each client two at
//     random; here each client gets one). A client sees one or two labels
//     when every class has at least as many rows as a shard, which for a
//     balanced set means clients ≥ classes; a class smaller than a shard can
//     fall inside one, giving that client three labels or more (on MNIST,
//     whose 5,421 fives are fewer than the 6,000 rows of a shard for 10
//     clients, this happens).
//
// # Guarantees
//
// [Split] puts every row in exactly one client and leaves no client empty.
// If a Dirichlet draw leaves a client empty, it moves one row, the last
// dealt, from the largest client (the lowest-numbered among equals) to it;
// this only matters when rows are few per client or ALPHA is very small.
// The result depends only on the arguments and the state of rng, so a
// seeded rng reproduces an experiment.
package partition

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// Kinds of [Scheme], as written on the command line.
const (
	KindIID       = "iid"
	KindDirichlet = "dirichlet"
	KindSorted    = "sorted"
)

// Errors of Parse and Split.
var (
	// ErrScheme means a scheme is malformed or unknown.
	ErrScheme = errors.New("partition: invalid scheme")
	// ErrInput means Split's labels, class count or client count cannot
	// be split.
	ErrInput = errors.New("partition: invalid input")
)

// Scheme is a parsed partition: "iid", "dirichlet:ALPHA" or "sorted".
// Kind is one of [KindIID], [KindDirichlet] and [KindSorted]; Alpha is the
// Dirichlet concentration, and zero for the other kinds.
type Scheme struct {
	Kind  string
	Alpha float64
}

// Parse reads a scheme from the command line: "iid", "sorted" or
// "dirichlet:ALPHA" with ALPHA a positive, finite decimal number such as
// 0.5. Errors wrap [ErrScheme].
func Parse(s string) (Scheme, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch kind {
	case KindIID, KindSorted:
		if hasArg {
			return Scheme{}, fmt.Errorf("%w %q: %s takes no parameter", ErrScheme, s, kind)
		}
		return Scheme{Kind: kind}, nil
	case KindDirichlet:
		if !hasArg || arg == "" {
			return Scheme{}, fmt.Errorf("%w %q: dirichlet needs a concentration, as in dirichlet:0.5", ErrScheme, s)
		}
		a, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			return Scheme{}, fmt.Errorf("%w %q: concentration %q is not a number", ErrScheme, s, arg)
		}
		sc := Scheme{Kind: kind, Alpha: a}
		if err := sc.check(); err != nil {
			return Scheme{}, fmt.Errorf("%w %q: %w", ErrScheme, s, err)
		}
		return sc, nil
	}
	return Scheme{}, fmt.Errorf("%w %q: want iid, sorted or dirichlet:ALPHA", ErrScheme, s)
}

// check reports what is wrong with the parameters of s, without the
// ErrScheme prefix.
func (s Scheme) check() error {
	switch s.Kind {
	case KindIID, KindSorted:
		if s.Alpha != 0 {
			return fmt.Errorf("%s with concentration %v", s.Kind, s.Alpha)
		}
	case KindDirichlet:
		if !(s.Alpha > 0) || math.IsInf(s.Alpha, 0) {
			return fmt.Errorf("concentration %v is not a positive finite number", s.Alpha)
		}
	default:
		return fmt.Errorf("unknown kind %q", s.Kind)
	}
	return nil
}

// String is the scheme as Parse reads it: Parse(s.String()) returns s for
// every valid s. The concentration is written in the shortest form that
// reads back exactly, so "dirichlet:0.50" prints as "dirichlet:0.5".
func (s Scheme) String() string {
	if s.Kind == KindDirichlet {
		return s.Kind + ":" + strconv.FormatFloat(s.Alpha, 'g', -1, 64)
	}
	return s.Kind
}

// Split returns each client's row indices (every row in exactly one client,
// none empty), drawn from rng.
//
// labels[i] is the class of row i, in [0, classes). The result has one
// slice per client, each in increasing order; see the package
// documentation for how each scheme deals the rows. "sorted" draws nothing
// and accepts a nil rng; the other schemes need one. Errors wrap
// [ErrInput] (classes < 1, clients < 1, more clients than rows, a label
// out of range, a nil rng) or [ErrScheme] (a Scheme not made by Parse).
func Split(labels []int, classes, clients int, s Scheme, rng *rand.Rand) ([][]int, error) {
	switch {
	case classes < 1:
		return nil, fmt.Errorf("%w: %d classes, want at least 1", ErrInput, classes)
	case clients < 1:
		return nil, fmt.Errorf("%w: %d clients, want at least 1", ErrInput, clients)
	case clients > len(labels):
		return nil, fmt.Errorf("%w: %d rows cannot give %d clients a row each", ErrInput, len(labels), clients)
	}
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, fmt.Errorf("%w: row %d has label %d, want 0 to %d", ErrInput, i, l, classes-1)
		}
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScheme, err)
	}
	if rng == nil && s.Kind != KindSorted {
		return nil, fmt.Errorf("%w: %s needs a random source, got a nil rng", ErrInput, s.Kind)
	}
	var parts [][]int
	switch s.Kind {
	case KindIID:
		parts = cut(rng.Perm(len(labels)), clients)
	case KindSorted:
		rows := make([]int, len(labels))
		for i := range rows {
			rows[i] = i
		}
		slices.SortStableFunc(rows, func(a, b int) int { return labels[a] - labels[b] })
		parts = cut(rows, clients)
	case KindDirichlet:
		parts = dirichlet(labels, classes, clients, s.Alpha, rng)
	}
	for _, p := range parts {
		slices.Sort(p)
	}
	return parts, nil
}

// cut splits rows into k contiguous shards whose sizes differ by at most
// one, the larger first.
func cut(rows []int, k int) [][]int {
	parts := make([][]int, k)
	size, extra := len(rows)/k, len(rows)%k
	for i := range parts {
		n := size
		if i < extra {
			n++
		}
		parts[i] = rows[:n:n]
		rows = rows[n:]
	}
	return parts
}

// dirichlet deals each class's rows among k clients in proportions drawn
// from Dir(alpha·1), then fills any empty client from the largest one.
func dirichlet(labels []int, classes, k int, alpha float64, rng *rand.Rand) [][]int {
	byClass := make([][]int, classes)
	for i, l := range labels {
		byClass[l] = append(byClass[l], i)
	}
	parts := make([][]int, k)
	p := make([]float64, k)
	counts := make([]int, k)
	for _, rows := range byClass {
		if len(rows) == 0 {
			continue
		}
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		drawDirichlet(p, alpha, rng)
		apportion(counts, p, len(rows))
		for c, n := range counts {
			parts[c] = append(parts[c], rows[:n]...)
			rows = rows[n:]
		}
	}
	for c := range parts {
		if len(parts[c]) > 0 {
			continue
		}
		// Some client holds at least two rows, since there are at least
		// k rows and this client holds none.
		big := 0
		for j := range parts {
			if len(parts[j]) > len(parts[big]) {
				big = j
			}
		}
		last := len(parts[big]) - 1
		parts[c] = append(parts[c], parts[big][last])
		parts[big] = parts[big][:last]
	}
	return parts
}

// drawDirichlet fills p with a draw from the symmetric Dirichlet
// distribution Dir(alpha·1): independent Gamma(alpha, 1) variates,
// normalized. For tiny alpha every variate can underflow to zero; the
// draw then degenerates to its limit, all mass on one client (the largest
// variate, else one chosen uniformly).
func drawDirichlet(p []float64, alpha float64, rng *rand.Rand) {
	g := distuv.Gamma{Alpha: alpha, Beta: 1, Src: rng}
	mean, big := 0.0, 0
	for i := range p {
		p[i] = g.Rand()
		mean += p[i] / float64(len(p)) // as a mean, so that huge variates cannot overflow
		if p[i] > p[big] {
			big = i
		}
	}
	if mean > 0 && !math.IsInf(mean, 0) {
		for i := range p {
			p[i] = p[i] / mean / float64(len(p))
		}
		return
	}
	if p[big] == 0 {
		big = rng.IntN(len(p))
	}
	clear(p)
	p[big] = 1
}

// apportion sets counts to n shares in proportions p (summing to about 1)
// by the largest remainder method: each share gets the floor of its quota,
// and the rows left over go one each to the largest fractional parts (the
// lowest index first among equals).
func apportion(counts []int, p []float64, n int) {
	type rem struct {
		frac float64
		i    int
	}
	rems := make([]rem, len(p))
	total := 0
	for i, pi := range p {
		q := pi * float64(n)
		f := math.Floor(q)
		counts[i] = min(int(f), n)
		total += counts[i]
		rems[i] = rem{q - f, i}
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.frac > b.frac:
			return -1
		case a.frac < b.frac:
			return 1
		}
		return 0
	})
	for j := 0; total < n; j = (j + 1) % len(rems) {
		counts[rems[j].i]++
		total++
	}
	for total > n { // rounding error made the floors overshoot
		j := 0
		for i := range counts {
			if counts[i] > counts[j] {
				j = i
			}
		}
		counts[j]--
		total--
	}
}
