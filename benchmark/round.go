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
package benchmark

import (
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
	"slices"
	"sync"
	"time"

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
}

// RoundResult is Round's measurement. JSON names are the benchmark's stable
// output format.
type RoundResult struct {
	Participants int     `json:"participants"`
	Params       int     `json:"params"`
	RoundSeconds float64 `json:"round_seconds"`
	// Bytes are the model and update payload bytes moved per round.
	Bytes        uint64 `json:"bytes"`
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// ModelBytes is the size of one model (4 bytes per parameter), the unit
	// of the memory goal (participants + 3) × model size.
	ModelBytes uint64    `json:"model_bytes"`
	Rounds     []float64 `json:"round_seconds_all"`
	// BaselineSeconds is the time to move Bytes through one TLS 1.3
	// loopback connection; Ratio is RoundSeconds / BaselineSeconds.
	BaselineSeconds float64 `json:"baseline_seconds"`
	Ratio           float64 `json:"ratio"`
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
	if o.Rounds == 0 {
		o.Rounds = 5
	}
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
	var bytes uint64
	for _, a := range agents {
		s := a.Stats()
		bytes += s.BytesReceived + s.BytesSent
	}
	times := trainer.roundTimes()
	if len(times) == 0 {
		return RoundResult{}, errors.New("benchmark: no round was timed")
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	res := RoundResult{
		Participants: o.Participants, Params: params,
		RoundSeconds: sorted[len(sorted)/2],
		Bytes:        bytes / uint64(o.Rounds+1),
		PeakRSSBytes: rss, ModelBytes: uint64(4 * params),
		Rounds: times,
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

// noopTrainer "trains" by returning a fixed random update.
type noopTrainer struct {
	delta []float32
	mu    sync.Mutex
	seen  []time.Time
	out   io.Writer
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
	t.mu.Lock()
	t.seen = append(t.seen, time.Now())
	if n := len(t.seen); n > 1 && t.out != nil {
		fmt.Fprintf(t.out, "round %d: %.3f s\n", a.GetRound()-1, t.seen[n-1].Sub(t.seen[n-2]).Seconds())
	}
	t.mu.Unlock()
	return t.noopTrainer.Train(ctx, a, start)
}
