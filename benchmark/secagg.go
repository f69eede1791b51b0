package benchmark

// # Secure aggregation
//
// SecAgg runs one whole session of aggregation/secagg in this process, as
// the coordinator and N participants would run it over the network, with
// real ECDSA P-256 identity keys and the fixed-point encoding of
// secagg.Params: N random float32 updates of D coordinates with random
// sample counts are encoded, masked, summed, unmasked and decoded, and
// the decoded weighted mean is checked against the exact one before any
// figure is returned, so that a broken session cannot pass for a fast one.
//
// Dropouts are the server's worst case (Bonawitz et al., CCS 2017):
// the dropped participants leave after ShareKeys and before sending their
// masked input, so every survivor's input carries a pairwise mask with
// each of them that the server must reconstruct and remove.
//
// The participants run one after another, each on the whole machine, as
// each would on its own machine: a client's MaskedInput and the server's
// mask removal expand masks on GOMAXPROCS goroutines (see secagg's
// applyMasks), so the times are for SecAggResult.Cores cores. The
// server's times are the median of SecAggServerRuns runs over the same
// messages: the live one and replays by fresh servers, which must unmask
// the same sum. Each time is compared with the unit every
// secure-aggregation cost is made of, measured in the same run: the
// AES-128-CTR keystream of one mask (4·(D+1) bytes, one goroutine,
// crypto/cipher). A client adds N masks
// (with the complete graph), the server removes (N−k) + k·(N−k) masks for
// k dropouts; on c cores that is about N/c and (N−k)(k+1)/c keystreams.

import (
	"cmp"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/cputime"
	"github.com/fedguard/fedguard/internal/workers"
)

// Targets of issue 4 for one secure aggregation of n = 100 participants,
// d = 10^6 coordinates and 10 % dropouts: the figures bench secagg
// compares its measurements with.
const (
	// SecAggMaskingTarget is the most one participant's MaskedInput may
	// take, in seconds.
	SecAggMaskingTarget = 0.150
	// SecAggUnmaskTarget is the most the server's unmasking round may
	// take, in seconds.
	SecAggUnmaskTarget = 1.0
	// SecAggBytesTarget is the most a participant's masked input may
	// weigh relative to its plain float32 update; the key material (keys,
	// shares, signatures) comes on top.
	SecAggBytesTarget = 1.01
)

// SecAggFraming is the fixed per-message overhead counted in
// SecAggResult.BytesPerClient for the transport's framing (a message
// type, a length, a session or round tag), on top of the contents.
const SecAggFraming = 16

// SecAggServerRuns is how many times SecAgg runs the server over the
// session's messages: one server run is a single measurement of a few
// hundred milliseconds, which a noisy machine easily doubles.
const SecAggServerRuns = 3

// secAggBaselineRuns is how many times the baseline is timed before the
// session, and again after: one run is half a millisecond for d = 10^6, so
// a single one is at the mercy of the scheduler.
const secAggBaselineRuns = 10

// ErrSecAggOptions marks options SecAgg refuses.
var ErrSecAggOptions = errors.New("benchmark: invalid secagg options")

// ErrSecAggWrong means the session completed but its decoded mean is not
// the weighted mean of the survivors' inputs within the encoding's error
// bound (or carries the wrong total weight): the measurement is void.
var ErrSecAggWrong = errors.New("benchmark: secure aggregation returned a wrong mean")

// SecAggOptions configure SecAgg.
type SecAggOptions struct {
	// N participants with updates of D float32 coordinates.
	N, D int
	// Dropout is the fraction of participants, rounded to the nearest
	// count, that drop out after ShareKeys and before MaskedInput.
	Dropout float64
	// Threshold is the number of shares that reconstruct a secret. 0
	// means the default: ⌊2m/3⌋+1 with m the size of a closed
	// neighbourhood (N for the complete graph, Degree+1 otherwise), and
	// at least ⌊m/2⌋+1 (see secagg.Config.Validate).
	Threshold int
	// Degree is the neighbour graph's degree: 0 for the complete graph,
	// k for SecAgg+'s k-regular graph.
	Degree int
	// Seed makes the inputs, the weights, the rounding and the choice of
	// who drops out reproducible. The participants' secrets and identity
	// keys come from crypto/rand, as in production.
	Seed uint64
	// Progress, when set, receives a line per round with its times.
	Progress io.Writer
	// DPEpsilon, when positive, runs the same session a second time with
	// distributed DP (secagg.DDP, the noise calibrated for DPRounds rounds
	// of (DPEpsilon, DPDelta)-DP with the threshold as the fewest
	// survivors) and reports its costs against the first run's in
	// SecAggResult.DP. Weights are then 1 and updates are clipped to
	// DPClipNorm in ℓ2 norm.
	DPEpsilon  float64
	DPDelta    float64 // default 1e−5
	DPRounds   int     // default 100
	DPClipNorm float64 // default √D/2 (inputs are uniform in [−1, 1], of norm about √(D/3))
	// ServerProfile, when set, receives a pprof CPU profile of the
	// server's replayed runs (all its rounds, no client work) of the
	// session without DP; those replays then run before the DP session's
	// instead of alternating with them.
	ServerProfile io.Writer
	// ClientProfile, when set, receives a pprof CPU profile of the live
	// sessions, every round of both: each sample is labelled role=client
	// or role=server and dp=off or dp=on (go tool pprof -tagfocus).
	ClientProfile io.Writer
}

// SecAggResult is SecAgg's measurement. JSON names are the benchmark's
// stable output format. Times are in seconds.
type SecAggResult struct {
	N       int     `json:"n"`
	D       int     `json:"d"`
	Dropout float64 `json:"dropout"`
	// Threshold and Degree are those of the session run (defaults
	// filled); Dropped is how many participants dropped out.
	Threshold int `json:"threshold"`
	Degree    int `json:"degree"`
	Dropped   int `json:"dropped"`
	// Cores is GOMAXPROCS: the goroutines a client or the server expands
	// masks on.
	Cores int `json:"cores"`

	// ClientSeconds is one surviving participant's compute time over
	// every round (AdvertiseKeys, ShareKeys, Encode, MaskedInput,
	// ConsistencyCheck, Unmask), the median over the survivors;
	// MaskingSeconds is the median of their MaskedInput alone.
	ClientSeconds  float64 `json:"client_seconds"`
	MaskingSeconds float64 `json:"masking_seconds"`
	// ServerSeconds is the server's compute time over its five rounds
	// (CollectKeys, CollectShares, CollectMasked, CollectConsistency,
	// Unmask) and Decode; UnmaskSeconds is its Unmask alone. Both are
	// medians of SecAggServerRuns runs.
	ServerSeconds float64 `json:"server_seconds"`
	UnmaskSeconds float64 `json:"unmask_seconds"`
	// ClientCPUSeconds and ServerCPUSeconds are the CPU times (user and
	// system, on every core) of the same work as ClientSeconds and
	// ServerSeconds, medians likewise: on a loaded machine wall times
	// grow with the load, CPU times much less. 0 where the system cannot
	// tell.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	// BaselineKeystreamSeconds is the time of the AES-128-CTR keystream
	// of one mask, 4·(D+1) bytes, on one goroutine: the median of
	// secAggBaselineRuns runs before the session and as many after. The ratios are the times
	// above over it.
	BaselineKeystreamSeconds float64 `json:"baseline_keystream_seconds"`
	ClientRatio              float64 `json:"client_ratio"`
	MaskingRatio             float64 `json:"masking_ratio"`
	ServerRatio              float64 `json:"server_ratio"`
	UnmaskRatio              float64 `json:"unmask_ratio"`
	// ServerMasks is how many masks the server must expand: each
	// survivor's self mask and each pairwise mask between a dropped
	// participant and a surviving neighbour. KeystreamFloorSeconds is the
	// time to expand that much AES-128-CTR keystream (ServerMasks ×
	// 4·(D+1) bytes) on Cores goroutines and nothing else, the median of
	// SecAggServerRuns runs interleaved with the server's: the floor of
	// Unmask. ServerOverFloor is ServerSeconds / KeystreamFloorSeconds.
	ServerMasks           int     `json:"server_masks"`
	KeystreamFloorSeconds float64 `json:"keystream_floor_seconds"`
	ServerOverFloor       float64 `json:"server_over_floor"`

	// BytesPerClient is the most any surviving participant sent in the
	// session (they differ only by the lengths of their ASN.1
	// signatures), counted from the message contents plus SecAggFraming
	// per message:
	//
	//	AdvertiseKeys   cPub 32 + sPub 32 + signature
	//	ShareKeys       commitment 32 + per share (from, to) 8 + secagg.ShareCiphertextSize
	//	MaskedInput     4·(D+1)
	//	ConsistencySig  signature
	//	UnmaskResponse  per revealed share owner 4 + scalar 32
	//
	// Sender ids are not counted: the transport knows them from the
	// authenticated connection. MaskedBytes is the MaskedInput message
	// with its framing; KeyMaterialBytes is everything else.
	BytesPerClient      int `json:"bytes_per_client"`
	MaskedBytes         int `json:"masked_bytes"`
	KeyMaterialBytes    int `json:"key_material_bytes"`
	PlainBytesPerClient int `json:"plain_bytes_per_client"` // 4·D: a plain float32 update

	// MaxError is the largest absolute difference, over the coordinates,
	// between the decoded mean and the exact weighted mean (in float64)
	// of the survivors' inputs; ErrorBound is what secagg.Params
	// guarantees (Params.ErrorBound). SecAgg fails unless MaxError ≤
	// ErrorBound.
	MaxError   float64 `json:"max_error"`
	ErrorBound float64 `json:"error_bound"`
	// DP is the run with distributed DP, when SecAggOptions.DPEpsilon is
	// set.
	DP *SecAggDPResult `json:"dp,omitempty"`
}

// SecAggDPResult is the cost of distributed DP (secagg.DDP) in the same
// session as SecAggResult's, measured in the same run: the same
// participants, inputs and dropouts, the updates encoded with rotation,
// conditional rounding and discrete Gaussian noise instead of the
// fixed-point encoding, and the sum decoded with the inverse rotation.
type SecAggDPResult struct {
	Epsilon  float64 `json:"epsilon"`
	Delta    float64 `json:"delta"`
	Rounds   int     `json:"rounds"`
	ClipNorm float64 `json:"clip_norm"`
	// MinSurvivors is the number of noise shares the account assumes (the
	// threshold); Sigma2 is each participant's σ² on the grid, PaddedD
	// the rotation's power of two.
	MinSurvivors int    `json:"min_survivors"`
	Sigma2       uint64 `json:"sigma2"`
	PaddedD      int    `json:"padded_d"`
	// Times as in SecAggResult, with DP.
	ClientSeconds  float64 `json:"client_seconds"`
	MaskingSeconds float64 `json:"masking_seconds"`
	ServerSeconds  float64 `json:"server_seconds"`
	UnmaskSeconds  float64 `json:"unmask_seconds"`
	// ClientRatio and ServerRatio are the times with DP over those
	// without (issue 15's target: at most 1.2); the two sessions run
	// their rounds, and the server its replays, alternately.
	ClientRatio float64 `json:"client_ratio"`
	ServerRatio float64 `json:"server_ratio"`
	// CPU times and their ratios, as in SecAggResult.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	ClientCPURatio   float64 `json:"client_cpu_ratio"`
	ServerCPURatio   float64 `json:"server_cpu_ratio"`
	// NoiseSeconds and NoiseCPUSeconds are a survivor's time to make its
	// encoder and draw its noise (secagg.DDPEncoder.DrawNoise), medians;
	// they are part of ClientSeconds and ClientCPUSeconds. The noise does
	// not depend on the update, so a hospital can draw it while it trains:
	// ClientRatioNoiseAhead and ClientCPURatioNoiseAhead are the ratios
	// with that time taken out of the round, the CPU it takes being spent
	// before the round instead of in it.
	NoiseSeconds             float64 `json:"noise_seconds"`
	NoiseCPUSeconds          float64 `json:"noise_cpu_seconds"`
	ClientRatioNoiseAhead    float64 `json:"client_ratio_noise_ahead"`
	ClientCPURatioNoiseAhead float64 `json:"client_cpu_ratio_noise_ahead"`
	MaskedBytes              int     `json:"masked_bytes"`
	// ErrorVariance is the decoded mean's squared error per coordinate,
	// against the exact mean of the clipped inputs; NoiseVariance is the
	// mechanism's (DDP.NoiseVariance), and the rounding adds at most
	// RoundingVariance. SecAgg fails unless the first is within a few
	// standard errors of the range the other two give.
	ErrorVariance    float64 `json:"error_variance"`
	NoiseVariance    float64 `json:"noise_variance"`
	RoundingVariance float64 `json:"rounding_variance"`
}

// DefaultSecAggThreshold is the threshold SecAgg uses when none is given,
// for n participants and the given degree (0: complete graph): ⌊2m/3⌋+1
// with m the closed neighbourhood's size (n, or degree+1), at least
// ⌊m/2⌋+1 and at most m. Two thirds tolerates a third of a neighbourhood
// dropping out and ⌊m/3⌋ participants colluding with a malicious server.
func DefaultSecAggThreshold(n, degree int) int {
	m := n
	if degree > 0 {
		m = degree + 1
	}
	return min(m, max(2*m/3+1, m/2+1))
}

// secAggDropped returns how many of n participants drop out at rate p.
func secAggDropped(n int, p float64) int { return int(math.Round(p * float64(n))) }

// check validates o and fills its defaults.
func (o SecAggOptions) check() (SecAggOptions, error) {
	switch {
	case o.N < 3 || o.N > secagg.MaxParticipants:
		return o, fmt.Errorf("%w: n=%d, want 3..%d", ErrSecAggOptions, o.N, secagg.MaxParticipants)
	case o.D < 1 || o.D+1 > secagg.MaxDim:
		return o, fmt.Errorf("%w: d=%d, want 1..%d (one word is added for the weight)", ErrSecAggOptions, o.D, secagg.MaxDim-1)
	case !(o.Dropout >= 0 && o.Dropout < 1): // also refuses NaN
		return o, fmt.Errorf("%w: dropout=%v, want 0 ≤ dropout < 1", ErrSecAggOptions, o.Dropout)
	case o.Degree < 0 || o.Degree >= o.N:
		return o, fmt.Errorf("%w: degree=%d, want 0 (complete graph) or 1..n-1=%d", ErrSecAggOptions, o.Degree, o.N-1)
	case o.Degree*o.N%2 == 1:
		return o, fmt.Errorf("%w: degree=%d with n=%d: a regular graph needs degree·n even", ErrSecAggOptions, o.Degree, o.N)
	case o.Threshold < 0:
		return o, fmt.Errorf("%w: threshold=%d, want 0 (default) or positive", ErrSecAggOptions, o.Threshold)
	}
	m := o.N
	if o.Degree > 0 {
		m = o.Degree + 1
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultSecAggThreshold(o.N, o.Degree)
	}
	if o.Threshold > m || 2*o.Threshold <= m {
		return o, fmt.Errorf("%w: threshold=%d, want more than half of and at most the neighbourhood size %d (%d..%d)",
			ErrSecAggOptions, o.Threshold, m, m/2+1, m)
	}
	if o.DPEpsilon < 0 || math.IsNaN(o.DPEpsilon) || o.DPDelta < 0 || o.DPRounds < 0 || o.DPClipNorm < 0 || math.IsNaN(o.DPClipNorm) {
		return o, fmt.Errorf("%w: negative DP option", ErrSecAggOptions)
	}
	if o.DPEpsilon > 0 {
		o.DPDelta = cmp.Or(o.DPDelta, 1e-5)
		o.DPRounds = cmp.Or(o.DPRounds, 100)
		if o.DPClipNorm == 0 {
			o.DPClipNorm = math.Sqrt(float64(o.D)) / 2
		}
	}
	if dropped := secAggDropped(o.N, o.Dropout); o.N-dropped < o.Threshold {
		return o, fmt.Errorf("%w: dropout=%v drops %d of %d participants, leaving %d survivors, fewer than threshold %d",
			ErrSecAggOptions, o.Dropout, dropped, o.N, o.N-dropped, o.Threshold)
	}
	return o, nil
}

// SecAgg runs the secure-aggregation benchmark: one session with o.N
// participants, of which a fraction o.Dropout drops out after ShareKeys.
// It refuses invalid options with an error wrapping ErrSecAggOptions before
// doing any work, stops between participants and rounds when ctx is done,
// and fails with ErrSecAggWrong if the decoded mean is wrong.
//
// It holds the survivors' masked inputs at once, as the server receives
// them: about 4·(D+1)·N bytes, plus a few vectors of D.
func SecAgg(ctx context.Context, o SecAggOptions) (SecAggResult, error) {
	o, err := o.check()
	if err != nil {
		return SecAggResult{}, err
	}
	params, err := secagg.DefaultParams(o.N, 1.0)
	if err != nil {
		return SecAggResult{}, fmt.Errorf("benchmark: secagg encoding for %d participants: %w", o.N, err)
	}
	var dp *secagg.DDP
	if o.DPEpsilon > 0 {
		d := secagg.DefaultDDP(o.D, o.DPClipNorm, sha256.Sum256(fmt.Appendf(nil, "fedguard bench secagg rotation|seed=%d", o.Seed)))
		if d, _, err = d.Calibrate(o.Threshold, o.N, int64(o.DPRounds), o.DPEpsilon, o.DPDelta); err != nil {
			return SecAggResult{}, fmt.Errorf("%w: distributed DP: %w", ErrSecAggOptions, err)
		}
		dp = &d
	}
	ks := newKeystreamBaseline(o.D + 1)
	baseline := ks.times(secAggBaselineRuns)

	s, err := newSecAggSession(o, params, nil)
	if err != nil {
		return SecAggResult{}, err
	}
	sessions := []*secAggSession{s}
	var sdp *secAggSession
	if dp != nil {
		if sdp, err = newSecAggSession(o, params, dp); err != nil {
			return SecAggResult{}, fmt.Errorf("with distributed DP: %w", err)
		}
		sessions = append(sessions, sdp)
	}
	if o.ClientProfile != nil {
		if err := pprof.StartCPUProfile(o.ClientProfile); err != nil {
			return SecAggResult{}, fmt.Errorf("benchmark: secagg client profile: %w", err)
		}
	}
	err = runSecAggSessions(ctx, sessions)
	if o.ClientProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return SecAggResult{}, err
	}
	maxErr, err := s.finish()
	if err != nil {
		return SecAggResult{}, err
	}
	if sdp != nil {
		if _, err := sdp.finish(); err != nil {
			return SecAggResult{}, fmt.Errorf("with distributed DP: %w", err)
		}
	}
	if err := replaySecAggServers(ctx, o, sessions); err != nil {
		return SecAggResult{}, err
	}
	baseline = append(baseline, ks.times(secAggBaselineRuns)...)

	res := SecAggResult{
		N: o.N, D: o.D, Dropout: o.Dropout,
		Threshold: o.Threshold, Degree: o.Degree, Dropped: o.N - len(s.survivors),
		Cores:                    runtime.GOMAXPROCS(0),
		BaselineKeystreamSeconds: median(baseline),
		PlainBytesPerClient:      4 * o.D,
		MaskedBytes:              SecAggFraming + 4*(o.D+1),
		MaxError:                 maxErr,
		ErrorBound:               params.ErrorBound(o.N),
	}
	t := s.times()
	res.ClientSeconds, res.MaskingSeconds, res.ServerSeconds, res.UnmaskSeconds, res.BytesPerClient = t.client, t.masking, t.server, t.unmask, t.bytes
	res.ClientCPUSeconds, res.ServerCPUSeconds = t.clientCPU, t.serverCPU
	res.KeyMaterialBytes = res.BytesPerClient - res.MaskedBytes
	res.ServerMasks, res.KeystreamFloorSeconds = s.masks, median(s.floor)
	if res.KeystreamFloorSeconds > 0 {
		res.ServerOverFloor = res.ServerSeconds / res.KeystreamFloorSeconds
	}
	if b := res.BaselineKeystreamSeconds; b > 0 {
		res.ClientRatio, res.MaskingRatio = res.ClientSeconds/b, res.MaskingSeconds/b
		res.ServerRatio, res.UnmaskRatio = res.ServerSeconds/b, res.UnmaskSeconds/b
	}
	if sdp != nil {
		r := &SecAggDPResult{
			Epsilon: o.DPEpsilon, Delta: o.DPDelta, Rounds: o.DPRounds, ClipNorm: o.DPClipNorm,
			MinSurvivors: o.Threshold, Sigma2: dp.Sigma2, PaddedD: dp.Padded(),
			MaskedBytes: SecAggFraming + 4*dp.Words(),
		}
		d := sdp.times()
		r.ClientSeconds, r.MaskingSeconds, r.ServerSeconds, r.UnmaskSeconds = d.client, d.masking, d.server, d.unmask
		r.ClientCPUSeconds, r.ServerCPUSeconds, r.NoiseSeconds, r.NoiseCPUSeconds = d.clientCPU, d.serverCPU, d.noise, d.noiseCPU
		r.ClientRatio, r.ServerRatio = ratio(d.client, t.client), ratio(d.server, t.server)
		r.ClientCPURatio, r.ServerCPURatio = ratio(d.clientCPU, t.clientCPU), ratio(d.serverCPU, t.serverCPU)
		r.ClientRatioNoiseAhead, r.ClientCPURatioNoiseAhead = ratio(d.ahead, t.client), ratio(d.aheadCPU, t.clientCPU)
		r.ErrorVariance, r.NoiseVariance, r.RoundingVariance = sdp.dpError, sdp.dpNoise, sdp.dpRounding
		res.DP = r
	}
	return res, nil
}

// ratio returns a/b, or 0 if b is not positive (a time the system could
// not measure).
func ratio(a, b float64) float64 {
	if !(b > 0) {
		return 0
	}
	return a / b
}

// runSecAggSessions runs the live rounds of the sessions, the one
// without DP and, if there are two, the one with DP, alternately round by
// round, so that a change of the machine's load between them weighs on
// both.
func runSecAggSessions(ctx context.Context, sessions []*secAggSession) error {
	rounds := []struct {
		name string
		run  func(*secAggSession, context.Context) error
	}{
		{"AdvertiseKeys", (*secAggSession).advertise},
		{"ShareKeys", (*secAggSession).share},
		{"MaskedInput", (*secAggSession).mask},
		{"ConsistencyCheck", (*secAggSession).consist},
		{"Unmasking", (*secAggSession).unmask},
	}
	for _, r := range rounds {
		for _, s := range sessions {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("benchmark: secagg interrupted before %s: %w", r.name, err)
			}
			// Collect the garbage of the previous round now rather than
			// during the next round's timed calls.
			runtime.GC()
			clientBefore, serverBefore := slices.Clone(s.clientTime), s.serverTime
			if err := r.run(s, ctx); err != nil {
				err = fmt.Errorf("benchmark: secagg %s: %w", r.name, err)
				if s.dp != nil {
					err = fmt.Errorf("with distributed DP: %w", err)
				}
				return err
			}
			if p := s.o.Progress; p != nil {
				var spent []float64
				for _, id := range s.survivors {
					spent = append(spent, (s.clientTime[id] - clientBefore[id]).Seconds())
				}
				fmt.Fprintf(p, "%s %-17s client (median) %9.4f s   server %9.4f s\n",
					s.label(), r.name, median(spent), (s.serverTime - serverBefore).Seconds())
			}
		}
	}
	return nil
}

// label names the session in progress lines.
func (s *secAggSession) label() string {
	if s.dp != nil {
		return "secagg+dp"
	}
	return "secagg"
}

// finish checks the session's decoded mean and counts the server's masks;
// it returns the largest error of the mean (fixed-point encoding only).
func (s *secAggSession) finish() (float64, error) {
	maxErr, err := s.check()
	if err != nil {
		return 0, err
	}
	s.masks = s.serverMasks()
	s.floor = []float64{keystreamFloor(s.masks, s.cfg.Dim)}
	return maxErr, nil
}

// replaySecAggServers replays the server of each session
// SecAggServerRuns−1 times, alternately, each replay beside a keystream
// floor. With o.ServerProfile the replays of the session without DP run
// first, all of them, under the profiler.
func replaySecAggServers(ctx context.Context, o SecAggOptions, sessions []*secAggSession) error {
	replay := func(s *secAggSession, run int) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("benchmark: secagg interrupted before server run %d: %w", run, err)
		}
		runtime.GC()
		if err := s.replayServer(); err != nil {
			return fmt.Errorf("benchmark: %s server run %d: %w", s.label(), run, err)
		}
		s.floor = append(s.floor, keystreamFloor(s.masks, s.cfg.Dim))
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%s %-17s %30s server %9.4f s (Unmask %.4f s)\n",
				s.label(), fmt.Sprintf("server run %d/%d", run, SecAggServerRuns), "", s.serverTimes[run-1], s.unmaskTimes[run-1])
		}
		return nil
	}
	if o.ServerProfile != nil {
		if err := pprof.StartCPUProfile(o.ServerProfile); err != nil {
			return fmt.Errorf("benchmark: secagg server profile: %w", err)
		}
		for run := 2; run <= SecAggServerRuns; run++ {
			if err := replay(sessions[0], run); err != nil {
				pprof.StopCPUProfile()
				return err
			}
		}
		pprof.StopCPUProfile()
		sessions = sessions[1:]
	}
	for run := 2; run <= SecAggServerRuns; run++ {
		for _, s := range sessions {
			if err := replay(s, run); err != nil {
				return err
			}
		}
	}
	return nil
}

// secAggTimes are a session's medians, in seconds: a survivor's compute
// over every round (wall and CPU), its MaskedInput alone, its noise (DP
// only), and its compute without the noise (wall and CPU: the noise drawn
// ahead); the server's over every round (wall and CPU) and its Unmask
// alone; and the most bytes a survivor sent.
type secAggTimes struct {
	client, clientCPU, masking, noise, noiseCPU, ahead, aheadCPU float64
	server, serverCPU, unmask                                    float64
	bytes                                                        int
}

func (s *secAggSession) times() secAggTimes {
	var total, totalCPU, mask, noise, noiseCPU, ahead, aheadCPU []float64
	var t secAggTimes
	for _, id := range s.survivors {
		total = append(total, s.clientTime[id].Seconds())
		totalCPU = append(totalCPU, s.clientCPU[id].Seconds())
		mask = append(mask, s.maskTime[id].Seconds())
		noise = append(noise, s.noiseTime[id].Seconds())
		noiseCPU = append(noiseCPU, s.noiseCPU[id].Seconds())
		ahead = append(ahead, (s.clientTime[id] - s.noiseTime[id]).Seconds())
		aheadCPU = append(aheadCPU, (s.clientCPU[id] - s.noiseCPU[id]).Seconds())
		t.bytes = max(t.bytes, s.sent[id])
	}
	t.client, t.clientCPU, t.masking = median(total), median(totalCPU), median(mask)
	t.noise, t.noiseCPU, t.ahead, t.aheadCPU = median(noise), median(noiseCPU), median(ahead), median(aheadCPU)
	t.server, t.serverCPU, t.unmask = median(s.serverTimes), median(s.serverCPUs), median(s.unmaskTimes)
	return t
}

// secAggSession is one session being run: the server, the clients, the
// messages in flight and what was measured. Slices indexed by participant
// id have N+1 entries, the first unused.
type secAggSession struct {
	o      SecAggOptions
	params secagg.Params
	dp     *secagg.DDP // distributed DP instead of params, if set
	// With dp, check's measurement of the mean's squared error and the
	// mechanism's noise and (at most) rounding variances.
	dpError, dpNoise, dpRounding float64
	// masks is how many masks the server expands in Unmask, and floor
	// the keystream floor of that many, timed beside each server run.
	masks int
	floor []float64

	cfg    secagg.Config
	verify secagg.Verify
	server *secagg.Server
	client []*secagg.Client
	drop   []bool // drops out after ShareKeys

	// Every message the clients sent, for replaying the server.
	adverts []*secagg.AdvertiseKeys
	shares  []*secagg.ShareKeys
	masked  []*secagg.MaskedInput
	sigs    []*secagg.ConsistencySig
	resps   []*secagg.UnmaskResponse

	relay     map[uint32][]*secagg.AdvertiseKeys
	route     map[uint32][]*secagg.EncryptedShare
	survivors []uint32 // U3 as the server announced it
	requests  map[uint32]*secagg.UnmaskRequest
	sum       []uint32 // unmasked sum, then decoded into mean
	mean      []float32
	weight    uint64 // total weight Decode reported

	// The reference: Σ w·x over the survivors in float64, and Σ w.
	exact       []float64
	exactWeight uint64

	clientTime, maskTime []time.Duration // by id
	clientCPU            []time.Duration // by id, as clientTime
	noiseTime, noiseCPU  []time.Duration // by id: making the DP encoder and drawing its noise
	serverTime           time.Duration   // of the live run: all rounds and Decode
	serverCPU            time.Duration   // as serverTime
	serverTimes          []float64       // seconds, by run: all rounds and Decode
	serverCPUs           []float64       // seconds, by run, as serverTimes
	unmaskTimes          []float64       // seconds, by run: Server.Unmask alone
	sent                 []int           // bytes sent, by id
}

// newSecAggSession makes the identity keys, the server and the clients,
// and picks who drops out.
func newSecAggSession(o SecAggOptions, params secagg.Params, dp *secagg.DDP) (*secAggSession, error) {
	keys := make([]*ecdsa.PrivateKey, o.N+1)
	for id := 1; id <= o.N; id++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			return nil, fmt.Errorf("benchmark: identity key of participant %d: %w", id, err)
		}
		keys[id] = k
	}
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if id == 0 || int(id) > o.N {
			return nil, fmt.Errorf("no participant %d", id)
		}
		return &keys[id].PublicKey, nil
	})
	cfg := secagg.Config{
		Session:   fmt.Appendf(nil, "fedguard bench secagg|n=%d|d=%d|seed=%d", o.N, o.D, o.Seed),
		N:         o.N,
		Threshold: o.Threshold,
		Degree:    o.Degree,
		GraphSeed: sha256.Sum256(fmt.Appendf(nil, "fedguard bench secagg graph|seed=%d", o.Seed)),
		Dim:       o.D + 1,
	}
	if dp != nil {
		cfg.Dim = dp.Words()
	}
	server, err := secagg.NewServer(cfg, verify)
	if err != nil {
		return nil, fmt.Errorf("benchmark: %w", err)
	}
	s := &secAggSession{
		o: o, params: params, dp: dp, cfg: cfg, verify: verify, server: server,
		client:     make([]*secagg.Client, o.N+1),
		drop:       make([]bool, o.N+1),
		exact:      make([]float64, o.D),
		clientTime: make([]time.Duration, o.N+1),
		maskTime:   make([]time.Duration, o.N+1),
		clientCPU:  make([]time.Duration, o.N+1),
		noiseTime:  make([]time.Duration, o.N+1),
		noiseCPU:   make([]time.Duration, o.N+1),
		sent:       make([]int, o.N+1),
	}
	for id := 1; id <= o.N; id++ {
		c, err := secagg.NewClient(cfg, uint32(id), keys[id], verify, crand.Reader)
		if err != nil {
			return nil, fmt.Errorf("benchmark: participant %d: %w", id, err)
		}
		s.client[id] = c
	}
	perm := rand.New(rand.NewPCG(o.Seed, 0xd409)).Perm(o.N)
	for _, i := range perm[:secAggDropped(o.N, o.Dropout)] {
		s.drop[i+1] = true
	}
	for id := 1; id <= o.N; id++ {
		if !s.drop[id] {
			s.survivors = append(s.survivors, uint32(id))
		}
	}
	return s, nil
}

// timeClient runs f as participant id's compute and counts its time,
// wall and CPU, labelled for a profile (role=client).
func (s *secAggSession) timeClient(id uint32, f func() error) error {
	var err error
	cpu, start := cputime.Process(), time.Now()
	pprof.Do(context.Background(), s.profileLabels("client"), func(context.Context) { err = f() })
	s.clientTime[id] += time.Since(start)
	s.clientCPU[id] += cputime.Process() - cpu
	return err
}

// timeServer runs f as the server's compute and counts its time, wall and
// CPU, labelled for a profile (role=server).
func (s *secAggSession) timeServer(f func() ([]secagg.Rejection, error)) error {
	var rejected []secagg.Rejection
	var err error
	cpu, start := cputime.Process(), time.Now()
	pprof.Do(context.Background(), s.profileLabels("server"), func(context.Context) { rejected, err = f() })
	s.serverTime += time.Since(start)
	s.serverCPU += cputime.Process() - cpu
	if err != nil {
		return err
	}
	if len(rejected) > 0 {
		return fmt.Errorf("server rejected honest participants: %v", rejected)
	}
	return nil
}

// profileLabels labels a profile's samples with the role and whether the
// session has DP.
func (s *secAggSession) profileLabels(role string) pprof.LabelSet {
	dp := "off"
	if s.dp != nil {
		dp = "on"
	}
	return pprof.Labels("role", role, "dp", dp)
}

// phase runs one round of the protocol: the client side for each
// participant of order in turn (step makes participant id's message, timed
// as its compute, and size is what the message adds to its bytes sent
// beyond SecAggFraming), then collect, the server's side, on the messages.
func phase[M any](ctx context.Context, s *secAggSession, order []uint32, step func(id uint32) (M, error), size func(M) int, collect func([]M) ([]secagg.Rejection, error)) error {
	var msgs []M
	for _, id := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		var m M
		err := s.timeClient(id, func() (err error) {
			m, err = step(id)
			return err
		})
		if err != nil {
			return fmt.Errorf("participant %d: %w", id, err)
		}
		s.sent[id] += SecAggFraming + size(m)
		msgs = append(msgs, m)
	}
	return s.timeServer(func() ([]secagg.Rejection, error) { return collect(msgs) })
}

func (s *secAggSession) advertise(ctx context.Context) error {
	order := make([]uint32, s.o.N)
	for i := range order {
		order[i] = uint32(i + 1)
	}
	return phase(ctx, s, order,
		func(id uint32) (*secagg.AdvertiseKeys, error) { return s.client[id].AdvertiseKeys() },
		func(m *secagg.AdvertiseKeys) int { return len(m.CPub) + len(m.SPub) + len(m.Sig) },
		func(msgs []*secagg.AdvertiseKeys) (rejected []secagg.Rejection, err error) {
			s.relay, rejected, err = s.server.CollectKeys(msgs)
			s.adverts = msgs
			return rejected, err
		})
}

func (s *secAggSession) share(ctx context.Context) error {
	size := func(m *secagg.ShareKeys) int {
		n := len(m.SelfCommit)
		for _, sh := range m.Shares {
			n += 8 + len(sh.Ciphertext)
		}
		return n
	}
	return phase(ctx, s, slices.Sorted(maps.Keys(s.relay)),
		func(id uint32) (*secagg.ShareKeys, error) { return s.client[id].ShareKeys(s.relay[id]) },
		size,
		func(msgs []*secagg.ShareKeys) (rejected []secagg.Rejection, err error) {
			s.relay = nil
			s.route, rejected, err = s.server.CollectShares(msgs)
			s.shares = msgs
			return rejected, err
		})
}

// mask makes each survivor's input, encodes and masks it. The inputs are
// made one at a time (untimed) and added to the reference as they go, so
// that only the masked inputs are held at once.
func (s *secAggSession) mask(ctx context.Context) error {
	var msgs []*secagg.MaskedInput
	x := make([]float32, s.o.D)
	enc := make([]uint32, s.cfg.Dim)
	for _, id := range slices.Sorted(maps.Keys(s.route)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.drop[id] {
			continue
		}
		rng := rand.New(rand.NewPCG(s.o.Seed, uint64(id)))
		weight := 1 + rng.Uint64N(1000)
		var norm2 float64
		for i := range x {
			x[i] = float32(2*rng.Float64() - 1)
			norm2 += float64(x[i]) * float64(x[i])
		}
		k := float64(weight) // the fixed-point encoding's weighted sum
		if s.dp != nil {
			// Distributed DP: weight 1, the update clipped in ℓ2 norm.
			weight, k = 1, min(1, s.dp.ClipNorm/math.Sqrt(norm2))
		}
		for i, v := range x {
			s.exact[i] += k * float64(v)
		}
		s.exactWeight += weight
		var round [32]byte
		binary.LittleEndian.PutUint64(round[:], s.o.Seed)
		binary.LittleEndian.PutUint64(round[8:], uint64(id))
		var m *secagg.MaskedInput
		err := s.timeClient(id, func() (err error) {
			if s.dp != nil {
				// As a hospital does every round: a new encoder
				// (rotation signs, generators keyed from crypto/rand),
				// and its noise, timed apart: what a hospital can
				// do while it trains.
				cpu, start := cputime.Process(), time.Now()
				e, err := s.dp.NewEncoder()
				if err != nil {
					return err
				}
				e.DrawNoise()
				s.noiseTime[id], s.noiseCPU[id] = time.Since(start), cputime.Process()-cpu
				if err := e.Encode(enc, x); err != nil {
					return fmt.Errorf("encode: %w", err)
				}
			} else if err := s.params.Encode(enc, x, weight, rand.NewChaCha8(round)); err != nil {
				return fmt.Errorf("encode: %w", err)
			}
			start := time.Now()
			m, err = s.client[id].MaskedInput(s.route[id], enc)
			s.maskTime[id] = time.Since(start)
			return err
		})
		if err != nil {
			return fmt.Errorf("participant %d: %w", id, err)
		}
		s.sent[id] += SecAggFraming + 4*len(m.Masked)
		msgs = append(msgs, m)
	}
	s.route = nil
	var survivors []uint32
	err := s.timeServer(func() (rejected []secagg.Rejection, err error) {
		survivors, rejected, err = s.server.CollectMasked(msgs)
		s.masked = msgs
		return rejected, err
	})
	if err != nil {
		return err
	}
	if !slices.Equal(survivors, s.survivors) {
		return fmt.Errorf("server announced survivors %v, want %v", survivors, s.survivors)
	}
	return nil
}

func (s *secAggSession) consist(ctx context.Context) error {
	return phase(ctx, s, s.survivors,
		func(id uint32) (*secagg.ConsistencySig, error) { return s.client[id].ConsistencyCheck(s.survivors) },
		func(m *secagg.ConsistencySig) int { return len(m.Sig) },
		func(msgs []*secagg.ConsistencySig) (rejected []secagg.Rejection, err error) {
			s.requests, rejected, err = s.server.CollectConsistency(msgs)
			s.sigs = msgs
			return rejected, err
		})
}

// unmask runs the last round and decodes the sum into the mean.
func (s *secAggSession) unmask(ctx context.Context) error {
	before := s.serverTime
	err := phase(ctx, s, slices.Sorted(maps.Keys(s.requests)),
		func(id uint32) (*secagg.UnmaskResponse, error) { return s.client[id].Unmask(s.requests[id]) },
		func(m *secagg.UnmaskResponse) int { return (4 + 32) * (len(m.SelfShares) + len(m.KeyShares)) },
		func(msgs []*secagg.UnmaskResponse) (rejected []secagg.Rejection, err error) {
			s.requests = nil
			s.sum, rejected, err = s.server.Unmask(msgs)
			s.resps = msgs
			return rejected, err
		})
	unmask := s.serverTime - before
	if err != nil {
		return err
	}
	s.mean = make([]float32, s.o.D)
	err = s.timeServer(func() (_ []secagg.Rejection, err error) {
		s.weight, err = s.decode(s.mean, s.sum)
		if err != nil {
			err = fmt.Errorf("decode: %w", err)
		}
		return nil, err
	})
	s.serverTimes = append(s.serverTimes, s.serverTime.Seconds())
	s.serverCPUs = append(s.serverCPUs, s.serverCPU.Seconds())
	s.unmaskTimes = append(s.unmaskTimes, unmask.Seconds())
	return err
}

// replayServer runs a fresh server over the session's messages, times it
// like the live one, and checks that it unmasks the same sum.
func (s *secAggSession) replayServer() error {
	server, err := secagg.NewServer(s.cfg, s.verify)
	if err != nil {
		return err
	}
	var sum []uint32
	mean := make([]float32, s.o.D)
	steps := []struct {
		name string
		run  func() ([]secagg.Rejection, error)
	}{
		{"CollectKeys", func() (r []secagg.Rejection, err error) { _, r, err = server.CollectKeys(s.adverts); return r, err }},
		{"CollectShares", func() (r []secagg.Rejection, err error) { _, r, err = server.CollectShares(s.shares); return r, err }},
		{"CollectMasked", func() (r []secagg.Rejection, err error) { _, r, err = server.CollectMasked(s.masked); return r, err }},
		{"CollectConsistency", func() (r []secagg.Rejection, err error) { _, r, err = server.CollectConsistency(s.sigs); return r, err }},
		{"Unmask", func() (r []secagg.Rejection, err error) { sum, r, err = server.Unmask(s.resps); return r, err }},
		{"Decode", func() ([]secagg.Rejection, error) { _, err := s.decode(mean, sum); return nil, err }},
	}
	var total, unmask, totalCPU time.Duration
	for _, step := range steps {
		cpu, start := cputime.Process(), time.Now()
		rejected, err := step.run()
		d := time.Since(start)
		totalCPU += cputime.Process() - cpu
		if err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		if len(rejected) > 0 {
			return fmt.Errorf("%s rejected honest participants: %v", step.name, rejected)
		}
		total += d
		if step.name == "Unmask" {
			unmask = d
		}
	}
	if !slices.Equal(sum, s.sum) {
		return fmt.Errorf("%w: a replay of the server unmasked another sum", ErrSecAggWrong)
	}
	s.serverTimes = append(s.serverTimes, total.Seconds())
	s.serverCPUs = append(s.serverCPUs, totalCPU.Seconds())
	s.unmaskTimes = append(s.unmaskTimes, unmask.Seconds())
	return nil
}

// check compares the decoded mean with the exact weighted mean of the
// survivors' inputs and returns the largest error.
func (s *secAggSession) check() (float64, error) {
	if s.weight != s.exactWeight {
		return 0, fmt.Errorf("%w: total weight %d, want %d", ErrSecAggWrong, s.weight, s.exactWeight)
	}
	if s.dp != nil {
		return 0, s.checkDP()
	}
	bound := s.params.ErrorBound(s.o.N)
	maxErr, worst := 0.0, 0
	for i, acc := range s.exact {
		if e := math.Abs(float64(s.mean[i]) - acc/float64(s.exactWeight)); e > maxErr || math.IsNaN(e) {
			maxErr, worst = e, i
		}
	}
	if !(maxErr <= bound) {
		return 0, fmt.Errorf("%w: coordinate %d off by %g, bound %g", ErrSecAggWrong, worst, maxErr, bound)
	}
	return maxErr, nil
}

// decode decodes the unmasked sum with the session's encoding.
func (s *secAggSession) decode(mean []float32, sum []uint32) (uint64, error) {
	if s.dp != nil {
		return s.dp.Decode(mean, sum)
	}
	return s.params.Decode(mean, sum)
}

// checkDP compares the squared error of the mean decoded with distributed
// DP with the mechanism's variance: at least the noise's, at most the
// noise's plus the rounding's bound, within 5 % plus six standard errors
// of the estimate over D coordinates (√(2/D) relative each).
func (s *secAggSession) checkDP() error {
	m := float64(s.exactWeight)
	var sq float64
	for i, acc := range s.exact {
		e := float64(s.mean[i]) - acc/m
		sq += e * e
	}
	s.dpError = sq / float64(len(s.exact))
	s.dpNoise = s.dp.NoiseVariance(int(s.exactWeight))
	s.dpRounding = 1 / (4 * s.dp.Scale * s.dp.Scale * m)
	tol := 0.05 + 6*math.Sqrt(2/float64(len(s.exact)))
	if !(s.dpError >= s.dpNoise*(1-tol) && s.dpError <= (s.dpNoise+s.dpRounding)*(1+tol)) {
		return fmt.Errorf("%w: with distributed DP the mean's squared error is %g per coordinate, want %g to %g (noise, plus rounding)",
			ErrSecAggWrong, s.dpError, s.dpNoise, s.dpNoise+s.dpRounding)
	}
	return nil
}

// keystreamBaseline times the AES-128-CTR keystream of one mask.
type keystreamBaseline struct {
	block     cipher.Block
	zero, out []byte
}

func newKeystreamBaseline(words int) *keystreamBaseline {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		panic("benchmark: " + err.Error()) // 16-byte keys are always valid
	}
	k := &keystreamBaseline{block: block, zero: make([]byte, 4*words), out: make([]byte, 4*words)}
	k.run() // fault the pages in, untimed
	return k
}

func (k *keystreamBaseline) run() {
	cipher.NewCTR(k.block, make([]byte, aes.BlockSize)).XORKeyStream(k.out, k.zero)
}

// times returns the seconds of n runs.
func (k *keystreamBaseline) times(n int) []float64 {
	ts := make([]float64, n)
	for i := range ts {
		start := time.Now()
		k.run()
		ts[i] = time.Since(start).Seconds()
	}
	return ts
}

// serverMasks counts the masks the server expands in Unmask: one self mask
// per survivor, and one pairwise mask per (dropped, surviving neighbour).
func (s *secAggSession) serverMasks() int {
	n := len(s.survivors)
	for id := 1; id <= s.o.N; id++ {
		if !s.drop[id] {
			continue
		}
		for _, v := range s.cfg.Neighbours(uint32(id)) {
			if !s.drop[v] {
				n++
			}
		}
	}
	return n
}

// keystreamFloor times expanding masks keystreams of words 32-bit words
// each with AES-128-CTR on GOMAXPROCS goroutines, each into a buffer of
// its own: what Unmask cannot do without.
func keystreamFloor(masks, words int) float64 {
	limit := runtime.GOMAXPROCS(0)
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		panic("benchmark: " + err.Error()) // 16-byte keys are always valid
	}
	bufs := make([][]byte, workers.Count(limit, masks))
	for w := range bufs {
		bufs[w] = make([]byte, 4*words)
	}
	zero := make([]byte, 4*words)
	iv := make([]byte, aes.BlockSize) // NewCTR copies it
	start := time.Now()
	workers.Indexed(limit, masks, func(w, _ int) {
		cipher.NewCTR(block, iv).XORKeyStream(bufs[w], zero)
	})
	return time.Since(start).Seconds()
}
