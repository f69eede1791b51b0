// Package benchmark measures fedguard end to end, in the same process run as
// the baseline it is compared with, so that figures from this shared, noisy
// machine are read as ratios rather than absolute times.
//
// # Rounds
//
// Round starts a real coordinator as a child process (so that its peak
// memory is its own), enrols participants with real certificates, and runs
// rounds over mutual TLS on loopback with no-op local training: every
// participant downloads the model and sends back a fixed update of the same
// size. It reports the median round time (from one round's opening to the
// next one's, as a participant sees it), the payload bytes moved per round
// and the coordinator's peak resident memory, next to the model's size.
//
// Its baseline, measured in the same run, is the time to push the same
// number of bytes through one TLS 1.3 connection on loopback with the same
// certificates and nothing else: the floor for moving the round's data at
// all. RoundResult.Ratio is the round time over that floor.
//
// # Secure rounds
//
// With RoundOptions.Secure the same federation runs every round through
// secure aggregation (SecAgg+ over the coordinator's SecureAggregate
// streams). The result then also has the time of each protocol phase, as
// the first participant sees it (from sending its message of the phase to
// the coordinator's answer, so waiting for the slowest member included),
// and the bytes of every protocol message. SecureRound runs the plain
// round and then the secure one in the same process run, so that the
// secure round is read as a ratio to the plain one.
package benchmark

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/process"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// RoundOptions configure Round.
type RoundOptions struct {
	Participants int
	// Params is the wanted model size; the model is an MLP whose hidden
	// width is chosen to come as close as it can, and the size actually
	// used is reported.
	Params int
	// Rounds to time after one warm-up round (default 5).
	Rounds int
	// Binary is the fedguard executable run as the coordinator (default:
	// this executable).
	Binary string
	// Progress, when set, receives a line per timed round.
	Progress io.Writer
	// Log receives the participants' logs (default: warnings to stderr).
	Log *slog.Logger
	// Secure runs every round through secure aggregation.
	Secure bool
	// Aggregation is the coordinator's aggregation rule (default fedavg).
	// In a secure round, Aggregation.Bucket ≥ 2 splits the cohort into
	// buckets of that size, one secure sum each, and the rule runs over
	// the bucket means (the secure + bucketed robust configuration).
	Aggregation aggregation.Config
}

// RoundResult is Round's measurement. JSON names are the benchmark's stable
// output format.
type RoundResult struct {
	Participants int `json:"participants"`
	Params       int `json:"params"`
	// Secure, Rule and Bucket say which round this is: plain or secure,
	// the aggregation rule, and its bucket size (0: no bucketing).
	Secure       bool    `json:"secure"`
	Rule         string  `json:"rule"`
	Bucket       int     `json:"bucket"`
	RoundSeconds float64 `json:"round_seconds"`
	// Bytes are the bytes moved per round by all participants together:
	// BytesSent + BytesReceived.
	Bytes uint64 `json:"bytes"`
	// BytesSent are the update payload bytes the participants sent per
	// round (secure: the encoded size of every SecureAggregate message,
	// masked input included); BytesReceived the model payload bytes they
	// received (secure: plus every SecureAggregate answer).
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
	PeakRSSBytes  uint64 `json:"peak_rss_bytes"`
	// PeakRSSModels is PeakRSSBytes in model sizes.
	PeakRSSModels float64 `json:"peak_rss_models"`
	// CoordinatorCPUSeconds is the user and system CPU time of the
	// coordinator process over the whole run (start, every round, stop):
	// on a loaded machine a steadier comparison than the round times.
	CoordinatorCPUSeconds float64 `json:"coordinator_cpu_seconds"`
	// ModelBytes is the size of one model (4 bytes per parameter), the unit
	// of the memory goal (participants + 3) × model size.
	ModelBytes uint64    `json:"model_bytes"`
	Rounds     []float64 `json:"round_seconds_all"`
	// Phases, in a secure round, are the median time of each SecAgg
	// phase (secagg.Phases, by Label) over the timed rounds, as the first
	// participant sees it; OtherSeconds is the rest of the median round
	// (model download, training, waiting for the next round).
	Phases       []PhaseTime `json:"phases,omitempty"`
	OtherSeconds float64     `json:"other_seconds,omitempty"`
	// BaselineSeconds is the time to move Bytes through one TLS 1.3
	// loopback connection; Ratio is RoundSeconds / BaselineSeconds.
	BaselineSeconds float64 `json:"baseline_seconds"`
	Ratio           float64 `json:"ratio"`
}

// PhaseTime is one SecAgg phase's time per round.
type PhaseTime struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

const benchFederation = "bench"

// benchFeatures and benchClasses shape the benchmark's MLP.
const (
	benchFeatures = 100
	benchClasses  = 2
)

// Round runs the round benchmark.
func Round(ctx context.Context, o RoundOptions) (RoundResult, error) {
	if o.Participants < 1 || o.Params < 1 {
		return RoundResult{}, fmt.Errorf("benchmark: need at least one participant and one parameter (got %d, %d)", o.Participants, o.Params)
	}
	o.Rounds = cmp.Or(o.Rounds, 5)
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return RoundResult{}, err
		}
		o.Binary = exe
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir, err := os.MkdirTemp("", "fedguard-bench-")
	if err != nil {
		return RoundResult{}, err
	}
	defer os.RemoveAll(dir)

	names := make([]string, o.Participants)
	for i := range names {
		names[i] = fmt.Sprintf("p%03d", i)
	}
	if err := certs.EnrolLocal(dir, benchFederation, names); err != nil {
		return RoundResult{}, err
	}
	hidden := max(1, (o.Params-benchClasses)/(benchFeatures+1+benchClasses))
	features := make([]string, benchFeatures)
	for i := range features {
		features[i] = fmt.Sprintf("f%d", i)
	}
	dataDir := filepath.Join(dir, "coordinator", "data")
	cfg := coordinator.Config{
		Federation: benchFederation, Listen: "127.0.0.1:0",
		DataDir:  dataDir,
		CACert:   certs.Local(dir).CACert(),
		Cert:     certs.Local(dir).CoordinatorCert(),
		Key:      certs.Local(dir).CoordinatorKey(),
		CRL:      certs.Local(dir).CRL(),
		Enrolled: names, MinParticipants: o.Participants,
		Model:      coordinator.ModelConfig{Kind: "mlp", Features: features, Label: "y", Classes: []string{"a", "b"}, Hidden: []int{hidden}},
		Training:   coordinator.TrainingConfig{Rounds: o.Rounds + 1, LocalEpochs: 1, LearningRate: 0.1, BatchSize: 1},
		KeepModels: 1, RoundTimeout: coordinator.Duration(10 * time.Minute),
		Secure:      o.Secure,
		Aggregation: o.Aggregation,
	}
	cfgPath := filepath.Join(dir, "coordinator.json")
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return RoundResult{}, err
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return RoundResult{}, err
	}
	proc, err := process.StartCoordinator(ctx, o.Binary, cfgPath, nil, "--init")
	if err != nil {
		return RoundResult{}, err
	}

	params := hidden*(benchFeatures+1+benchClasses) + benchClasses
	trainer := newNoopTrainer(params)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		agents []*participant.Agent
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The coordinator made its signing keys at start; the hospitals pin them.
	keys, err := manifest.LoadPublicKeys(filepath.Join(dataDir, manifest.PublicFile))
	if err != nil {
		return RoundResult{}, err
	}
	for i, name := range names {
		tlsCfg, err := certs.LocalClientConfig(dir, benchFederation, name, proc.Addr)
		if err != nil {
			cancel()
			return RoundResult{}, err
		}
		t := participant.Trainer(trainer)
		if i == 0 {
			t = trainer.timed(o.Progress)
		}
		a, err := participant.New(participant.Config{
			Coordinator: proc.Addr, TLS: tlsCfg, Trainer: t, Log: o.Log.With("participant", name),
			Federation: benchFederation, CoordinatorKeys: keys,
		})
		if err != nil {
			cancel()
			return RoundResult{}, err
		}
		if i == 0 {
			trainer.gather = a.Gatherer()
		}
		agents = append(agents, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	werr := proc.Wait()
	if len(errs) > 0 {
		return RoundResult{}, errors.Join(errs...)
	}
	if werr != nil {
		return RoundResult{}, fmt.Errorf("coordinator: %w", werr)
	}
	rss, err := proc.PeakRSS()
	if err != nil {
		return RoundResult{}, err
	}
	cpu, err := proc.CPUSeconds()
	if err != nil {
		return RoundResult{}, err
	}
	var sent, received uint64
	for _, a := range agents {
		s := a.Stats()
		received += s.BytesReceived + s.SecureBytesReceived
		if o.Secure {
			sent += s.SecureBytesSent
		} else {
			sent += s.BytesSent
		}
	}
	times := trainer.roundTimes()
	if len(times) == 0 {
		return RoundResult{}, errors.New("benchmark: no round was timed")
	}
	perRound := uint64(o.Rounds + 1)
	res := RoundResult{
		Participants: o.Participants, Params: params,
		Secure: o.Secure, Rule: cmp.Or(o.Aggregation.Rule, aggregation.NameFedAvg), Bucket: o.Aggregation.Bucket,
		RoundSeconds: median(times),
		BytesSent:    sent / perRound, BytesReceived: received / perRound,
		PeakRSSBytes: rss, ModelBytes: uint64(4 * params),
		PeakRSSModels: float64(rss) / float64(4*params), CoordinatorCPUSeconds: cpu,
		Rounds: times,
	}
	res.Bytes = res.BytesSent + res.BytesReceived
	if o.Secure {
		var sum float64
		for _, p := range secagg.Phases() {
			s := median(trainer.phaseTimes(p.Label()))
			res.Phases = append(res.Phases, PhaseTime{Phase: p.Label(), Seconds: s})
			sum += s
		}
		res.OtherSeconds = max(0, res.RoundSeconds-sum)
	}
	res.BaselineSeconds, err = tlsFloor(dir, names[0], res.Bytes)
	if err != nil {
		return RoundResult{}, fmt.Errorf("benchmark: baseline: %w", err)
	}
	res.Ratio = res.RoundSeconds / res.BaselineSeconds
	return res, nil
}

// tlsFloor times sending n bytes through one mutual-TLS 1.3 connection on
// loopback between the benchmark's coordinator and participant
// certificates: no gRPC, no framing, no processing.
func tlsFloor(dir, participantName string, n uint64) (float64, error) {
	srvCfg, err := certs.LocalServerConfig(dir, benchFederation)
	if err != nil {
		return 0, err
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		return 0, err
	}
	defer lis.Close()
	cliCfg, err := certs.LocalClientConfig(dir, benchFederation, participantName, lis.Addr().String())
	if err != nil {
		return 0, err
	}
	got := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		m, err := io.Copy(io.Discard, c)
		if err == nil && uint64(m) != n {
			err = fmt.Errorf("received %d of %d bytes", m, n)
		}
		got <- err
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), cliCfg)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for left := n; left > 0; {
		k := min(left, uint64(len(buf)))
		if _, err := conn.Write(buf[:k]); err != nil {
			conn.Close()
			return 0, err
		}
		left -= k
	}
	if err := conn.Close(); err != nil {
		return 0, err
	}
	if err := <-got; err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

// SecureComparison is SecureRound's result: the plain and the secure
// round of the same size, measured one after the other in one run.
type SecureComparison struct {
	Plain  RoundResult `json:"plain"`
	Secure RoundResult `json:"secure"`
	// SecureOverPlain is the secure round's median time over the plain
	// round's (the target: ≤ 2.5 at 10 × 10M); PeakRSSSecureOverPlain
	// and BytesSecureOverPlain compare the coordinator's peak memory and the
	// bytes moved per round in the same way.
	SecureOverPlain        float64 `json:"secure_over_plain"`
	PeakRSSSecureOverPlain float64 `json:"peak_rss_secure_over_plain"`
	BytesSecureOverPlain   float64 `json:"bytes_secure_over_plain"`
}

// SecureRound runs the plain round of o and then the same round with
// secure aggregation, and compares them.
func SecureRound(ctx context.Context, o RoundOptions) (SecureComparison, error) {
	plain := o
	plain.Secure = false
	plain.Aggregation = aggregation.Config{}
	if o.Progress != nil {
		fmt.Fprintln(o.Progress, "plain rounds:")
	}
	p, err := Round(ctx, plain)
	if err != nil {
		return SecureComparison{}, fmt.Errorf("plain round: %w", err)
	}
	o.Secure = true
	if o.Progress != nil {
		fmt.Fprintln(o.Progress, "secure rounds:")
	}
	s, err := Round(ctx, o)
	if err != nil {
		return SecureComparison{}, fmt.Errorf("secure round: %w", err)
	}
	return SecureComparison{
		Plain: p, Secure: s,
		SecureOverPlain:        s.RoundSeconds / p.RoundSeconds,
		PeakRSSSecureOverPlain: float64(s.PeakRSSBytes) / float64(p.PeakRSSBytes),
		BytesSecureOverPlain:   float64(s.Bytes) / float64(p.Bytes),
	}, nil
}

// noopTrainer "trains" by returning a fixed random update.
type noopTrainer struct {
	delta []float32
	mu    sync.Mutex
	seen  []time.Time
	out   io.Writer
	// gather is the timed participant's metrics; at each round's arrival
	// the trainer keeps the sums of its secure phase histogram, so that
	// the differences between arrivals are each round's phase times.
	gather  prometheus.Gatherer
	phaseAt []map[string]float64
}

func newNoopTrainer(n int) *noopTrainer {
	rng := rand.New(rand.NewPCG(1, 2))
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(rng.NormFloat64() * 1e-3)
	}
	return &noopTrainer{delta: d}
}

// Prepare implements participant.Trainer with neutral statistics.
func (t *noopTrainer) Prepare(spec *fedguardv1.ModelSpec) (dataset.Stats, error) {
	n := len(spec.GetFeatures())
	sq := make([]float64, n)
	for i := range sq {
		sq[i] = 2
	}
	return dataset.Stats{Count: 2, Sum: make([]float64, n), SumSquares: sq}, nil
}

// Train implements participant.Trainer.
func (t *noopTrainer) Train(context.Context, *fedguardv1.RoundAssignment, []float32) (participant.Result, error) {
	return participant.Result{Delta: t.delta, Samples: 1}, nil
}

// phaseTimes are the seconds phase (a secagg.Phase Label) took in each
// interval between consecutive rounds' arrivals.
func (t *noopTrainer) phaseTimes(phase string) []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []float64
	for i := 1; i < len(t.phaseAt); i++ {
		out = append(out, t.phaseAt[i][phase]-t.phaseAt[i-1][phase])
	}
	return out
}

// phaseSums reads the secure phase histogram's sums by phase label.
func phaseSums(g prometheus.Gatherer) map[string]float64 {
	sums := map[string]float64{}
	if g == nil {
		return sums
	}
	mfs, err := g.Gather()
	if err != nil {
		return sums
	}
	for _, mf := range mfs {
		if mf.GetName() != securePhaseMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" {
					sums[l.GetValue()] = m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return sums
}

// securePhaseMetric is the participant's histogram of secure phase times.
const securePhaseMetric = "fedguard_participant_secure_phase_duration_seconds"

// timed returns a Trainer that also records when each round reached it.
func (t *noopTrainer) timed(out io.Writer) participant.Trainer {
	t.out = out
	return timedTrainer{t}
}

// roundTimes are the intervals between consecutive rounds' arrivals.
func (t *noopTrainer) roundTimes() []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []float64
	for i := 1; i < len(t.seen); i++ {
		out = append(out, t.seen[i].Sub(t.seen[i-1]).Seconds())
	}
	return out
}

type timedTrainer struct{ *noopTrainer }

func (t timedTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	sums := phaseSums(t.gather)
	t.mu.Lock()
	t.seen = append(t.seen, time.Now())
	t.phaseAt = append(t.phaseAt, sums)
	if n := len(t.seen); n > 1 && t.out != nil {
		fmt.Fprintf(t.out, "round %d: %.3f s\n", a.GetRound()-1, t.seen[n-1].Sub(t.seen[n-2]).Seconds())
	}
	t.mu.Unlock()
	return t.noopTrainer.Train(ctx, a, start)
}
