package participant

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/safetensors"
	"github.com/fedguard/fedguard/wire"
)

// Defaults and bounds of an [ExecTrainer].
const (
	// DefaultTrainerTimeout bounds one run of an external trainer when
	// ExecTrainer.Timeout is zero. The round's deadline bounds it too,
	// whichever comes first.
	DefaultTrainerTimeout = 30 * time.Minute
	// MaxTrainerMetricsBytes bounds the metrics file a trainer writes;
	// a real one is a few dozen bytes.
	MaxTrainerMetricsBytes = 64 << 10
	// MaxTrainerHeaderBytes bounds the header of the weights file a
	// trainer writes (a header of a few thousand tensors is well under a
	// megabyte), so that with the data bound below a trainer cannot make
	// the agent read an unbounded file.
	MaxTrainerHeaderBytes = 16 << 20
	// MaxTrainerLogBytes bounds what the agent logs of each of a
	// trainer's stdout and stderr per round; the rest is counted and
	// dropped.
	MaxTrainerLogBytes = 64 << 10
	// MaxTrainerLogLine bounds one logged line; longer lines are cut.
	MaxTrainerLogLine = 1024
	// trainerWaitDelay is how long the agent waits, after the trainer has
	// exited or been killed, for processes that inherited its output to
	// let go of it.
	trainerWaitDelay = 5 * time.Second
)

// largeModel is the parameter count (64 MB) from which the agent collects
// garbage before it allocates a model-sized vector (see collectBefore).
const largeModel = 16 << 20

// collectBefore runs the garbage collector before a vector of n parameters
// is allocated, when n is large: the last round's starting model and
// update are garbage by then, and reusing their memory keeps the agent
// near two models' worth instead of the four or five that GOGC's default
// growth allows (BenchmarkExecRoundMemory). Model vectors hold no
// pointers, so the collection itself is cheap.
func collectBefore(n int) {
	if n >= largeModel {
		runtime.GC()
	}
}

// Files in a round's working directory, and the plan's format version.
const (
	// TrainerModelFile is the round's verified global model.
	TrainerModelFile = "model.safetensors"
	// TrainerPlanFile is the round plan (JSON, [TrainerPlan]).
	TrainerPlanFile = "plan.json"
	// TrainerOutputFile is where the trainer writes the trained weights.
	TrainerOutputFile = "trained.safetensors"
	// TrainerMetricsFile is where the trainer writes its [TrainerMetrics].
	TrainerMetricsFile = "metrics.json"
	// TrainerPlanVersion is the version of the plan and metrics formats.
	TrainerPlanVersion = 1
)

// ErrTrainer marks a round in which the external trainer failed: it could
// not start, crashed, timed out, or left no usable weights or metrics.
// The agent sits the round out (it sends no update; the coordinator closes
// the round without it), logs the reason, and waits for the next round, so
// Run does not return this error. The error is a *[TrainerError].
var ErrTrainer = errors.New("participant: external trainer failed")

// The reasons of a [TrainerError], stable for logs and metrics.
const (
	TrainerCannotStart = "start"        // the command could not be started
	TrainerCrashed     = "crash"        // it exited with an error or a signal
	TrainerTimedOut    = "timeout"      // it ran past its timeout and was killed
	TrainerBadOutput   = "output"       // no readable, well-formed weights file
	TrainerBadLayout   = "layout"       // the weights have other tensors or shapes
	TrainerNonFinite   = "non_finite"   // NaN or ±Inf in the weights or update
	TrainerBadMetrics  = "metrics"      // the metrics file is missing or invalid
	TrainerNotApproved = "not_approved" // the code's digest is not on the allow-list
)

// ErrTrainerNotApproved marks trainer code whose digest ([TrainerDigest])
// is not on the hospital's allow-list (ExecTrainer.Approved). At Prepare it
// stops the agent (an operator must approve the code or fix the list); in
// a round (the code changed since) the round is sat out, as a *TrainerError
// with reason TrainerNotApproved that wraps this error.
var ErrTrainerNotApproved = errors.New("participant: trainer code not approved")

// TrainerError is one failed run of an external trainer.
type TrainerError struct {
	// Reason is one of TrainerCannotStart, TrainerCrashed, ...
	Reason string
	// Err says what went wrong.
	Err error
}

func (e *TrainerError) Error() string {
	return fmt.Sprintf("participant: external trainer (%s): %v", e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *TrainerError) Unwrap() error { return e.Err }

// Is makes every TrainerError match ErrTrainer.
func (e *TrainerError) Is(target error) bool { return target == ErrTrainer }

// trainerReason returns the Reason of the TrainerError in err's chain.
func trainerReason(err error) string {
	var te *TrainerError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

func trainerErr(reason string, format string, args ...any) error {
	return &TrainerError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// TrainerPlan is the round plan an [ExecTrainer] writes to plan.json (and
// whose file names it passes in the environment). docs/trainer.md is the
// contract for trainer authors.
type TrainerPlan struct {
	// FormatVersion is TrainerPlanVersion.
	FormatVersion int `json:"format_version"`
	// Round and Attempt identify the round.
	Round   uint64 `json:"round"`
	Attempt uint32 `json:"attempt"`
	// Seed seeds the trainer's randomness: derived from the hospital's
	// seed, the coordinator's seed of the round and the round, so that
	// neither side alone picks it and every round differs.
	Seed uint64 `json:"seed"`
	// Epochs, LearningRate, BatchSize and L2 are the federation's training
	// plan for the round.
	Epochs       uint32  `json:"epochs"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    uint32  `json:"batch_size"`
	L2           float64 `json:"l2"`
	// Clip is the L2 norm the round clips every update to (0 when the
	// round names none). The agent and the coordinator apply it anyway;
	// a trainer may use it, for example for DP-SGD.
	Clip float64 `json:"clip"`
	// DP is the hospital's record-level privacy budget and what its
	// agent's ledger holds before the round, when the hospital set a
	// budget (dp_epsilon); null otherwise. A trainer may calibrate its
	// noise with it; the agent enforces the budget either way.
	DP *TrainerPlanDP `json:"dp"`
	// Model, Output and Metrics are file names in the working directory:
	// the global model to start from, and the files to write.
	Model   string `json:"model"`
	Output  string `json:"output"`
	Metrics string `json:"metrics"`
	// Data is the hospital's data as configured (a file or a directory,
	// absolute), or empty. For a model without feature columns the agent
	// never opens it: it is the trainer's to read.
	Data string `json:"data,omitempty"`
	// Scaling is the federation's feature standardization x' = (x −
	// mean) / std, for the built-in tabular models; absent otherwise.
	Scaling *TrainerScaling `json:"scaling,omitempty"`
}

// TrainerPlanDP is the privacy budget of a [TrainerPlan]: ε (natural log)
// at Delta, the budget (0: none set) and what the ledger holds before the
// round.
type TrainerPlanDP struct {
	Delta         float64 `json:"delta"`
	EpsilonBudget float64 `json:"epsilon_budget"`
	EpsilonSpent  float64 `json:"epsilon_spent"`
}

// TrainerScaling is the feature scaling of a [TrainerPlan].
type TrainerScaling struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// TrainerMetrics is what a trainer writes to metrics.json.
type TrainerMetrics struct {
	// Samples is the number of training examples behind the weights
	// (at least 1); the coordinator weighs updates by it.
	Samples uint64 `json:"samples"`
	// Holdout is the starting model's quality on the hospital's held-out
	// examples (federated evaluation); absent or count 0 means none.
	Holdout *TrainerHoldout `json:"holdout,omitempty"`
	// DPEvents are the differentially private mechanisms the trainer ran
	// this round, each a Poisson-subsampled Gaussian (DP-SGD): sampling
	// rate q in (0, 1], noise multiplier sigma > 0, steps ≥ 1; at most
	// MaxTrainerDPEvents. The agent's accountant, not the trainer, turns
	// them into ε, keeps the ledger and enforces the hospital's budget
	// (docs/trainer.md, docs/privacy.md).
	DPEvents []privacy.Event `json:"dp_events,omitempty"`
}

// MaxTrainerDPEvents bounds the DP events of one round's metrics file.
const MaxTrainerDPEvents = 64

// MaxTrainerDPSteps bounds the steps of one reported DP event: a billion
// steps in a round is no DP-SGD anyone runs.
const MaxTrainerDPSteps = 1_000_000_000

// TrainerHoldout is the holdout evaluation of a [TrainerMetrics].
type TrainerHoldout struct {
	Count    uint64  `json:"count"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

var _ Trainer = (*ExecTrainer)(nil)

// ExecTrainer trains by running the hospital's own program (PyTorch or
// anything else) once per round, through files in a private working
// directory; docs/trainer.md is the contract. Each round it writes the
// verified global model (safetensors, the layout of [safetensors.SpecLayout])
// and a [TrainerPlan], runs Command with a timeout and a clean environment,
// reads back the trained weights and a [TrainerMetrics], checks their
// layout, finiteness and size, and returns trained − start, in the memory
// of the update the previous call returned (see Result.Delta). Failures
// are *[TrainerError]s.
//
// The command runs without a shell, in its own process group, which is
// killed whole when the round is cancelled or the timeout passes. Its
// stdout and stderr go to Log line by line, bounded by MaxTrainerLogBytes
// and MaxTrainerLogLine.
//
// Its fields must not change after the first call to Prepare.
type ExecTrainer struct {
	// Command is the program and its arguments (see [SplitCommand]). The
	// program is looked up in PATH when it has no slash.
	Command []string
	// CommandDir is the directory the command runs in, against which
	// its relative paths ("python3 train.py") resolve; empty means the
	// agent's. The files of the round are in FEDGUARD_WORKDIR, not here.
	CommandDir string
	// Dir is the working directory under which each round gets a private
	// subdirectory (removed after the round). Empty means a new temporary
	// directory. It is created 0700 if missing and must not be readable
	// by others.
	Dir string
	// Timeout bounds one run; 0 means DefaultTrainerTimeout.
	Timeout time.Duration
	// Code is the trainer's code whose digest ([TrainerDigest]) is
	// logged each round and checked against Approved: a file or a
	// directory. Empty means the program, Command[0] — for an
	// interpreter ("python3 train.py") set Code to the script or its
	// directory.
	Code string
	// Approved is the hospital's allow-list of trainer digests
	// ("sha256:…"). When it is not empty the agent refuses to run code
	// whose digest is not on it, checked at Prepare and before every run.
	Approved []string
	// Local, when set, names the hospital's data in the plan (its
	// DataFile: a file or a directory the trainer reads) and, for a model
	// with feature columns, reads that CSV file at Prepare for the
	// feature statistics the federation's scaling needs. For a model
	// without feature columns (a tensor layout) the agent does not open
	// the data: it need not be a CSV file. Nil means no data in the plan
	// and no statistics (a federation that needs them then refuses the
	// agent at join).
	Local *LocalTrainer
	// Seed is mixed into each round's seed (see TrainerPlan.Seed).
	Seed uint64
	// Log receives the trainer's output and progress; nil means the
	// agent's log ([New] sets it), or slog.Default() outside an agent.
	Log *slog.Logger

	mu     sync.Mutex
	layout safetensors.Layout
	spec   model.Spec
	dir    string
	// spare is the memory of the last update Train returned (or of one
	// it did not), which the next call reuses.
	spare []float32

	// dpPlan, set by the agent when it keeps a privacy ledger, fills
	// the plan's dp.
	dpPlan func() *TrainerPlanDP
}

// keep makes buf the memory the next Train call writes its update into.
func (t *ExecTrainer) keep(buf []float32) {
	t.mu.Lock()
	t.spare = buf
	t.mu.Unlock()
}

// subtractFinite sets delta[i] -= start[i] and reports a non-finite result
// (two finite float32 can differ by more than float32's range), in one
// pass: x − x is 0 for every finite x and NaN for ±Inf and NaN. The test is
// a branch never taken for a good update, so nothing chains one element's
// work to the next.
func subtractFinite(delta, start []float32) error {
	start = start[:len(delta)]
	for i, s := range start {
		d := delta[i] - s
		delta[i] = d
		if d-d != 0 {
			return model.CheckFinite(delta[:i+1])
		}
	}
	return nil
}

// SplitCommand splits a command line into arguments the way a POSIX shell
// splits words, without any expansion: blanks separate words, single
// quotes keep everything up to the next single quote, double quotes keep
// everything but a backslash escape of ", \ or $, and a backslash outside
// quotes keeps the next character. No globbing, variables, pipes or
// redirections: there is no shell. An unterminated quote or an empty
// command is an error.
func SplitCommand(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("participant: trainer command %q: unterminated single quote", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("participant: trainer command %q: unterminated double quote", s)
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("participant: trainer command %q: trailing backslash", s)
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, errors.New("participant: trainer command is empty")
	}
	return args, nil
}

// Prepare checks the command and the specification, makes the working
// directory and, with Local, reads the hospital's data for its
// statistics.
func (t *ExecTrainer) Prepare(spec *fedguardv1.ModelSpec) (dataset.Stats, error) {
	if len(t.Command) == 0 {
		return dataset.Stats{}, errors.New("participant: ExecTrainer.Command is empty")
	}
	if err := t.lookPath(); err != nil {
		return dataset.Stats{}, err
	}
	if _, err := t.approve(); err != nil {
		return dataset.Stats{}, err
	}
	s, err := wire.SpecFromProto(spec)
	if err != nil {
		return dataset.Stats{}, fmt.Errorf("%w: %w", ErrIncompatible, err)
	}
	layout, err := safetensors.SpecLayout(s)
	if err != nil {
		return dataset.Stats{}, fmt.Errorf("%w: %w", ErrIncompatible, err)
	}
	var st dataset.Stats
	// A model without feature columns (a tensor layout) has no
	// statistics phase: the trainer reads its own data, which the agent
	// does not open (it need not be a CSV file).
	if t.Local != nil && s.Features > 0 {
		if st, err = t.Local.Prepare(spec); err != nil {
			return dataset.Stats{}, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dir == "" {
		dir, err := privateDir(t.Dir)
		if err != nil {
			return dataset.Stats{}, err
		}
		t.dir = dir
	}
	t.layout, t.spec = layout, s
	return st, nil
}

// lookPath checks that the program exists: in PATH without a slash,
// relative to CommandDir with one.
func (t *ExecTrainer) lookPath() error {
	prog := t.Command[0]
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && t.CommandDir != "" {
		prog = filepath.Join(t.CommandDir, prog)
	}
	if _, err := exec.LookPath(prog); err != nil {
		return fmt.Errorf("participant: trainer command: %w", err)
	}
	return nil
}

// approve returns the digest of the trainer's code, or an error wrapping
// ErrTrainerNotApproved when Approved is set and does not list it.
func (t *ExecTrainer) approve() (string, error) {
	code := t.Code
	if code == "" {
		prog := t.Command[0]
		if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && t.CommandDir != "" {
			prog = filepath.Join(t.CommandDir, prog)
		}
		p, err := exec.LookPath(prog)
		if err != nil {
			return "", fmt.Errorf("participant: trainer command: %w", err)
		}
		code = p
	}
	d, err := TrainerDigest(code)
	if err != nil {
		return "", err
	}
	if len(t.Approved) > 0 && !slices.Contains(t.Approved, d) {
		return d, fmt.Errorf("%w: %s has digest %s, the hospital approves %s", ErrTrainerNotApproved, code, d, strings.Join(t.Approved, ", "))
	}
	return d, nil
}

// privateDir returns dir, created 0700 when missing and refused when
// others may read it, or a new temporary directory when dir is empty.
func privateDir(dir string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "fedguard-trainer-")
		if err != nil {
			return "", fmt.Errorf("participant: trainer working directory: %w", err)
		}
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("participant: trainer working directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("participant: trainer working directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("participant: trainer working directory %s has mode %v, want a directory only its owner can use (0700)", dir, fi.Mode())
	}
	return filepath.Abs(dir)
}

// Train runs the trainer once for the round of a, from start.
func (t *ExecTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	t.mu.Lock()
	layout, spec, root := t.layout, t.spec, t.dir
	t.mu.Unlock()
	if layout == nil {
		return Result{}, errors.New("participant: Train called before Prepare")
	}
	if len(start) != layout.NumParams() {
		return Result{}, fmt.Errorf("participant: starting model has %d parameters, want %d", len(start), layout.NumParams())
	}
	log := t.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.Uint64("round", a.GetRound()))

	digest, err := t.approve()
	if err != nil {
		if errors.Is(err, ErrTrainerNotApproved) {
			return Result{}, &TrainerError{Reason: TrainerNotApproved, Err: err}
		}
		return Result{}, &TrainerError{Reason: TrainerCannotStart, Err: err}
	}
	log.InfoContext(ctx, "running external trainer", slog.String("trainer_digest", digest), slog.Bool("approved", len(t.Approved) > 0))

	dir, err := os.MkdirTemp(root, fmt.Sprintf("round-%d-%d-", a.GetRound(), a.GetAttempt()))
	if err != nil {
		return Result{}, fmt.Errorf("participant: trainer round directory: %w", err)
	}
	defer os.RemoveAll(dir)
	plan, err := t.plan(a, spec)
	if err != nil {
		return Result{}, err
	}
	if err := writePlan(filepath.Join(dir, TrainerPlanFile), plan); err != nil {
		return Result{}, err
	}
	meta := map[string]string{"format": "pt", "fedguard.round": strconv.FormatUint(a.GetRound(), 10)}
	if err := writeScratch(filepath.Join(dir, TrainerModelFile), layout, start, meta); err != nil {
		return Result{}, fmt.Errorf("participant: write the model for the trainer: %w", err)
	}

	if err := t.run(ctx, dir, log); err != nil {
		return Result{}, err
	}

	// The trainer's weights, read in place and turned into the update, in
	// the buffer of the previous call's update when there is one (the
	// caller is done with it, see Result.Delta): allocating and zeroing
	// a fresh model-sized vector each round was much of the exec
	// overhead (BenchmarkExecOverhead). Otherwise, for a large model,
	// collect first:
	// the last round's starting model and update are garbage by now, and
	// reusing their memory keeps the agent near two models' worth instead
	// of the four or five that GOGC's default growth allows
	// (BenchmarkExecRoundMemory).
	t.mu.Lock()
	delta := t.spare
	t.spare = nil
	t.mu.Unlock()
	if len(delta) != len(start) {
		delta = nil
		collectBefore(len(start))
		delta = make([]float32, len(start))
	}
	if err := readTrained(filepath.Join(dir, TrainerOutputFile), layout, delta); err != nil {
		t.keep(delta)
		return Result{}, err
	}
	if err := subtractFinite(delta, start); err != nil {
		t.keep(delta)
		return Result{}, &TrainerError{Reason: TrainerNonFinite, Err: fmt.Errorf("trained − start: %w", err)}
	}
	m, err := readTrainerMetrics(filepath.Join(dir, TrainerMetricsFile))
	if err != nil {
		t.keep(delta)
		return Result{}, err
	}
	// The next call writes its update into this one's memory.
	t.keep(delta)
	res := Result{Delta: delta, Samples: m.Samples, DPEvents: m.DPEvents}
	if h := m.Holdout; h != nil && h.Count > 0 {
		res.Holdout = model.Metrics{Count: int(min(h.Count, math.MaxInt32)), Loss: h.Loss, Accuracy: h.Accuracy}
	}
	log.InfoContext(ctx, "external trainer done", slog.Uint64("samples", m.Samples))
	return res, nil
}

func (t *ExecTrainer) plan(a *fedguardv1.RoundAssignment, spec model.Spec) (TrainerPlan, error) {
	p := a.GetPlan()
	if p == nil {
		return TrainerPlan{}, errors.New("participant: assignment has no training plan")
	}
	seed, _ := roundSeed(t.Seed, a.GetSeed(), a.GetRound())
	plan := TrainerPlan{
		FormatVersion: TrainerPlanVersion,
		Round:         a.GetRound(),
		Attempt:       a.GetAttempt(),
		Seed:          seed,
		Epochs:        p.GetLocalEpochs(),
		LearningRate:  p.GetLearningRate(),
		BatchSize:     p.GetBatchSize(),
		L2:            p.GetL2(),
		Clip:          a.GetSecure().GetNormClip(),
		Model:         TrainerModelFile,
		Output:        TrainerOutputFile,
		Metrics:       TrainerMetricsFile,
	}
	if t.dpPlan != nil {
		plan.DP = t.dpPlan()
	}
	if t.Local != nil {
		if abs, err := filepath.Abs(t.Local.DataFile); err == nil {
			plan.Data = abs
		}
	}
	if sc := a.GetScaling(); sc != nil && len(sc.GetMean()) > 0 {
		s, err := wire.ScalingFromProto(sc, spec.Features)
		if err != nil {
			return TrainerPlan{}, err
		}
		plan.Scaling = &TrainerScaling{Mean: s.Mean, Std: s.Std}
	}
	return plan, nil
}

// writeScratch writes a model file for the trainer into the round's fresh
// private directory: created exclusively (0600), buffered, not synced —
// the file lives for one run and is never read after a crash, so
// durability would only cost time.
func writeScratch(path string, layout safetensors.Layout, params []float32, meta map[string]string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = safetensors.Write(bw, layout, params, meta)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writePlan(path string, plan TrainerPlan) error {
	b, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return fmt.Errorf("participant: trainer plan: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("participant: trainer plan: %w", err)
	}
	return nil
}

// run runs the command in dir and waits for it, killing its process group
// on timeout or cancellation.
func (t *ExecTrainer) run(ctx context.Context, dir string, log *slog.Logger) error {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTrainerTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, t.Command[0], t.Command[1:]...)
	cmd.Dir = t.CommandDir
	cmd.Env = trainerEnv(dir, t.Local)
	cmd.Stdin = nil
	stdout := &lineLog{log: log, stream: "stdout"}
	stderr := &lineLog{log: log, stream: "stderr"}
	// Our own pipes rather than exec's: Wait then returns when the
	// trainer exits, even if a process it left behind holds them.
	outR, outW, err := os.Pipe()
	if err != nil {
		return &TrainerError{Reason: TrainerCannotStart, Err: err}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return &TrainerError{Reason: TrainerCannotStart, Err: err}
	}
	defer outR.Close()
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	setProcessGroup(cmd)
	cmd.WaitDelay = trainerWaitDelay
	started := time.Now()
	err = cmd.Start()
	outW.Close() // the trainer has its copies
	errW.Close()
	if err != nil {
		// Start refuses a context that is already done: the round ended
		// while its files were written, which is the round's deadline or
		// cancellation, not a trainer that cannot start.
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return ctx.Err()
		case ctx.Err() != nil:
			return trainerErr(TrainerTimedOut, "not started: the round's deadline passed")
		}
		return &TrainerError{Reason: TrainerCannotStart, Err: err}
	}
	drained := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range []struct {
		r *os.File
		l *lineLog
	}{{outR, stdout}, {errR, stderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(p.l, p.r)
		}()
	}
	go func() { wg.Wait(); close(drained) }()
	err = cmd.Wait()
	// Whatever the trainer left running in its group dies with the round.
	killGroup(cmd)
	select {
	case <-drained:
	case <-time.After(trainerWaitDelay):
		// A process outside the group (it called setsid) holds the
		// pipes: stop reading them.
		outR.Close()
		errR.Close()
		<-drained
	}
	stdout.flush()
	stderr.flush()
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err() // the round was cancelled; the group is killed
	case ctx.Err() != nil:
		return trainerErr(TrainerTimedOut, "killed after %v: the round's deadline passed", time.Since(started).Round(time.Millisecond))
	case tctx.Err() != nil:
		return trainerErr(TrainerTimedOut, "killed after %v (timeout %v)", time.Since(started).Round(time.Millisecond), timeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if last := stderr.lastLine(); last != "" {
				return trainerErr(TrainerCrashed, "%v (last stderr line: %q)", ee, last)
			}
		}
		return &TrainerError{Reason: TrainerCrashed, Err: err}
	}
	return nil
}

// trainerEnv is the trainer's whole environment: the agent's PATH, a HOME
// in the round's directory, and the FEDGUARD_* variables of the contract.
// Nothing else of the agent's environment (credentials, proxies, tokens)
// reaches the trainer.
func trainerEnv(dir string, local *LocalTrainer) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"FEDGUARD_WORKDIR=" + dir,
		"FEDGUARD_PLAN=" + filepath.Join(dir, TrainerPlanFile),
		"FEDGUARD_MODEL=" + filepath.Join(dir, TrainerModelFile),
		"FEDGUARD_OUTPUT=" + filepath.Join(dir, TrainerOutputFile),
		"FEDGUARD_METRICS=" + filepath.Join(dir, TrainerMetricsFile),
	}
	if local != nil {
		if abs, err := filepath.Abs(local.DataFile); err == nil {
			env = append(env, "FEDGUARD_DATA="+abs)
		}
	}
	return env
}

// openRegular opens a file a trainer wrote, refusing anything but a
// regular file (after symlinks). It opens without blocking, so that a
// named pipe left in its place cannot hang the agent.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%v)", filepath.Base(path), fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// readTrained reads the trainer's weights into dst, refusing a file that is
// not a regular file, is larger than the layout can explain, or does not
// hold exactly the layout's tensors.
func readTrained(path string, layout safetensors.Layout, dst []float32) error {
	f, fi, err := openRegular(path)
	if err != nil {
		return trainerErr(TrainerBadOutput, "weights file: %w", err)
	}
	defer f.Close()
	// The widest dtype read is 8 bytes per value.
	limit := int64(8+MaxTrainerHeaderBytes) + 8*int64(layout.NumParams())
	switch {
	case fi.Size() > limit:
		return trainerErr(TrainerBadOutput, "weights file of %d bytes, more than the %d a model of %d parameters can take", fi.Size(), limit, layout.NumParams())
	}
	r, err := safetensors.Open(f, fi.Size())
	if err != nil {
		return trainerErr(TrainerBadOutput, "weights file: %w", err)
	}
	if err := r.ReadInto(layout, dst); err != nil {
		switch {
		case errors.Is(err, safetensors.ErrLayout):
			return &TrainerError{Reason: TrainerBadLayout, Err: err}
		case errors.Is(err, model.ErrNonFinite):
			return &TrainerError{Reason: TrainerNonFinite, Err: err}
		}
		return trainerErr(TrainerBadOutput, "weights file: %w", err)
	}
	return nil
}

// readTrainerMetrics reads and checks metrics.json strictly: bounded,
// no unknown fields, samples ≥ 1, finite loss, accuracy in [0, 1].
func readTrainerMetrics(path string) (TrainerMetrics, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return TrainerMetrics{}, trainerErr(TrainerBadMetrics, "metrics file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTrainerMetricsBytes+1))
	if err != nil {
		return TrainerMetrics{}, trainerErr(TrainerBadMetrics, "metrics file: %w", err)
	}
	if len(b) > MaxTrainerMetricsBytes {
		return TrainerMetrics{}, trainerErr(TrainerBadMetrics, "metrics file is larger than %d bytes", MaxTrainerMetricsBytes)
	}
	m, err := ParseTrainerMetrics(b)
	if err != nil {
		return TrainerMetrics{}, &TrainerError{Reason: TrainerBadMetrics, Err: err}
	}
	return m, nil
}

// ParseTrainerMetrics parses a metrics file (see [TrainerMetrics]):
// one JSON object, no unknown fields, samples ≥ 1, a holdout with a
// finite non-negative loss and an accuracy in [0, 1], and at most
// MaxTrainerDPEvents DP events, each one the accountant is defined on
// with 1 to MaxTrainerDPSteps steps.
func ParseTrainerMetrics(b []byte) (TrainerMetrics, error) {
	var m TrainerMetrics
	if err := strictjson.Unmarshal(b, &m); err != nil {
		return TrainerMetrics{}, fmt.Errorf("metrics file: %w", err)
	}
	if m.Samples == 0 {
		return TrainerMetrics{}, errors.New("metrics file: samples is missing or 0")
	}
	if h := m.Holdout; h != nil && h.Count > 0 {
		if math.IsNaN(h.Loss) || math.IsInf(h.Loss, 0) || h.Loss < 0 {
			return TrainerMetrics{}, fmt.Errorf("metrics file: holdout loss %v is not a finite non-negative number", h.Loss)
		}
		if !(h.Accuracy >= 0 && h.Accuracy <= 1) {
			return TrainerMetrics{}, fmt.Errorf("metrics file: holdout accuracy %v outside [0, 1]", h.Accuracy)
		}
	}
	if len(m.DPEvents) > MaxTrainerDPEvents {
		return TrainerMetrics{}, fmt.Errorf("metrics file: %d dp_events, at most %d", len(m.DPEvents), MaxTrainerDPEvents)
	}
	for i, e := range m.DPEvents {
		if err := e.Validate(); err != nil {
			return TrainerMetrics{}, fmt.Errorf("metrics file: dp_events[%d]: %w", i, err)
		}
		if e.Steps < 1 || e.Steps > MaxTrainerDPSteps {
			return TrainerMetrics{}, fmt.Errorf("metrics file: dp_events[%d]: steps %d outside [1, %d]", i, e.Steps, MaxTrainerDPSteps)
		}
	}
	return m, nil
}

// lineLog logs a trainer's output stream line by line, at most
// MaxTrainerLogBytes per round and MaxTrainerLogLine per line; exec.Cmd
// writes to it from one goroutine per stream.
type lineLog struct {
	log     *slog.Logger
	stream  string
	mu      sync.Mutex
	line    []byte
	logged  int
	dropped int64
	last    string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := MaxTrainerLogLine - len(l.line); room > 0 {
			l.line = append(l.line, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

// emit logs the pending line (or counts it once the budget is spent).
func (l *lineLog) emit() {
	s := strings.ToValidUTF8(string(l.line), "\uFFFD")
	l.line = l.line[:0]
	if strings.TrimSpace(s) != "" {
		l.last = s
	}
	if l.logged+len(s) > MaxTrainerLogBytes {
		l.dropped += int64(len(s)) + 1
		return
	}
	l.logged += len(s) + 1
	l.log.Info("trainer output", slog.String("stream", l.stream), slog.String("line", s))
}

// flush logs a last unterminated line and what was dropped.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) > 0 {
		l.emit()
	}
	if l.dropped > 0 {
		l.log.Warn("trainer output truncated", slog.String("stream", l.stream), slog.Int64("dropped_bytes", l.dropped))
	}
}

func (l *lineLog) lastLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
