package aggregation

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// fma32Ref is the float32 rounding of the exact a·b + c for finite a, b
// and c, computed otherwise than fma32 (whose slow path is big.Float's):
// the exact rational a·b + c (big.Rat), rounded once by Rat.Float32 (to
// nearest, ties to even, subnormals included), with the sign IEEE 754
// gives an exact zero: −0 only when a·b and c are both −0.
func fma32Ref(a, b, c float32) float32 {
	var p, s big.Rat
	p.Mul(new(big.Rat).SetFloat64(float64(a)), new(big.Rat).SetFloat64(float64(b)))
	s.Add(&p, new(big.Rat).SetFloat64(float64(c)))
	if s.Sign() == 0 {
		negProduct := math.Signbit(float64(a)) != math.Signbit(float64(b))
		if p.Sign() == 0 && c == 0 && negProduct && math.Signbit(float64(c)) {
			return float32(math.Copysign(0, -1))
		}
		return 0
	}
	f, _ := s.Float32()
	return f
}

// midpointCases returns (a, b, c) whose exact a·b + c lies just off a
// float32 midpoint, where the float64 sum lands on the midpoint itself
// (the double-rounding case fma32 must resolve), and subnormal results.
func midpointCases(rng *rand.Rand, count int) [][3]float32 {
	var cs [][3]float32
	for len(cs) < count {
		c := float32(1 + rng.Float64())
		if rng.IntN(2) == 0 {
			c = -c
		}
		// a·b = half an ulp of c (2⁻²⁴ at c in [1, 2)) plus or minus a
		// tail below float64's precision at c's scale.
		tail := float32(1 + math.Ldexp(1, -23)*float64(rng.IntN(3)-1))
		a := float32(math.Ldexp(1, -12)) * tail
		b := float32(math.Ldexp(1, -12)) * float32(1-math.Ldexp(1, -23)*float64(rng.IntN(2)))
		if rng.IntN(2) == 0 {
			a = -a
		}
		cs = append(cs, [3]float32{a, b, c})
		// Subnormal and tiny results.
		x := float32(math.Ldexp(rng.Float64(), -70))
		y := float32(math.Ldexp(rng.Float64(), -70))
		z := float32(math.Ldexp(rng.Float64()-0.5, -140))
		cs = append(cs, [3]float32{x, y, z})
	}
	return cs
}

func TestFMA32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := midpointCases(rng, 2000)
	for range 20000 {
		a := float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(40)-20))
		b := float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(40)-20))
		c := float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(60)-30))
		cases = append(cases, [3]float32{a, b, c})
	}
	// Exact zeros, whose sign fma32 takes from the float64 sum.
	negZero := float32(math.Copysign(0, -1))
	cases = append(cases, [3]float32{0, -1, negZero}, [3]float32{negZero, 2, negZero},
		[3]float32{negZero, negZero, negZero}, [3]float32{0, 3, 0}, [3]float32{1, 1, -1}, [3]float32{-2, 0.5, 1})
	naiveWrong := 0
	for _, k := range cases {
		got, want := fma32(k[0], k[1], k[2]), fma32Ref(k[0], k[1], k[2])
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", k[0], k[1], k[2], got, want)
		}
		if float32(float64(k[0])*float64(k[1])+float64(k[2])) != want {
			naiveWrong++
		}
	}
	// The cases do reach the double-rounding trap fma32 exists for.
	if naiveWrong == 0 {
		t.Errorf("no case where rounding the float64 sum is wrong: the midpoint cases miss")
	}
}

// TestGramTileSameBits: the assembly's fused multiply-adds, lane tree and
// tail give the portable loop's bits, on the kernel inputs and on rows
// built to hit float32 midpoints.
func TestGramTileSameBits(t *testing.T) {
	saved := kernel
	defer func() { kernel = saved }()
	rng := rand.New(rand.NewPCG(8, 9))
	var inputs [][][]float32
	for _, kind := range kernelKinds {
		for _, d := range []int{1, 7, 8, 9, 63, 512, 515} {
			inputs = append(inputs, kernelInputs(rng, kind, 7, d))
		}
	}
	// Midpoints: lane l first takes c (times 1), then a·b.
	mid := midpointCases(rng, 64)
	for len(mid) >= 8 {
		xs := make([][]float32, 7)
		for r := range xs {
			xs[r] = make([]float32, 16)
		}
		for l := range 8 {
			for p := range 3 {
				xs[p][l], xs[p][8+l] = mid[l][2], mid[l][0]
			}
			for q := range 4 {
				xs[3+q][l], xs[3+q][8+l] = 1, mid[l][1]
			}
		}
		mid = mid[8:]
		inputs = append(inputs, xs)
	}
	for _, xs := range inputs {
		var a [3][]float32
		var b [4][]float32
		for k := range 3 {
			a[k] = xs[k%len(xs)]
		}
		for k := range 4 {
			b[k] = xs[(3+k)%len(xs)]
		}
		var want [12]float64
		gramTileGeneric(&want, &a, &b)
		// The 5×5 tile of the AVX-512 path: rows 0-2 on the a side and
		// 3-6 on the b side again, so that the midpoint rows still meet.
		var a5, b5 [5][]float32
		for k := range 5 {
			a5[k], b5[k] = a[k%3], b[k%4]
		}
		var want5 [25]float64
		gramTileRect(want5[:], a5[:], b5[:])
		for _, p := range availablePaths() {
			kernel = p
			var got [12]float64
			gramTile(&got, &a, &b)
			if !sameBits(got[:], want[:]) {
				t.Fatalf("%s d=%d: %v, portable %v", p, len(a[0]), got, want)
			}
			var got5 [25]float64
			gramTileOf(got5[:], a5[:], b5[:])
			if !sameBits(got5[:], want5[:]) {
				t.Fatalf("%s 5×5 d=%d: %v, portable %v", p, len(a[0]), got5, want5)
			}
		}
	}
}

// gramTileOf runs the current path's gramShape block operation on the
// one tile a×b when its shape is len(a)×len(b) and the rows fit a block,
// else gramTileRect.
func gramTileOf(out []float64, a, b [][]float32) {
	np, nq, op := gramShape()
	if np != len(a) || nq != len(b) || len(a[0]) > gramBlock {
		gramTileRect(out, a, b)
		return
	}
	y := make([]float32, (np+nq)*gramBlock)
	for k, r := range slices.Concat(a, b) {
		copy(y[k*gramBlock:], r)
	}
	op(out, y, len(a[0]), [][2]int32{{0, int32(np)}})
}

// TestGramDistancesPathsSameBits: gramDistances gives the portable path's
// bits on every path, whatever its tile shape (5×5 on AVX-512, 3×4
// elsewhere): n around the tile sides, d with partial groups of 8, a
// partial block and several chunks.
func TestGramDistancesPathsSameBits(t *testing.T) {
	saved := kernel
	defer func() { kernel = saved }()
	rng := rand.New(rand.NewPCG(51, 2))
	for _, kind := range kernelKinds {
		for _, n := range []int{3, 4, 5, 6, 9, 10, 11, 16, 26, 33} {
			for _, d := range []int{1, 7, 8, 13, 512, 1030, 4099} {
				if (raceEnabled || testing.Short()) && n*d > 40000 {
					continue
				}
				xs := kernelInputs(rng, kind, n, d)
				kernel = pathPurego
				want, wantE, wantOK := gramDistances(xs)
				for _, p := range availablePaths()[1:] {
					kernel = p
					got, gotE, ok := gramDistances(xs)
					if ok != wantOK || !sameBits(got, want) || !sameBits(gotE, wantE) {
						t.Fatalf("%s %s n=%d d=%d: gramDistances differs from the portable path's", p, kind, n, d)
					}
				}
			}
		}
	}
}

// TestGramBound: every Gram distance is within its bound E of the
// differences kernel's, and identical updates are exactly 0 apart.
func TestGramBound(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n := len(xs)
			if n < 3 {
				return
			}
			dh, eb, ok := gramDistances(xs)
			want, finite := pairwiseSquaredDistancesFinite(xs)
			if !ok {
				return // the rules fall back to the differences kernel
			}
			if !finite {
				t.Fatalf("Gram finite on non-finite inputs")
			}
			for i := range n {
				for j := range n {
					k := i*n + j
					if math.Abs(dh[k]-want[k]) > eb[k] && i != j {
						t.Fatalf("pair %d,%d: Gram %g, exact %g, bound %g", i, j, dh[k], want[k], eb[k])
					}
					if slices.Equal(xs[i], xs[j]) && dh[k] != 0 {
						t.Fatalf("identical rows %d,%d: Gram distance %g", i, j, dh[k])
					}
				}
			}
		})
	})
}

// nearTies returns cohorts whose Krum scores are closer than the Gram
// bounds: permutations of one vector (equal norms), copies with one
// coordinate nudged by an ulp, and plain Gaussian updates.
func nearTies(rng *rand.Rand, n, d int) map[string][][]float32 {
	base := make([]float32, d)
	for c := range base {
		base[c] = float32(rng.NormFloat64())
	}
	perm := make([][]float32, n)
	nudged := make([][]float32, n)
	normal := make([][]float32, n)
	offset := make([][]float32, n)
	clusters := make([][]float32, n) // far apart: the Gram form's cancellation
	for i := range n {
		perm[i] = slices.Clone(base)
		rng.Shuffle(d, func(a, b int) { perm[i][a], perm[i][b] = perm[i][b], perm[i][a] })
		nudged[i] = slices.Clone(base)
		c := rng.IntN(d)
		nudged[i][c] = math.Nextafter32(nudged[i][c], float32(math.Inf(1-2*(i%2))))
		normal[i] = make([]float32, d)
		offset[i] = make([]float32, d)
		for c := range normal[i] {
			normal[i][c] = float32(rng.NormFloat64())
			offset[i][c] = 100 + float32(rng.NormFloat64())
		}
		clusters[i] = make([]float32, d)
		for c := range clusters[i] {
			clusters[i][c] = float32(1000*(2*float64(i%2)-1) + 1e-3*rng.NormFloat64())
		}
	}
	return map[string][][]float32{"perm": perm, "nudged": nudged, "normal": normal, "offset": offset, "clusters": clusters}
}

// TestGramDecisionsExact: Krum, Multi-Krum and Bulyan select the same
// updates, in the same order, with the same aggregate bits, as the
// differences kernel alone, on cohorts built so that many decisions need
// the exact refinement; and a refined row's score has the exact bits.
func TestGramDecisionsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 5))
	bulyanGram = true
	defer func() { bulyanGram = false }()
	refinedSome := false
	for _, nd := range [][2]int{{7, 40}, {13, 600}, {24, 1030}} {
		n, d := nd[0], nd[1]
		for kind, xs := range nearTies(rng, n, d) {
			us := make([]Update, n)
			for i, x := range xs {
				us[i] = Update{ID: fmt.Sprintf("u%02d", i), Delta: x, Samples: 1}
			}
			rules := []Rule{Krum{F: 1}, Krum{F: (n - 3) / 2}, MultiKrum{F: 1, M: n - 1}, MultiKrum{F: (n - 3) / 2, M: n - (n-3)/2}, Bulyan{F: 1}, Bulyan{F: (n - 3) / 4}}
			for _, r := range rules {
				name := fmt.Sprintf("%s/%s/n=%d/%+v", kind, r.Name(), n, r)
				run := func(gram bool) ([]float32, Report) {
					gramEnabled = gram
					defer func() { gramEnabled = true }()
					dst := make([]float32, d)
					rep, err := r.Aggregate(dst, us)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					return dst, rep
				}
				wantDst, wantRep := run(false)
				gotDst, gotRep := run(true)
				if !sameBits(gotDst, wantDst) {
					t.Fatalf("%s: aggregate differs from the differences kernel's", name)
				}
				for i, e := range gotRep.Entries {
					w := wantRep.Entries[i]
					if e.Selected != w.Selected || e.Weight != w.Weight {
						t.Fatalf("%s: entry %d selected %v weight %v, want %v %v", name, i, e.Selected, e.Weight, w.Selected, w.Weight)
					}
					if math.Abs(e.Score-w.Score) > 1e-4*w.Score {
						t.Fatalf("%s: entry %d score %g, want %g", name, i, e.Score, w.Score)
					}
				}
			}
			// Multi-Krum's whole order, and refined rows' exact scores.
			pd, _ := newPairDist(vectors(us), true)
			alive := make([]bool, n)
			for i := range alive {
				alive[i] = true
			}
			k := n - 3
			scores, order := pd.resolve(us, alive, k, n, false)
			dist, _ := pairwiseSquaredDistancesFinite(vectors(us))
			exact := newNeighbours(dist, n).scores(alive, k)
			if wantOrder := krumOrder(exact, us, alive); !slices.Equal(order, wantOrder) {
				t.Fatalf("%s n=%d: order %v, exact %v", kind, n, order, wantOrder)
			}
			for i, ref := range pd.refined {
				if ref {
					refinedSome = true
					if math.Float64bits(scores[i]) != math.Float64bits(exact[i]) {
						t.Fatalf("%s n=%d: refined row %d score %v, exact %v", kind, n, i, scores[i], exact[i])
					}
				}
			}
		}
	}
	if !refinedSome {
		t.Errorf("no row was refined: the cohorts do not test the refinement")
	}
}

// TestGramIdenticalScoreZero: updates with k identical copies score
// exactly 0 on the Gram path.
func TestGramIdenticalScoreZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	n, d := 9, 1000
	us := make([]Update, n)
	same := make([]float32, d)
	for c := range same {
		same[c] = 3 + float32(rng.NormFloat64())
	}
	for i := range us {
		x := slices.Clone(same)
		if i >= 6 {
			for c := range x {
				x[c] = float32(rng.NormFloat64())
			}
		}
		us[i] = Update{ID: fmt.Sprintf("u%d", i), Delta: x, Samples: 1}
	}
	rep, err := Krum{F: 3}.Aggregate(make([]float32, d), us) // k = 9−3−2 = 4 < 5 copies
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rep.Entries[:6] {
		if e.Score != 0 {
			t.Errorf("copy %d scores %g, want 0", i, e.Score)
		}
	}
}

// TestExactRowsSameBits: exactRows gives pairwiseSquaredDistancesFinite's
// bits for any rows and columns, in any tile position.
func TestExactRowsSameBits(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n := len(xs)
			want, finite := pairwiseSquaredDistancesFinite(xs)
			if !finite || n < 2 {
				return
			}
			rng := rand.New(rand.NewPCG(uint64(n), uint64(len(xs[0]))))
			rs := rng.Perm(n)[:1+rng.IntN(n)]
			// Random columns, and all of them as refine passes them
			// (every row of rs a column too: those pairs computed once).
			for _, cols := range [][]int{rng.Perm(n)[:1+rng.IntN(n)], rng.Perm(n)} {
				for r, row := range exactRows(xs, rs, cols) {
					for q, v := range row {
						if w := want[rs[r]*n+cols[q]]; math.Float64bits(v) != math.Float64bits(w) {
							t.Fatalf("pair %d,%d: %v, want %v", rs[r], cols[q], v, w)
						}
					}
				}
			}
		})
	})
}
