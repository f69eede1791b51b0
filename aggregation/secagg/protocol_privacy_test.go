package secagg

import (
	mrand "math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// TestPrivacyMaskedInputUniform is an honest, limited privacy test. What
// the coordinator sees of participant 1 is: its advertisement (fresh keys
// and a signature, made before any input exists), its ShareKeys (a
// commitment and ciphertexts of shares of fresh secrets, also made before
// the input is given), its consistency signature (of the survivor list),
// its unmask response (shares of its neighbours' secrets) and its masked
// input. Only the masked input depends on the input: the API takes the
// input in MaskedInput and nowhere else. So the test looks at the masked
// input.
//
// It runs many sessions with fresh randomness (seeded, so the test is
// deterministic) in which participant 1's input is all 0 in one case and
// all 2^32−1 in the other, and checks with chi-square tests that each
// byte lane of its masked words is uniform in both cases, and that the two
// cases have the same distribution; every session's sum must also be
// right. The 12 tests together have significance 0.001 (Bonferroni:
// 0.001/12 each), so that a change of seeds or key schedule trips them
// by chance with probability 0.001, not 1%. A control shows the test has power: the
// same words with the top byte of the mask dropped are rejected.
//
// What this shows: no gross leak of the input into the masked words,
// such as a missing mask, a mask covering only some bits, masks that
// cancel within one participant (a sign error), or a mask seeded
// constantly. What it does not show: that the masked input is
// computationally indistinguishable from random. That rests on AES-128-CTR
// being a PRG, on X25519 and HKDF, and on the protocol's proof (Bonawitz et
// al., Theorems 6.2–6.5); a weak but balanced generator would pass this
// test. It only tests single-byte marginals, not joint distributions
// across words, sessions or messages, and it says nothing about a
// malicious server (see TestUnmaskRefusals and TestSplitView for that).
func TestPrivacyMaskedInputUniform(t *testing.T) {
	const (
		sessions = 50
		dim      = 256 // 12,800 words per case, 50 per bin and byte lane
		bins     = 256
		tests    = 4 * 3 // per byte lane: two uniformity tests, one homogeneity test
		alpha    = 0.001 / tests
	)
	critical := distuv.ChiSquared{K: bins - 1}.Quantile(1 - alpha)
	cfg := testConfig(3, 2, 0, dim)
	others := mrand.New(mrand.NewPCG(21, 21))

	cases := []struct {
		name string
		word uint32
	}{{"zero", 0}, {"top", 0xffffffff}}
	var hist [2][4][bins]float64  // [case][byte lane][value]
	var leaky [2][4][bins]float64 // the control
	for ci, c := range cases {
		for i := range sessions {
			inputs := randomInputs(others, 3, dim)
			for j := range inputs[1] {
				inputs[1][j] = c.word
			}
			s := newSession(t, cfg, inputs, uint64(1_000_000*(ci+1)+i))
			sum, phase, err := s.run()
			if err != nil {
				t.Fatalf("%s session %d failed at %v: %v", c.name, i, phase, err)
			}
			if !slices.Equal(sum, plainSum(inputs, []uint32{1, 2, 3})) {
				t.Fatalf("%s session %d: wrong sum", c.name, i)
			}
			if s.masked[0].ID != 1 {
				t.Fatalf("first masked input is participant %d's", s.masked[0].ID)
			}
			for _, y := range s.masked[0].Masked {
				leak := c.word + (y-c.word)&0x00ffffff
				for lane := range 4 {
					hist[ci][lane][byte(y>>(8*lane))]++
					leaky[ci][lane][byte(leak>>(8*lane))]++
				}
			}
		}
	}

	for lane := range 4 {
		for ci, c := range cases {
			if x := chiSquareUniform(hist[ci][lane][:]); x > critical {
				t.Errorf("input %s, byte %d of the masked words: chi-square %.1f > %.1f (df %d, alpha %g): not uniform",
					c.name, lane, x, critical, bins-1, alpha)
			} else {
				t.Logf("input %s, byte %d: chi-square %.1f (critical %.1f)", c.name, lane, x, critical)
			}
		}
		if x := chiSquareHomogeneity(hist[0][lane][:], hist[1][lane][:]); x > critical {
			t.Errorf("byte %d: chi-square %.1f > %.1f: the masked words' distribution depends on the input", lane, x, critical)
		}
	}
	// Control: with the mask's top byte dropped, the top lane gives the
	// input away and the test must say so.
	for ci, c := range cases {
		if x := chiSquareUniform(leaky[ci][3][:]); x <= critical {
			t.Errorf("control, input %s: chi-square %.1f <= %.1f: the test cannot see a leak", c.name, x, critical)
		} else {
			t.Logf("control, input %s: chi-square %.1f", c.name, x)
		}
	}
}

// chiSquareUniform is Pearson's statistic of the counts against the
// uniform distribution.
func chiSquareUniform(counts []float64) float64 {
	total := 0.0
	for _, c := range counts {
		total += c
	}
	want := total / float64(len(counts))
	x := 0.0
	for _, c := range counts {
		x += (c - want) * (c - want) / want
	}
	return x
}

// chiSquareHomogeneity is Pearson's statistic of the 2×k contingency table
// of a and b: do they come from one distribution.
func chiSquareHomogeneity(a, b []float64) float64 {
	var ta, tb float64
	for i := range a {
		ta += a[i]
		tb += b[i]
	}
	x := 0.0
	for i := range a {
		col := a[i] + b[i]
		if col == 0 {
			continue
		}
		ea, eb := col*ta/(ta+tb), col*tb/(ta+tb)
		x += (a[i]-ea)*(a[i]-ea)/ea + (b[i]-eb)*(b[i]-eb)/eb
	}
	return x
}
