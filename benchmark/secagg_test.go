package benchmark

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
)

func TestSecAggJSON(t *testing.T) {
	const n, d = 8, 1000
	var progress bytes.Buffer
	res, err := SecAgg(context.Background(), SecAggOptions{N: n, D: d, Dropout: 0.25, Seed: 3, Progress: &progress})
	if err != nil {
		t.Fatalf("SecAgg: %v", err)
	}
	got := jsonObject(t, res)
	for _, k := range []string{"n", "d", "dropout", "client_seconds", "server_seconds", "bytes_per_client", "plain_bytes_per_client",
		"threshold", "dropped", "masking_seconds", "unmask_seconds", "baseline_keystream_seconds", "client_ratio", "server_ratio",
		"max_error", "error_bound", "server_masks", "keystream_floor_seconds", "server_over_floor"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON %v has no key %q", got, k)
		}
	}
	for _, c := range []struct {
		key  string
		want float64
	}{
		{"n", n}, {"d", d}, {"dropout", 0.25}, {"dropped", 2}, {"threshold", 6}, {"plain_bytes_per_client", 4 * d},
		// 6 self masks, and 2 dropped with 6 surviving neighbours each.
		{"server_masks", 6 + 2*6},
		{"masked_bytes", SecAggFraming + 4*(d+1)},
	} {
		if got[c.key] != c.want {
			t.Errorf("JSON %q = %v, want %v", c.key, got[c.key], c.want)
		}
	}
	for _, k := range []string{"client_seconds", "masking_seconds", "server_seconds", "unmask_seconds", "baseline_keystream_seconds",
		"client_ratio", "server_ratio", "error_bound", "keystream_floor_seconds", "server_over_floor"} {
		if v, _ := got[k].(float64); !(v > 0) {
			t.Errorf("JSON %q = %v, want positive", k, got[k])
		}
	}
	if res.MaskingSeconds > res.ClientSeconds || res.UnmaskSeconds > res.ServerSeconds {
		t.Errorf("masking %g s > client %g s or unmask %g s > server %g s: a part exceeds its whole",
			res.MaskingSeconds, res.ClientSeconds, res.UnmaskSeconds, res.ServerSeconds)
	}
	if !(res.MaxError >= 0 && res.MaxError <= res.ErrorBound) {
		t.Errorf("max error %g, want within [0, %g]", res.MaxError, res.ErrorBound)
	}

	// A survivor sends, besides two signatures: the two public keys; the
	// commitment and a share for each of the n-1 others; its masked
	// input; the 6 self-mask shares of the survivors and the 2 mask-key
	// shares of the dropped; and the framing of its 5 messages.
	fixed := 64 + 32 + (n-1)*(8+secagg.ShareCiphertextSize) + 4*(d+1) + 8*(4+32) + 5*SecAggFraming
	// ASN.1 ECDSA P-256 signatures are 70 to 72 bytes but for a chance
	// of about 2^-40 each.
	if lo, hi := fixed+2*60, fixed+2*72; res.BytesPerClient < lo || res.BytesPerClient > hi {
		t.Errorf("bytes_per_client = %d, want %d..%d", res.BytesPerClient, lo, hi)
	}
	if res.KeyMaterialBytes != res.BytesPerClient-res.MaskedBytes {
		t.Errorf("key_material_bytes = %d, want bytes_per_client - masked_bytes = %d", res.KeyMaterialBytes, res.BytesPerClient-res.MaskedBytes)
	}

	for _, round := range []string{"AdvertiseKeys", "ShareKeys", "MaskedInput", "ConsistencyCheck", "Unmasking"} {
		if !strings.Contains(progress.String(), "secagg "+round) {
			t.Errorf("progress %q has no line for %s", progress.String(), round)
		}
	}
}

// TestSecAggDeterministic checks that the seed fixes the data: the
// participants' secrets are fresh, but the masks cancel, so two runs
// decode the same mean, with the same error.
func TestSecAggDeterministic(t *testing.T) {
	for _, o := range []SecAggOptions{
		{N: 5, D: 300, Dropout: 0.2, Seed: 9},
		{N: 10, D: 200, Dropout: 0.1, Degree: 6, Seed: 4}, // SecAgg+ graph, threshold 5 of 7
	} {
		a, err := SecAgg(context.Background(), o)
		if err != nil {
			t.Fatalf("SecAgg(%+v): %v", o, err)
		}
		b, err := SecAgg(context.Background(), o)
		if err != nil {
			t.Fatalf("SecAgg(%+v) again: %v", o, err)
		}
		if a.MaxError != b.MaxError || a.Dropped != b.Dropped {
			t.Errorf("SecAgg(%+v): max error %g then %g, dropped %d then %d, want equal", o, a.MaxError, b.MaxError, a.Dropped, b.Dropped)
		}
	}
}

func TestSecAggOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    SecAggOptions
		want string // in the message; "" for a valid configuration
	}{
		{"two participants", SecAggOptions{N: 2, D: 10}, "n=2"},
		{"too many participants", SecAggOptions{N: secagg.MaxParticipants + 1, D: 10}, "n="},
		{"no coordinates", SecAggOptions{N: 5, D: 0}, "d=0"},
		{"too many coordinates", SecAggOptions{N: 5, D: secagg.MaxDim}, "d="},
		{"negative dropout", SecAggOptions{N: 5, D: 10, Dropout: -0.1}, "dropout=-0.1"},
		{"everyone drops", SecAggOptions{N: 5, D: 10, Dropout: 1}, "dropout=1"},
		{"NaN dropout", SecAggOptions{N: 5, D: 10, Dropout: math.NaN()}, "dropout=NaN"},
		{"negative degree", SecAggOptions{N: 5, D: 10, Degree: -1}, "degree=-1"},
		{"degree n", SecAggOptions{N: 5, D: 10, Degree: 5}, "degree=5"},
		{"odd degree and n", SecAggOptions{N: 5, D: 10, Degree: 3}, "degree·n even"},
		{"negative threshold", SecAggOptions{N: 5, D: 10, Threshold: -1}, "threshold=-1"},
		{"threshold half", SecAggOptions{N: 6, D: 10, Threshold: 3}, "threshold=3"},
		{"threshold above n", SecAggOptions{N: 6, D: 10, Threshold: 7}, "threshold=7"},
		{"threshold above neighbourhood", SecAggOptions{N: 10, D: 10, Degree: 4, Threshold: 6}, "neighbourhood size 5"},
		{"survivors below threshold", SecAggOptions{N: 10, D: 10, Dropout: 0.5}, "5 survivors, fewer than threshold 7"},
		{"survivors below explicit threshold", SecAggOptions{N: 10, D: 10, Dropout: 0.2, Threshold: 9}, "fewer than threshold 9"},
		{"valid", SecAggOptions{N: 10, D: 10, Dropout: 0.3}, ""},
		{"valid regular graph", SecAggOptions{N: 10, D: 10, Degree: 4, Threshold: 3}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.o.check()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("check(%+v) = %v, want nil", tc.o, err)
				}
				if o.Threshold == 0 {
					t.Errorf("check(%+v) left the threshold at 0", tc.o)
				}
				return
			}
			if !errors.Is(err, ErrSecAggOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check(%+v) = %v, want ErrSecAggOptions mentioning %q", tc.o, err, tc.want)
			}
			// SecAgg refuses the same options before doing any work.
			if _, err := SecAgg(context.Background(), tc.o); !errors.Is(err, ErrSecAggOptions) {
				t.Errorf("SecAgg(%+v) = %v, want ErrSecAggOptions", tc.o, err)
			}
		})
	}
}

// TestSecAggCheck checks that a wrong decoded mean voids the measurement.
func TestSecAggCheck(t *testing.T) {
	params, err := secagg.DefaultParams(10, 1)
	if err != nil {
		t.Fatal(err)
	}
	bound := params.ErrorBound(10)
	// Σw·x = (3, −1.5, 0) over Σw = 6: the mean is (0.5, −0.25, 0).
	exact := []float64{3, -1.5, 0}
	for _, tc := range []struct {
		name   string
		mean   []float32
		weight uint64
		ok     bool
	}{
		{"exact", []float32{0.5, -0.25, 0}, 6, true},
		{"within the bound", []float32{0.5, -0.25, float32(bound / 2)}, 6, true},
		{"beyond the bound", []float32{0.5, -0.25 - float32(2*bound), 0}, 6, false},
		{"wrong total weight", []float32{0.5, -0.25, 0}, 7, false},
		{"NaN", []float32{0.5, float32(math.NaN()), 0}, 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &secAggSession{o: SecAggOptions{N: 10}, params: params, exact: exact, exactWeight: 6, mean: tc.mean, weight: tc.weight}
			_, err := s.check()
			if tc.ok && err != nil {
				t.Errorf("check(mean %v, weight %d) = %v, want nil", tc.mean, tc.weight, err)
			}
			if !tc.ok && !errors.Is(err, ErrSecAggWrong) {
				t.Errorf("check(mean %v, weight %d) = %v, want ErrSecAggWrong", tc.mean, tc.weight, err)
			}
		})
	}
}

func TestDefaultSecAggThreshold(t *testing.T) {
	for _, tc := range []struct{ n, degree, want int }{
		{3, 0, 3}, {4, 0, 3}, {8, 0, 6}, {100, 0, 67}, {10, 4, 4}, {10, 9, 7}, {1000, 10, 8},
	} {
		if got := DefaultSecAggThreshold(tc.n, tc.degree); got != tc.want {
			t.Errorf("DefaultSecAggThreshold(%d, %d) = %d, want %d", tc.n, tc.degree, got, tc.want)
		}
	}
}

func TestSecAggCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := SecAgg(ctx, SecAggOptions{N: 4, D: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("SecAgg(canceled) = %v, want context.Canceled", err)
	}
}

// BenchmarkSecAgg runs whole sessions of 20 participants, 2 of which drop
// out, with 10^5 coordinates, and reports the benchmark's figures.
func BenchmarkSecAgg(b *testing.B) {
	var res SecAggResult
	for b.Loop() {
		var err error
		if res, err = SecAgg(context.Background(), SecAggOptions{N: 20, D: 100_000, Dropout: 0.1, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.ClientSeconds*1e3, "client-ms")
	b.ReportMetric(res.ServerSeconds*1e3, "server-ms")
	b.ReportMetric(res.MaskingRatio, "masking-x-keystream")
	b.ReportMetric(res.UnmaskRatio, "unmask-x-keystream")
}

// TestSecAggDP runs the session with and without distributed DP: the DP
// run's mean must carry the mechanism's noise (SecAgg checks its squared
// error against the analytical variance) and its costs are reported
// against the plain run's.
func TestSecAggDP(t *testing.T) {
	const n, d = 6, 1000
	var progress bytes.Buffer
	res, err := SecAgg(context.Background(), SecAggOptions{N: n, D: d, Dropout: 0.2, Seed: 4, DPEpsilon: 8, Progress: &progress})
	if err != nil {
		t.Fatalf("SecAgg: %v", err)
	}
	dp := res.DP
	if dp == nil {
		t.Fatal("no DP result")
	}
	got := jsonObject(t, res)
	if _, ok := got["dp"].(map[string]any)["client_ratio"]; !ok {
		t.Errorf("JSON %v has no dp.client_ratio", got["dp"])
	}
	if dp.PaddedD != 1024 || dp.MaskedBytes != SecAggFraming+4*(1024+1) || dp.MinSurvivors != res.Threshold || dp.Delta != 1e-5 || dp.Rounds != 100 {
		t.Errorf("DP result %+v", dp)
	}
	if !(dp.ClientRatio > 0 && dp.ServerRatio > 0 && dp.NoiseVariance > 0 && dp.ErrorVariance > 0) {
		t.Errorf("DP result %+v: ratios and variances must be positive", dp)
	}
	if !strings.Contains(progress.String(), "secagg+dp MaskedInput") {
		t.Errorf("progress %q has no line for the DP run", progress.String())
	}
	for _, k := range []string{"client_cpu_seconds", "server_cpu_seconds", "client_cpu_ratio", "server_cpu_ratio",
		"noise_seconds", "noise_cpu_seconds", "client_ratio_noise_ahead", "client_cpu_ratio_noise_ahead"} {
		if _, ok := got["dp"].(map[string]any)[k]; !ok {
			t.Errorf("JSON %v has no dp.%s", got["dp"], k)
		}
	}
	// The noise is part of the client's time, and taking it out lowers
	// the ratio.
	if !(dp.NoiseSeconds > 0 && dp.NoiseSeconds < dp.ClientSeconds && dp.ClientRatioNoiseAhead < dp.ClientRatio) {
		t.Errorf("noise %g s of client %g s, ratio %g with the noise drawn ahead against %g", dp.NoiseSeconds, dp.ClientSeconds, dp.ClientRatioNoiseAhead, dp.ClientRatio)
	}
	if runtime.GOOS == "linux" && !(res.ClientCPUSeconds > 0 && res.ServerCPUSeconds > 0 && dp.ClientCPURatio > 0 && dp.ServerCPURatio > 0) {
		t.Errorf("CPU times not measured: client %g s, server %g s, DP ratios %g, %g", res.ClientCPUSeconds, res.ServerCPUSeconds, dp.ClientCPURatio, dp.ServerCPURatio)
	}
	// The two sessions alternate round by round, and so do the replays.
	var order []string
	for line := range strings.Lines(progress.String()) {
		if f := strings.Fields(line); len(f) >= 2 {
			order = append(order, f[0]+" "+f[1])
		}
	}
	want := []string{"secagg AdvertiseKeys", "secagg+dp AdvertiseKeys", "secagg ShareKeys", "secagg+dp ShareKeys",
		"secagg MaskedInput", "secagg+dp MaskedInput", "secagg ConsistencyCheck", "secagg+dp ConsistencyCheck",
		"secagg Unmasking", "secagg+dp Unmasking", "secagg server", "secagg+dp server", "secagg server", "secagg+dp server"}
	if !slices.Equal(order, want) {
		t.Errorf("progress in the order\n%q\nwant\n%q", order, want)
	}
	if _, err := SecAgg(context.Background(), SecAggOptions{N: n, D: d, DPEpsilon: -1}); !errors.Is(err, ErrSecAggOptions) {
		t.Errorf("negative dp epsilon: %v, want ErrSecAggOptions", err)
	}
	// A budget whose noise the ring cannot carry is refused before any work.
	if _, err := SecAgg(context.Background(), SecAggOptions{N: n, D: d, DPEpsilon: 1e-6, DPRounds: 100_000}); !errors.Is(err, ErrSecAggOptions) || !errors.Is(err, secagg.ErrParams) {
		t.Errorf("an impossible budget: %v, want ErrSecAggOptions and secagg.ErrParams", err)
	}
}
