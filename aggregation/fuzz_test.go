package aggregation

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzRules: random small cohorts and configurations never panic, never
// produce NaN or infinities, and fail exactly when Check, CheckCohort or
// FedAvg's zero-sample rule says they must.
func FuzzRules(f *testing.F) {
	f.Add([]byte{7, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, uint8(3), uint8(1), uint8(2), 0.2, 1.0, uint8(3), 0.0, uint8(0), false)
	f.Add([]byte{9, 2, 0xff, 0x7f, 0xff, 0x7f, 1, 2}, uint8(5), uint8(1), uint8(0), 0.0, 0.0, uint8(0), 0.0, uint8(0), true)
	f.Add([]byte{12, 5, 9, 9, 9}, uint8(6), uint8(2), uint8(0), 0.0, 1e-30, uint8(1), 2.5, uint8(2), false)
	f.Add([]byte{3, 1}, uint8(0), uint8(0), uint8(0), 0.0, 0.0, uint8(0), 1e-40, uint8(3), true)
	f.Add([]byte{15, 4, 200, 100, 50}, uint8(4), uint8(2), uint8(3), 0.0, 0.0, uint8(0), 0.0, uint8(3), false)
	f.Add([]byte{9, 6, 1, 2, 250, 3, 7}, uint8(7), uint8(2), uint8(7), 1e-3, 0.0, uint8(40), 0.0, uint8(0), false)
	f.Add([]byte{6, 3, 0xff, 0x7f, 0x80, 0x7f}, uint8(7), uint8(1), uint8(1), 0.0, 0.0, uint8(101), 0.0, uint8(2), true)
	f.Fuzz(func(t *testing.T, data []byte, rule, fb, mb uint8, beta, tau float64, iters uint8, clip float64, bucket uint8, raw bool) {
		if len(data) < 2 {
			return
		}
		n, d := int(data[0]%16), int(data[1]%10)
		body := data[2:]
		us := make([]Update, n)
		for i := range us {
			x := make([]float32, d)
			for j := range x {
				k := i*d + j
				if raw {
					// Raw bits: extremes, subnormals, NaN and infinities.
					var b [4]byte
					for l := range b {
						if len(body) > 0 {
							b[l] = body[(4*k+l)%len(body)]
						}
					}
					x[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[:]))
				} else if len(body) > 0 {
					x[j] = float32(int8(body[k%len(body)])) / 4
				}
			}
			us[i] = Update{ID: string(rune('a' + i)), Delta: x, Samples: uint64(i % 3)}
		}
		c := Config{Rule: ruleNames[int(rule)%len(ruleNames)], F: int(fb % 6), NormClip: clip, Bucket: int(bucket % 5)}
		switch c.Rule {
		case NameFedAvg:
			c.F = 0
		case NameMultiKrum:
			c.M = int(mb % 8)
		case NameTrimmedMean:
			c.Beta = beta
		case NameCenteredClipping:
			c.Tau, c.Iterations = tau, int(iters%6)
		case NameRFA:
			// iters up to 255 crosses MaxRFAIterations; beta as ν covers
			// negative, zero and huge smoothing; mb picks the start, the
			// sample cap and whether any update claims zero samples.
			c.Iterations, c.Nu = int(iters), beta
			if mb&2 != 0 {
				c.Start = RFAStartZero
			}
			if mb&4 != 0 {
				c.MaxSamples = 1
			}
			for i := range us {
				us[i].Samples += uint64(mb & 1)
			}
		}
		r, err := New(c)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New(%+v) = %v, want ErrConfig", c, err)
			}
			return
		}
		r = WithRand(r, rand.NewChaCha8([32]byte{data[0], data[1]}))
		dst := make([]float32, d)
		rep, err := r.Aggregate(dst, us)
		checkErr := Check(d, us)
		cohortErr := c.CheckCohort(n)
		zero := c.Rule == NameFedAvg && n > 0 && us[0].Samples == 0
		anyZero := false
		for _, u := range us {
			anyZero = anyZero || u.Samples == 0
		}
		if c.Rule == NameRFA && anyZero {
			// Without bucketing the zero claim is refused; with it, a
			// bucket's claims are summed and may not be zero.
			if c.Bucket <= 1 {
				zero = true
			} else if checkErr == nil && cohortErr == nil && errors.Is(err, ErrZeroSamples) {
				return
			}
		}
		switch {
		case checkErr != nil:
			if err == nil {
				t.Fatalf("%+v: Aggregate succeeded, Check = %v", c, checkErr)
			}
		case cohortErr != nil:
			if !errors.Is(err, ErrCohort) {
				t.Fatalf("%+v: Aggregate = %v, CheckCohort(%d) = %v", c, err, n, cohortErr)
			}
		case zero:
			if !errors.Is(err, ErrZeroSamples) {
				t.Fatalf("%+v: Aggregate = %v, want ErrZeroSamples", c, err)
			}
		case err != nil:
			t.Fatalf("%+v: Aggregate(%d×%d) = %v, but Check and CheckCohort passed", c, n, d, err)
		}
		if err != nil {
			return
		}
		for j, v := range dst {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%+v: dst[%d] = %v", c, j, v)
			}
		}
		if len(rep.Entries) != n {
			t.Fatalf("%+v: %d entries for %d updates", c, len(rep.Entries), n)
		}
		for _, e := range rep.Entries {
			if math.IsNaN(e.Score) || math.IsNaN(e.Weight) || math.IsNaN(e.Clip) {
				t.Fatalf("%+v: entry %+v has NaN", c, e)
			}
		}
	})
}
