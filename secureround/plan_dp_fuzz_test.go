package secureround_test

import (
	"math"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// FuzzPlanDP feeds FromProto DP parameters a coordinator could send: it
// must refuse or accept without panicking, and a plan it accepts must
// encode an update and decode the sum of encodings.
func FuzzPlanDP(f *testing.F) {
	f.Add(1.0, 512.0, uint64(400), math.Exp(-0.5), uint16(1000))
	f.Add(0.0, 0.0, uint64(0), 0.0, uint16(1))
	f.Add(math.Inf(1), math.NaN(), uint64(1)<<62, 1.0, uint16(3))
	f.Add(1e-300, 1e300, uint64(1), 0.999, uint16(64))
	f.Fuzz(func(t *testing.T, clip, scale float64, sigma2 uint64, beta float64, dim uint16) {
		p := plan(4, 0)
		pb := p.Proto()
		pb.Dp = &fedguardv1.SecureDP{Mechanism: secagg.DDPMechanism, ClipNorm: clip, Scale: scale, Sigma2: sigma2, Beta: beta}
		got, err := secureround.FromProto(p.Federation, p.Start, p.Round, p.Attempt, int(dim), pb)
		if err != nil {
			return
		}
		d := got.DDP()
		e, err := d.NewEncoder()
		if err != nil {
			t.Fatalf("accepted plan %+v: no encoder: %v", d, err)
		}
		x := make([]float32, d.Dim)
		for i := range x {
			x[i] = float32(i%5) - 2
		}
		enc := make([]uint32, d.Words())
		sum := make([]uint32, d.Words())
		for range 2 {
			if err := e.Encode(enc, x); err != nil {
				t.Fatalf("accepted plan %+v: %v", d, err)
			}
			for i, v := range enc {
				sum[i] += v
			}
		}
		mean := make([]float32, d.Dim)
		if m, err := d.Decode(mean, sum); err != nil || m != 2 {
			t.Fatalf("accepted plan %+v: decode = %d, %v", d, m, err)
		}
	})
}
