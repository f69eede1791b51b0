package participant

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/safetensors"
	"github.com/fedguard/fedguard/wire"
)

// execSpec is a 3-feature, 2-class logistic regression: 8 parameters in
// two tensors.
func execSpec() *fedguardv1.ModelSpec {
	return &fedguardv1.ModelSpec{
		FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_LOGREG,
		Features: []string{"a", "b", "c"}, Label: "y", Classes: []string{"0", "1"}, NumParams: 8,
	}
}

func execAssignment() *fedguardv1.RoundAssignment {
	return &fedguardv1.RoundAssignment{
		Round: 4, Attempt: 1, Seed: 99,
		Plan:    &fedguardv1.TrainingPlan{LocalEpochs: 2, LearningRate: 0.1, BatchSize: 16, L2: 1e-3},
		Scaling: &fedguardv1.FeatureScaling{Mean: []float64{0, 1, 2}, Std: []float64{1, 1, 2}},
	}
}

// helperTrainer returns a command that runs this test binary as an
// external trainer behaving as mode (see TestHelperTrainer).
func helperTrainer(mode string, args ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestHelperTrainer$", "--", mode}, args...)
}

// TestHelperTrainer is not a test: run by an ExecTrainer (FEDGUARD_PLAN
// set), it is the external trainer of the exec tests, a real process that
// follows or breaks the contract as its mode says.
func TestHelperTrainer(t *testing.T) {
	if os.Getenv("FEDGUARD_PLAN") == "" {
		t.Skip("run as an external trainer only")
	}
	args := flag.Args()
	os.Exit(helperTrain(args[0], args[1:]))
}

func helperTrain(mode string, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		return 2
	}
	// The environment is exactly the contract's.
	var names []string
	for _, kv := range os.Environ() {
		names = append(names, kv[:strings.IndexByte(kv, '=')])
	}
	slices.Sort(names)
	want := []string{"FEDGUARD_METRICS", "FEDGUARD_MODEL", "FEDGUARD_OUTPUT", "FEDGUARD_PLAN", "FEDGUARD_WORKDIR", "HOME", "PATH"}
	if os.Getenv("FEDGUARD_DATA") != "" {
		want = slices.Insert(want, 0, "FEDGUARD_DATA")
	}
	if !slices.Equal(names, want) {
		return fail("environment %v, want %v", names, want)
	}
	if wd, _ := os.Getwd(); filepath.Base(wd) != "participant" || os.Getenv("HOME") != os.Getenv("FEDGUARD_WORKDIR") {
		return fail("working directory %s (want the agent's), HOME %s, FEDGUARD_WORKDIR %s", wd, os.Getenv("HOME"), os.Getenv("FEDGUARD_WORKDIR"))
	}
	if fi, err := os.Stat(os.Getenv("FEDGUARD_WORKDIR")); err != nil || fi.Mode().Perm() != 0o700 {
		return fail("round directory %v, %v: want mode 0700", fi, err)
	}
	b, err := os.ReadFile(os.Getenv("FEDGUARD_PLAN"))
	if err != nil {
		return fail("%v", err)
	}
	var plan TrainerPlan
	if err := json.Unmarshal(b, &plan); err != nil {
		return fail("plan: %v", err)
	}
	if plan.FormatVersion != TrainerPlanVersion || plan.Round == 0 || plan.Epochs == 0 || (plan.Scaling == nil) != (mode == "tensors") || plan.Model != TrainerModelFile {
		return fail("plan %+v", plan)
	}
	if mode == "tensors" {
		// The hospital's own data, which the agent passes and never opens.
		if fi, err := os.Stat(plan.Data); err != nil || !fi.IsDir() || plan.Data != os.Getenv("FEDGUARD_DATA") {
			return fail("plan data %q: %v (want the configured directory)", plan.Data, err)
		}
		mode = "ok"
	}
	layout, params, _, err := safetensors.ReadFile(os.Getenv("FEDGUARD_MODEL"), 0)
	if err != nil {
		return fail("%v", err)
	}
	for i := range params {
		params[i] += 0.5
	}
	out, metrics := os.Getenv("FEDGUARD_OUTPUT"), os.Getenv("FEDGUARD_METRICS")
	writeOK := func() int {
		// Tensors in reverse order: the agent places them by name.
		rev := slices.Clone(layout)
		slices.Reverse(rev)
		var rp []float32
		pos := map[string][]float32{}
		o := 0
		for _, t := range layout {
			pos[t.Name] = params[o : o+t.NumElements()]
			o += t.NumElements()
		}
		for _, t := range rev {
			rp = append(rp, pos[t.Name]...)
		}
		if err := safetensors.WriteFile(out, rev, rp, nil, 0o600); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	writeMetrics := func(s string) int {
		if err := os.WriteFile(metrics, []byte(s), 0o600); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	const goodMetrics = `{"samples": 42, "holdout": {"count": 10, "loss": 0.5, "accuracy": 0.8}}`
	switch mode {
	case "ok":
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(goodMetrics)
	case "dp":
		// Trains, and reports the DP events args[0] (a JSON array); the
		// plan must carry the hospital's budget.
		if plan.DP == nil || plan.DP.Delta != 1e-5 || !(plan.DP.EpsilonBudget > 0) || plan.DP.EpsilonSpent < 0 {
			return fail("plan dp %+v, want the hospital's budget", plan.DP)
		}
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(`{"samples": 42, "dp_events": ` + args[0] + `}`)
	case "dp_drift":
		// "dp" with events that differ from round to round, as a
		// trainer reporting the sampling rate and noise it measured:
		// one of its own (q, σ) for the round, and one it reported
		// before (a repeat).
		if plan.DP == nil || !(plan.DP.EpsilonBudget > 0) {
			return fail("plan dp %+v, want the hospital's budget", plan.DP)
		}
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(fmt.Sprintf(`{"samples": 42, "dp_events": [{"q": %v, "sigma": %v, "steps": 40}, {"q": 0.05, "sigma": 1.2, "steps": 10}]}`,
			DriftQ(plan.Round), DriftSigma(plan.Round)))
	case "dp_no_budget":
		// "dp" for a hospital that keeps a ledger without a budget.
		if plan.DP == nil || plan.DP.Delta != 1e-5 || plan.DP.EpsilonBudget != 0 {
			return fail("plan dp %+v, want a ledger without a budget", plan.DP)
		}
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(`{"samples": 42, "dp_events": ` + args[0] + `}`)
	case "crash_once":
		// Crashes unless the marker file args[0] exists, which it makes.
		if _, err := os.Stat(args[0]); err == nil {
			if writeOK() != 0 {
				return 2
			}
			return writeMetrics(goodMetrics)
		}
		os.WriteFile(args[0], nil, 0o600)
		fmt.Fprintln(os.Stderr, "Segmentation fault")
		return 139
	case "crash":
		fmt.Fprintln(os.Stderr, "Traceback: CUDA out of memory")
		return 3
	case "sleep":
		time.Sleep(time.Hour)
	case "spawn":
		child := exec.Command("sleep", "300")
		if err := child.Start(); err != nil {
			return fail("%v", err)
		}
		if err := os.WriteFile(args[0], []byte(strconv.Itoa(child.Process.Pid)), 0o600); err != nil {
			return fail("%v", err)
		}
		time.Sleep(time.Hour)
	case "linger":
		// Leaves a child running (holding its stdout) and exits 0.
		child := exec.Command("sleep", "300")
		child.Stdout = os.Stdout
		if err := child.Start(); err != nil {
			return fail("%v", err)
		}
		if err := os.WriteFile(args[0], []byte(strconv.Itoa(child.Process.Pid)), 0o600); err != nil {
			return fail("%v", err)
		}
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(goodMetrics)
	case "garbage":
		os.WriteFile(out, []byte("not a safetensors file at all"), 0o600)
		return writeMetrics(goodMetrics)
	case "shape":
		bad := slices.Clone(layout)
		bad[1].Shape = []int{1, bad[1].Shape[0]} // bias as a row vector
		if err := safetensors.WriteFile(out, bad, params, nil, 0o600); err != nil {
			return fail("%v", err)
		}
		return writeMetrics(goodMetrics)
	case "missing_tensor":
		if err := safetensors.WriteFile(out, layout[:1], params[:layout[0].NumElements()], nil, 0o600); err != nil {
			return fail("%v", err)
		}
		return writeMetrics(goodMetrics)
	case "nan":
		hdr, _ := safetensors.Header(layout, nil)
		f := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		f = append(f, hdr...)
		for i := range params {
			v := params[i]
			if i == 3 {
				v = float32(math.NaN())
			}
			f = binary.LittleEndian.AppendUint32(f, math.Float32bits(v))
		}
		os.WriteFile(out, f, 0o600)
		return writeMetrics(goodMetrics)
	case "overflow":
		// Finite weights whose difference from the start is not.
		for i := range params {
			params[i] = -math.MaxFloat32
		}
		if err := safetensors.WriteFile(out, layout, params, nil, 0o600); err != nil {
			return fail("%v", err)
		}
		return writeMetrics(goodMetrics)
	case "huge":
		f, err := os.Create(out)
		if err != nil {
			return fail("%v", err)
		}
		f.Truncate(1 << 30) // sparse: a 1 GiB file for an 8-parameter model
		f.Close()
		return writeMetrics(goodMetrics)
	case "symlink":
		if err := os.Symlink("/dev/zero", out); err != nil {
			return fail("%v", err)
		}
		return writeMetrics(goodMetrics)
	case "fifo":
		// A named pipe nobody writes: opening it for reading would block.
		if err := syscall.Mkfifo(out, 0o600); err != nil {
			return fail("%v", err)
		}
		return writeMetrics(goodMetrics)
	case "fifo_metrics":
		if writeOK() != 0 {
			return 2
		}
		if err := syscall.Mkfifo(metrics, 0o600); err != nil {
			return fail("%v", err)
		}
		return 0
	case "no_output":
		return writeMetrics(goodMetrics)
	case "no_metrics":
		return writeOK()
	case "bad_metrics":
		writeOK()
		return writeMetrics(`{"samples": 0}`)
	case "unknown_metrics":
		writeOK()
		return writeMetrics(`{"samples": 3, "gpu": "A100"}`)
	case "chatty":
		line := strings.Repeat("x", 100) + "\n"
		for range 10000 { // 1 MB
			os.Stdout.WriteString(line)
		}
		os.Stdout.WriteString(strings.Repeat("y", 5000) + "\n")
		if writeOK() != 0 {
			return 2
		}
		return writeMetrics(goodMetrics)
	}
	return fail("unknown mode %q", mode)
}

func newExec(t *testing.T, cmd []string, log *slog.Logger) *ExecTrainer {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &ExecTrainer{Command: cmd, Dir: filepath.Join(t.TempDir(), "work"), Timeout: time.Minute, Log: log}
	if _, err := tr.Prepare(execSpec()); err != nil {
		t.Fatal(err)
	}
	return tr
}

var execStart = []float32{1, 2, 3, 4, 5, 6, 7, 8}

func TestExecTrainer(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	tr := newExec(t, helperTrainer("ok"), slog.New(slog.NewTextHandler(&logs, nil)))
	start := slices.Clone(execStart)
	res, err := tr.Train(context.Background(), execAssignment(), start)
	if err != nil {
		t.Fatalf("Train: %v\nlogs:\n%s", err, logs.String())
	}
	want := Result{Delta: []float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, Samples: 42}
	want.Holdout.Count, want.Holdout.Loss, want.Holdout.Accuracy = 10, 0.5, 0.8
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Train (-want +got):\n%s", diff)
	}
	if !slices.Equal(start, execStart) {
		t.Errorf("Train modified start")
	}
	// The working directory is private, and each round's files are gone.
	fi, err := os.Stat(tr.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("working directory mode %v, want 0700", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(tr.Dir); len(ents) != 0 {
		t.Errorf("round directory left behind: %v", ents)
	}
}

func TestExecTrainerShell(t *testing.T) {
	// As `--trainer-command "sh noop.sh"` run from the script's directory.
	dir, err := filepath.Abs("testdata/trainer")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := SplitCommand("sh noop.sh")
	if err != nil {
		t.Fatal(err)
	}
	tr := &ExecTrainer{Command: cmd, CommandDir: dir, Dir: filepath.Join(t.TempDir(), "work"), Log: slog.New(slog.DiscardHandler)}
	if _, err := tr.Prepare(execSpec()); err != nil {
		t.Fatal(err)
	}
	res, err := tr.Train(context.Background(), execAssignment(), execStart)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Delta, make([]float32, 8)) || res.Samples != 1 {
		t.Errorf("Train = %+v, want a zero update of 1 sample", res)
	}
}

func TestExecTrainerFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode   string
		reason string
		want   string // in the error message
	}{
		{"crash", TrainerCrashed, "CUDA out of memory"},
		{"garbage", TrainerBadOutput, "malformed"},
		{"no_output", TrainerBadOutput, "no such file"},
		{"shape", TrainerBadLayout, "shape"},
		{"missing_tensor", TrainerBadLayout, "lacks tensor"},
		{"nan", TrainerNonFinite, "NaN"},
		{"huge", TrainerBadOutput, "more than"},
		{"symlink", TrainerBadOutput, ""},
		{"fifo", TrainerBadOutput, "not a regular file"},
		{"fifo_metrics", TrainerBadMetrics, "not a regular file"},
		{"no_metrics", TrainerBadMetrics, "no such file"},
		{"bad_metrics", TrainerBadMetrics, "samples"},
		{"unknown_metrics", TrainerBadMetrics, "gpu"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			tr := newExec(t, helperTrainer(tc.mode), nil)
			_, err := tr.Train(context.Background(), execAssignment(), execStart)
			wantTrainerError(t, err, tc.reason, tc.want)
			if ents, _ := os.ReadDir(tr.Dir); len(ents) != 0 {
				t.Errorf("round directory left behind: %v", ents)
			}
		})
	}
	t.Run("round deadline", func(t *testing.T) {
		t.Parallel()
		tr := newExec(t, helperTrainer("sleep"), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := tr.Train(ctx, execAssignment(), execStart)
		wantTrainerError(t, err, TrainerTimedOut, "deadline")
	})
	// A round whose deadline passes before the trainer starts (the
	// machine was slow writing its files) is a timeout, as when it passes
	// while the trainer runs; it used to be reported as "start".
	t.Run("deadline before start", func(t *testing.T) {
		t.Parallel()
		tr := newExec(t, helperTrainer("sleep"), nil)
		_, err := tr.Train(&expiresAfterFirstLook{Context: context.Background()}, execAssignment(), execStart)
		wantTrainerError(t, err, TrainerTimedOut, "deadline")
	})
	t.Run("overflow", func(t *testing.T) {
		t.Parallel()
		tr := newExec(t, helperTrainer("overflow"), nil)
		start := slices.Repeat([]float32{math.MaxFloat32}, 8)
		_, err := tr.Train(context.Background(), execAssignment(), start)
		wantTrainerError(t, err, TrainerNonFinite, "trained − start")
	})
	t.Run("cannot start", func(t *testing.T) {
		t.Parallel()
		tr := newExec(t, []string{"/bin/sh"}, nil)
		tr.Command = []string{filepath.Join(t.TempDir(), "gone")}
		_, err := tr.Train(context.Background(), execAssignment(), execStart)
		wantTrainerError(t, err, TrainerCannotStart, "")
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		tr := newExec(t, helperTrainer("sleep"), nil)
		tr.Timeout = 200 * time.Millisecond
		_, err := tr.Train(context.Background(), execAssignment(), execStart)
		wantTrainerError(t, err, TrainerTimedOut, "")
	})
}

// wantTrainerError fails the test unless err is a TrainerError (and so
// ErrTrainer) with reason, and says so unless its message mentions words.
func wantTrainerError(t *testing.T, err error, reason, words string) {
	t.Helper()
	var te *TrainerError
	if !errors.As(err, &te) || !errors.Is(err, ErrTrainer) || te.Reason != reason {
		t.Fatalf("Train = %v, want a TrainerError with reason %q", err, reason)
	}
	if !strings.Contains(err.Error(), words) {
		t.Errorf("Train = %v, want it to mention %q", err, words)
	}
}

// TestExecTrainerCancelKillsGroup cancels a round while the trainer and a
// process it started run: both must die, and Train must return the
// context's error.
func TestExecTrainerCancelKillsGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	tr := newExec(t, helperTrainer("spawn", pidFile), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := tr.Train(ctx, execAssignment(), execStart)
		done <- err
	}()
	var pid int
	for pid == 0 {
		select {
		case err := <-done:
			t.Fatalf("Train returned %v before it was cancelled", err)
		case <-time.After(20 * time.Millisecond):
		}
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			pid, _ = strconv.Atoi(string(b))
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Train = %v, want context.Canceled", err)
	}
	// The grandchild is killed with the group; it may linger as a zombie
	// until its new parent reaps it.
	for i := 0; alive(pid); i++ {
		if i == 500 {
			t.Fatalf("the trainer's child %d survived the cancelled round", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecTrainerKillsLeftovers runs a trainer that exits 0 but leaves a
// child running: the round succeeds and the child is dead, so that no
// process of one round keeps working on the hospital's data after it.
func TestExecTrainerKillsLeftovers(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	tr := newExec(t, helperTrainer("linger", pidFile), nil)
	if _, err := tr.Train(context.Background(), execAssignment(), execStart); err != nil {
		t.Fatalf("Train = %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	for i := 0; alive(pid); i++ {
		if i == 500 {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the trainer's child %d outlived the round", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecTrainerBoundedLog(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	tr := newExec(t, helperTrainer("chatty"), slog.New(slog.NewJSONHandler(&logs, nil)))
	if _, err := tr.Train(context.Background(), execAssignment(), execStart); err != nil {
		t.Fatal(err)
	}
	var logged, longest int
	truncated := false
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct {
			Msg, Stream, Line string
			Dropped           int64 `json:"dropped_bytes"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "trainer output":
			logged += len(rec.Line) + 1
			longest = max(longest, len(rec.Line))
		case "trainer output truncated":
			truncated = rec.Stream == "stdout" && rec.Dropped > 900_000
		}
	}
	if logged > MaxTrainerLogBytes || logged < MaxTrainerLogBytes/2 {
		t.Errorf("logged %d bytes of trainer output, want at most (and about) %d", logged, MaxTrainerLogBytes)
	}
	if longest > MaxTrainerLogLine {
		t.Errorf("logged a line of %d bytes, more than %d", longest, MaxTrainerLogLine)
	}
	if !truncated {
		t.Errorf("no truncation record for the dropped stdout")
	}
}

// tensorSpec is a small convolutional layout without feature columns.
func tensorSpec() *fedguardv1.ModelSpec {
	return &fedguardv1.ModelSpec{
		FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_TENSORS, NumParams: 2*9 + 2 + 1,
		Tensors: []*fedguardv1.TensorSpec{{Name: "conv.weight", Shape: []uint64{2, 1, 3, 3}}, {Name: "conv.bias", Shape: []uint64{2}}, {Name: "scale"}},
	}
}

// TestExecTrainerTensorLayout: a federation of any tensor layout, with no
// feature columns, trained by an exec trainer whose data is a directory of
// its own (images, say). The agent reads no CSV (the directory holds
// none) and computes no statistics; the trainer gets the layout, the
// directory's path and no scaling, and its weights come back by name.
func TestExecTrainerTensorLayout(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	tr := &ExecTrainer{Command: helperTrainer("tensors"), Dir: filepath.Join(t.TempDir(), "work"), Timeout: time.Minute,
		Local: &LocalTrainer{DataFile: data}, Log: slog.New(slog.DiscardHandler)}
	st, err := tr.Prepare(tensorSpec())
	if err != nil {
		t.Fatalf("Prepare with a data directory: %v", err)
	}
	if st.Count != 0 || len(st.Sum) != 0 {
		t.Errorf("Prepare computed statistics %+v for a model without feature columns", st)
	}
	start := make([]float32, 21)
	for i := range start {
		start[i] = float32(i)
	}
	a := execAssignment()
	a.Scaling = &fedguardv1.FeatureScaling{}
	res, err := tr.Train(context.Background(), a, start)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	for i, d := range res.Delta {
		if d != 0.5 {
			t.Fatalf("delta[%d] = %v, want 0.5 (tensors placed by name)", i, d)
		}
	}
}

// TestLocalTrainerRefusesTensorLayout: the built-in trainer cannot train a
// tensor layout and says so, pointing at the exec trainer.
func TestLocalTrainerRefusesTensorLayout(t *testing.T) {
	_, err := (&LocalTrainer{DataFile: "testdata/none.csv"}).Prepare(tensorSpec())
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "--trainer exec") {
		t.Errorf("Prepare = %v, want ErrIncompatible naming the exec trainer", err)
	}
}

func TestExecTrainerPrepare(t *testing.T) {
	tr := &ExecTrainer{Command: []string{"/nonexistent/trainer"}}
	if _, err := tr.Prepare(execSpec()); err == nil {
		t.Errorf("Prepare with a missing program succeeded")
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	tr = &ExecTrainer{Command: []string{"/bin/sh"}, Dir: open}
	if _, err := tr.Prepare(execSpec()); err == nil || !strings.Contains(err.Error(), "0700") {
		t.Errorf("Prepare with a world-readable directory = %v, want a refusal", err)
	}
	if _, err := (&ExecTrainer{}).Train(context.Background(), execAssignment(), execStart); err == nil {
		t.Errorf("Train before Prepare succeeded")
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"python3 train.py", []string{"python3", "train.py"}},
		{"  python3\t-u  train.py --epochs 3 ", []string{"python3", "-u", "train.py", "--epochs", "3"}},
		{`python3 '/opt/my models/train.py'`, []string{"python3", "/opt/my models/train.py"}},
		{`sh -c "echo \"\$HOME\" \\ok"`, []string{"sh", "-c", `echo "$HOME" \ok`}},
		{`a\ b c''d ""`, []string{"a b", "cd", ""}},
		{`$HOME *.py; rm -rf /`, []string{"$HOME", "*.py;", "rm", "-rf", "/"}},
	} {
		got, err := SplitCommand(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "   ", `python3 'train.py`, `python3 "train.py`, `python3 train.py\`} {
		if got, err := SplitCommand(in); err == nil {
			t.Errorf("SplitCommand(%q) = %q, want an error", in, got)
		}
	}
}

func TestParseTrainerMetrics(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `{"samples": 0}`, `{"samples": -1}`, `{"samples": 1.5}`, `{"samples": 1} {}`,
		`{"samples": 1, "holdout": {"count": 3, "loss": -1, "accuracy": 0.5}}`,
		`{"samples": 1, "holdout": {"count": 3, "loss": 1, "accuracy": 1.5}}`,
		`{"samples": 1, "extra": true}`,
		`{"samples": 1, "dp_events": [{"q": 0, "sigma": 1, "steps": 1}]}`,
		`{"samples": 1, "dp_events": [{"q": 1.5, "sigma": 1, "steps": 1}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 0, "steps": 1}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": -1, "steps": 1}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 1, "steps": 0}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 1, "steps": -3}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 1, "steps": 1000000001}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 1, "steps": 1.5}]}`,
		`{"samples": 1, "dp_events": [{"q": 0.1, "sigma": 1, "steps": 1, "epsilon": 0.1}]}`,
		`{"samples": 1, "dp_events": {"q": 0.1, "sigma": 1, "steps": 1}}`,
		`{"samples": 1, "dp_events": [` + strings.Repeat(`{"q": 0.1, "sigma": 1, "steps": 1},`, MaxTrainerDPEvents) + `{"q": 0.1, "sigma": 1, "steps": 1}]}`,
	} {
		if m, err := ParseTrainerMetrics([]byte(in)); err == nil {
			t.Errorf("ParseTrainerMetrics(%q) = %+v, want an error", in, m)
		}
	}
	m, err := ParseTrainerMetrics([]byte(`{"samples": 7, "holdout": {"count": 2, "loss": 0.1, "accuracy": 1}}`))
	if err != nil || m.Samples != 7 || m.Holdout.Accuracy != 1 {
		t.Errorf("ParseTrainerMetrics = %+v, %v", m, err)
	}
	m, err = ParseTrainerMetrics([]byte(`{"samples": 7, "dp_events": [{"q": 0.01, "sigma": 1.1, "steps": 300}, {"q": 1, "sigma": 5, "steps": 1}]}`))
	if want := []privacy.Event{{Q: 0.01, Sigma: 1.1, Steps: 300}, {Q: 1, Sigma: 5, Steps: 1}}; err != nil || !slices.Equal(m.DPEvents, want) {
		t.Errorf("ParseTrainerMetrics with dp_events = %+v, %v; want %v", m, err, want)
	}
}

// HelperTrainer is helperTrainer for the external tests.
var HelperTrainer = helperTrainer

// FuzzSplitCommand checks that SplitCommand never panics and that words
// it returns, quoted back with single quotes, split to themselves.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"python3 train.py", `sh -c "echo \"\$HOME\""`, `a\ b 'c d' ""`, `'`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitCommand(s)
		if err != nil {
			return
		}
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		again, err := SplitCommand(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, args) {
			t.Fatalf("SplitCommand(%q) = %q; quoted back and split: %q, %v", s, args, again, err)
		}
	})
}

// FuzzParseTrainerMetrics checks that the parser never panics and that
// what it accepts marshals and parses back to itself.
func FuzzParseTrainerMetrics(f *testing.F) {
	for _, s := range []string{`{"samples": 42, "holdout": {"count": 10, "loss": 0.5, "accuracy": 0.8}}`, `{"samples": 1}`, `{"samples": 0}`,
		`{"samples": 3, "dp_events": [{"q": 0.01, "sigma": 1.1, "steps": 300}]}`, `{"samples": 3, "dp_events": [{"q": 2, "sigma": 1, "steps": 1}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseTrainerMetrics(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", m, err)
		}
		again, err := ParseTrainerMetrics(out)
		if err != nil || !cmp.Equal(again, m) {
			t.Fatalf("round trip of %s: %+v, %v; want %+v", out, again, err, m)
		}
	})
}

// expiresAfterFirstLook is a context whose deadline passes right after Train
// first looks at it: the round's files are written, and then the trainer
// cannot start. On a loaded machine a real deadline does this by chance.
type expiresAfterFirstLook struct {
	context.Context
	looks atomic.Int32
}

func (c *expiresAfterFirstLook) Err() error {
	if c.looks.Add(1) == 1 {
		return nil
	}
	return context.DeadlineExceeded
}

func (c *expiresAfterFirstLook) Done() <-chan struct{} {
	if c.looks.Load() == 0 {
		return nil
	}
	done := make(chan struct{})
	close(done)
	return done
}

// TestExecTrainerReusesUpdate: a second Train writes its update into the
// memory of the first one's (which the caller is done with), and what is
// left there does not leak into it.
func TestExecTrainerReusesUpdate(t *testing.T) {
	t.Parallel()
	tr := newExec(t, helperTrainer("ok"), nil)
	first, err := tr.Train(context.Background(), execAssignment(), execStart)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first.Delta {
		first.Delta[i] = float32(math.NaN()) // the caller's leftovers
	}
	second, err := tr.Train(context.Background(), execAssignment(), execStart)
	if err != nil {
		t.Fatal(err)
	}
	if &second.Delta[0] != &first.Delta[0] {
		t.Error("the second update has new memory, want the first one's")
	}
	if want := slices.Repeat([]float32{0.5}, 8); !slices.Equal(second.Delta, want) {
		t.Errorf("second update = %v, want %v", second.Delta, want)
	}
}

func TestSubtractFinite(t *testing.T) {
	for _, tc := range []struct {
		name         string
		delta, start []float32
		want         []float32
		ok           bool
	}{
		{"finite", []float32{3, -1, 0}, []float32{1, 1, 0}, []float32{2, -2, 0}, true},
		{"overflow", []float32{math.MaxFloat32, 0}, []float32{-math.MaxFloat32, 0}, nil, false},
		{"negative overflow", []float32{0, -math.MaxFloat32}, []float32{0, math.MaxFloat32}, nil, false},
		{"empty", nil, nil, nil, true},
	} {
		err := subtractFinite(tc.delta, tc.start)
		if (err == nil) != tc.ok || (tc.ok && !slices.Equal(tc.delta, tc.want)) {
			t.Errorf("%s: subtractFinite = %v, %v; want ok %v, %v", tc.name, tc.delta, err, tc.ok, tc.want)
		}
	}
}

// TestSameSpecTensorLayout: a manifest whose model_spec names another
// tensor layout (or none) than Join announced is refused; the same one,
// with its digest, is accepted.
func TestSameSpecTensorLayout(t *testing.T) {
	const digest = "layout_sha256"
	l, err := safetensors.SpecLayout(mustSpec(t, tensorSpec()))
	if err != nil {
		t.Fatal(err)
	}
	d := l.Digest()
	good := fmt.Sprintf(`{"kind":"tensors","tensors":[{"name":"conv.weight","shape":[2,1,3,3]},{"name":"conv.bias","shape":[2]},{"name":"scale","shape":[]}],"%s":"%x"}`, digest, d)
	if err := sameSpec([]byte(good), tensorSpec()); err != nil {
		t.Errorf("sameSpec(the announced layout) = %v", err)
	}
	for name, raw := range map[string]string{
		"no tensors":    `{"kind":"tensors"}`,
		"other shape":   strings.Replace(good, "[2,1,3,3]", "[2,3,3,1]", 1),
		"other order":   `{"kind":"tensors","tensors":[{"name":"conv.bias","shape":[2]},{"name":"conv.weight","shape":[2,1,3,3]},{"name":"scale","shape":[]}]}`,
		"other digest":  strings.Replace(good, fmt.Sprintf("%x", d), strings.Repeat("0", 64), 1),
		"built-in kind": `{"kind":"mlp","tensors":[]}`,
	} {
		if err := sameSpec([]byte(raw), tensorSpec()); err == nil {
			t.Errorf("%s: sameSpec accepted %s", name, raw)
		}
	}
}

func mustSpec(t *testing.T, p *fedguardv1.ModelSpec) model.Spec {
	t.Helper()
	s, err := wire.SpecFromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// DriftQ and DriftSigma are the sampling rate and noise multiplier the
// "dp_drift" helper trainer reports for round r: a little different every
// round (exported for the package's external tests).
func DriftQ(r uint64) float64     { return 0.05 + float64(r)/1000 }
func DriftSigma(r uint64) float64 { return 1.2 + float64(r)/100 }
