// Package demo runs a whole federation on one machine: a federation CA, a
// coordinator and (by default) four hospitals with unequal, label-skewed
// shares of the WDBC breast-cancer data, all over real mutual-TLS gRPC on
// loopback. A rule that cannot aggregate the rounds of four hospitals (Krum
// over buckets, say) gets the fewest hospitals it can (see [Run]).
//
// It is what `fedguard demo` runs, and the integration tests use it as the
// reference federation. With Options.Poison one hospital turns bad: it
// sends its honest update multiplied by PoisonFactor, and the
// coordinator's anomaly monitoring flags it (see the rows' flags, the
// summary, and with Options.MetricsListen the status page and /metrics). The global model is evaluated after every round on
// rows that no hospital holds (the demo's held-out test split); in a real
// federation nobody holds such rows, and the participants' own holdout
// evaluations (also shown) are what the operator sees.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/mnist"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// Federation is the demo federation's name, as in its certificates.
const Federation = "demo"

// DefaultHospitals is the number of hospitals a demo runs when
// Options.Hospitals is 0 and the aggregation rule can aggregate their rounds.
const DefaultHospitals = 4

// MinHospitals and MaxHospitals bound the number of hospitals: it takes two
// to federate, and the names run from hospital-a to hospital-z.
const (
	MinHospitals = 2
	MaxHospitals = 26
)

// ErrHospitals is a number of hospitals outside [MinHospitals, MaxHospitals].
var ErrHospitals = fmt.Errorf("demo: the number of hospitals must be between %d and %d", MinHospitals, MaxHospitals)

// Options configure a demo run.
type Options struct {
	// Dir keeps the federation's files (CA, keys, data, database); empty
	// means a temporary directory removed afterwards.
	Dir string
	// Rounds is the number of training rounds (default 20).
	Rounds int
	// Model is "logreg" (default) or "mlp".
	Model string
	// Aggregation is the aggregation rule and its parameters (default
	// fedavg).
	Aggregation aggregation.Config
	// Secure runs every round through secure aggregation: the
	// coordinator sees only sums (of each bucket, with a bucket size).
	Secure bool
	// Seed fixes the data split and the initial model.
	Seed uint64
	// Hospitals is the number of hospitals, between MinHospitals and
	// MaxHospitals. Zero means DefaultHospitals, or if the coordinator
	// cannot run that many with the aggregation rule, the fewest above it
	// that it can.
	Hospitals int
	// JSON prints one JSON object per round instead of a table.
	JSON bool
	// Log receives the federation's structured logs (default: discarded
	// below warnings).
	Log *slog.Logger
	// Poison names a hospital (hospital-a, …) that sends its update
	// multiplied by PoisonFactor every round (see Poisoned); empty: none.
	// The coordinator checks norms in plain rounds of three or more
	// updates (see PoisonFactor for when it flags this one); secure rounds
	// are not monitored.
	Poison string
	// Trainer is TrainerBuiltin (default: fedguard's models on WDBC) or
	// TrainerPyTorch (an MLP on MNIST, trained by examples/pytorch's
	// train.py in real python processes through the exec contract).
	Trainer string
	// Python is the interpreter of TrainerPyTorch (default DefaultPython).
	Python string
	// Partition deals MNIST among the hospitals of TrainerPyTorch, as
	// partition.Parse reads it (default DefaultPartition).
	Partition string
	// MetricsListen sets the coordinator's metrics_listen (host:port;
	// port 0 picks one): /metrics and the status page at /status, whose
	// URL the demo prints first. Empty: none.
	MetricsListen string
}

// PoisonFactor is what a poisoned hospital (Options.Poison) multiplies its
// update by. From the same starting model the honest norms lie within a
// few times of each other, so the coordinator's norm check flags the
// poisoned update in round 1 whichever hospital it is. Later it depends on
// the rule: the check is relative to the cohort, and under fedavg the
// poisoned update steers the model towards its own data, after which its
// (scaled) updates shrink and the others' corrective updates grow, so it
// is flagged in some rounds only (20 of 20 rounds to 1 of 20 over seeds
// 1 to 8 and the four hospitals). A robust rule (median, f 1) keeps the
// model where the honest hospitals want it, and the poisoned hospital is
// flagged in nearly every round. A larger factor does not help: the
// poisoned hospital steers harder.
const PoisonFactor = 50

// Poisoned is a hospital gone bad: it trains like Trainer, then sends the
// update multiplied by Factor (a scaling attack, the crudest model
// poisoning). The demo and the integration tests use it.
type Poisoned struct {
	participant.Trainer
	Factor float32
}

var _ participant.Trainer = (*Poisoned)(nil)

// Train implements participant.Trainer.
func (p *Poisoned) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	r, err := p.Trainer.Train(ctx, a, start)
	for i := range r.Delta {
		r.Delta[i] *= p.Factor
	}
	return r, err
}

// DataDescription implements participant.DataDescriber: a poisoned
// hospital trains on its data like any other, and reports it.
func (p *Poisoned) DataDescription() (lineage.Description, bool) {
	if d, ok := p.Trainer.(participant.DataDescriber); ok {
		return d.DataDescription()
	}
	return lineage.Description{}, false
}

// Flag is an anomaly flag the coordinator raised on a round's update.
type Flag struct {
	Participant string  `json:"participant"`
	Kind        string  `json:"kind"`
	Value       float64 `json:"value"`
}

// withDefaults fills in the zero options that have a default, all but
// Hospitals (see chooseHospitals) and Log.
func (o Options) withDefaults() Options {
	o.Trainer = cmp.Or(o.Trainer, TrainerBuiltin)
	if o.Trainer == TrainerPyTorch {
		o.Rounds = cmp.Or(o.Rounds, DefaultPyTorchRounds)
		o.Python = cmp.Or(o.Python, DefaultPython)
		o.Partition = cmp.Or(o.Partition, DefaultPartition)
		// train.py builds fedguard's MLP layout.
		o.Model = "mlp"
	}
	o.Rounds = cmp.Or(o.Rounds, 20)
	o.Model = cmp.Or(o.Model, "logreg")
	return o
}

// Hospital is a demo participant, its share of the training rows and the
// diagnosis it leans towards.
type Hospital struct {
	// Name is its participant name, as in its certificate.
	Name string
	// Fraction is its share of the federation's training rows.
	Fraction float64
	// Preferred is the diagnosis of most of its rows (see labelSkew).
	Preferred string
}

// HospitalSplit returns the n hospitals of a demo, named hospital-a,
// hospital-b, …: hospital i (from 0) holds the fraction (n−i)/(n(n+1)/2) of
// the training rows, so four hold 40, 30, 20 and 10 %, and leans towards B
// if i is even and M if it is odd. An n outside [MinHospitals,
// MaxHospitals] is ErrHospitals.
func HospitalSplit(n int) ([]Hospital, error) {
	if n < MinHospitals || n > MaxHospitals {
		return nil, fmt.Errorf("%w, not %d", ErrHospitals, n)
	}
	total := float64(n * (n + 1) / 2)
	hs := make([]Hospital, n)
	for i := range hs {
		hs[i] = Hospital{
			Name:      "hospital-" + string(rune('a'+i)),
			Fraction:  float64(n-i) / total,
			Preferred: wdbc.Classes()[i%2],
		}
	}
	return hs, nil
}

// names are the hospitals' names.
func names(hs []Hospital) []string {
	ns := make([]string, len(hs))
	for i, h := range hs {
		ns[i] = h.Name
	}
	return ns
}

// tableFormat lays out one row of the per-round table.
const tableFormat = "%5s  %12s  %8s  %7s  %23s  %7s  %s\n"

// labelSkew is the share of a hospital's rows drawn from its preferred label.
const labelSkew = 0.75

// Row is one round of the demo's output.
type Row struct {
	Round        uint64   `json:"round"`
	Participants int      `json:"participants"`
	Names        []string `json:"names"`
	Dropped      []string `json:"dropped,omitempty"`
	Accuracy     float64  `json:"accuracy"`
	Loss         float64  `json:"loss"`
	// HoldoutAccuracy is the participants' own evaluation of the round's
	// starting model, weighted by their holdout sizes. Secure rounds do
	// not report it: it is about one hospital, so it stays there.
	HoldoutAccuracy float64 `json:"holdout_accuracy,omitempty"`
	// Buckets is the number of secure sums in a secure round.
	Buckets     int     `json:"buckets,omitempty"`
	Seconds     float64 `json:"seconds"`
	ModelSHA256 string  `json:"model_sha256"`
	// Flags are the coordinator's anomaly flags on the round's updates.
	Flags []Flag `json:"flags,omitempty"`
}

// Summary is the outcome of a demo run.
type Summary struct {
	Rounds        int     `json:"rounds"`
	FinalAccuracy float64 `json:"final_accuracy"`
	FinalLoss     float64 `json:"final_loss"`
	TestRows      int     `json:"test_rows"`
	// Hospitals is the number of hospitals in the federation.
	Hospitals int `json:"hospitals"`
	// HospitalsReason says why Hospitals is not DefaultHospitals when the
	// demo chose the number (Options.Hospitals 0).
	HospitalsReason string  `json:"hospitals_reason,omitempty"`
	Seconds         float64 `json:"seconds"`
	Dir             string  `json:"dir,omitempty"`
	// Poisoned is Options.Poison, and PoisonFlagged the number of rounds
	// in which the coordinator flagged it.
	Poisoned      string `json:"poisoned,omitempty"`
	PoisonFlagged int    `json:"poison_flagged,omitempty"`
	// Flags is the number of anomaly flags over all rounds.
	Flags int `json:"flags"`
}

// Run sets up the federation, trains, prints a row per round to out and
// returns the summary. With o.Hospitals 0 it runs DefaultHospitals, unless
// the coordinator's configuration for that many is invalid (the rule cannot
// aggregate a round of them); then it runs the fewest more, up to
// MaxHospitals, whose configuration is valid, and says why in the table's
// header. If there is no such number, the error is that of DefaultHospitals.
func Run(ctx context.Context, o Options, out io.Writer) (Summary, error) {
	start := time.Now()
	o = o.withDefaults()
	switch o.Trainer {
	case TrainerBuiltin:
	case TrainerPyTorch:
		if o.Poison != "" {
			return Summary{}, errors.New("demo: --poison works with the builtin trainer only")
		}
		if err := CheckPython(ctx, o.Python); err != nil {
			return Summary{}, err
		}
	default:
		return Summary{}, fmt.Errorf("demo: unknown trainer %q (want %s or %s)", o.Trainer, TrainerBuiltin, TrainerPyTorch)
	}
	n, why, err := chooseHospitals(o)
	if err != nil {
		return Summary{}, err
	}
	hospitals, err := HospitalSplit(n)
	if err != nil {
		return Summary{}, err
	}
	if o.Poison != "" && !slices.Contains(names(hospitals), o.Poison) {
		return Summary{}, fmt.Errorf("demo: poison %q is not one of the hospitals (%s)", o.Poison, strings.Join(names(hospitals), ", "))
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir := o.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fedguard-demo-")
		if err != nil {
			return Summary{}, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return Summary{}, err
	}

	var fed *Fed
	if o.Trainer == TrainerPyTorch {
		fed, err = SetupMNIST(dir, o.Seed, n, o.Partition, o.Python)
	} else {
		fed, err = SetupHospitals(dir, o.Seed, hospitals)
	}
	if err != nil {
		return Summary{}, err
	}
	fed.Poison = o.Poison
	cfg := fed.CoordinatorConfig(o)
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}

	var (
		mu   sync.Mutex
		rows []Row
		werr error
	)
	if !o.JSON {
		count := fmt.Sprintf("%d hospitals", n)
		if why != "" {
			count += " (" + why + ")"
		}
		poison := ""
		if o.Poison != "" {
			poison = fmt.Sprintf(", %s poisoned (update ×%d)", o.Poison, PoisonFactor)
		}
		what := o.Model
		if o.Trainer == TrainerPyTorch {
			what = fmt.Sprintf("MNIST %s, PyTorch %s trained by %s %s (approved %s)",
				o.Partition, PyTorchNetwork, o.Python, filepath.Join(fed.TrainerCode, "train.py"), fed.TrainerDigest)
		}
		fmt.Fprintf(out, "fedguard demo: %s, %s, %d rounds, rule %s%s, files in %s\n\n",
			count, what, o.Rounds, ruleName(cfg.Aggregation)+secureNote(cfg), poison, dir)
	}
	header := func() {
		if !o.JSON {
			fmt.Fprintf(out, tableFormat, "round", "participants", "accuracy", "loss", "hospitals' holdout acc.", "seconds", "anomaly flags")
		}
	}
	if o.MetricsListen == "" {
		header()
	}
	observe := func(res coordinator.RoundResult) {
		m, err := fed.Evaluate(res)
		row := Row{
			Round: res.Record.Round, Participants: len(res.Record.Participants), Dropped: res.Record.Dropped,
			Accuracy: m.Accuracy, Loss: m.Loss, HoldoutAccuracy: res.Record.HoldoutAccuracy,
			Seconds: res.Duration.Seconds(), ModelSHA256: res.Record.ModelSHA256, Buckets: len(res.Record.Secure),
		}
		for _, p := range res.Record.Participants {
			row.Names = append(row.Names, p.Name)
		}
		for _, f := range res.Flags {
			row.Flags = append(row.Flags, Flag{Participant: f.Participant, Kind: f.Kind, Value: f.Value})
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			werr = errors.Join(werr, err)
			return
		}
		rows = append(rows, row)
		if o.JSON {
			b, _ := json.Marshal(row)
			fmt.Fprintln(out, string(b))
			return
		}
		holdout := fmt.Sprintf("%.4f", row.HoldoutAccuracy)
		if row.Buckets > 0 {
			holdout = fmt.Sprintf("- (%d secure sum%s)", row.Buckets, map[bool]string{true: "s"}[row.Buckets > 1])
		}
		fmt.Fprintf(out, tableFormat, fmt.Sprint(row.Round), fmt.Sprint(row.Participants), fmt.Sprintf("%.4f", row.Accuracy),
			fmt.Sprintf("%.4f", row.Loss), holdout, fmt.Sprintf("%.3f", row.Seconds), flagText(res.Flags))
	}
	coord, err := coordinator.New(cfg, coordinator.WithInit(), coordinator.WithLogger(o.Log), coordinator.WithObserver(observe))
	if err != nil {
		return Summary{}, err
	}
	defer coord.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Summary{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(fed.Hospitals)+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := coord.Serve(ctx, lis); err != nil {
			errs <- fmt.Errorf("coordinator: %w", err)
			cancel()
		}
	}()
	if o.MetricsListen != "" {
		// Rows come from the observer only once the hospitals run.
		if addr := waitMetricsAddr(ctx, coord); addr != "" {
			if o.JSON {
				b, _ := json.Marshal(map[string]string{"status_page": "http://" + addr + "/status", "metrics": "http://" + addr + "/metrics"})
				fmt.Fprintln(out, string(b))
			} else {
				fmt.Fprintf(out, "status page: http://%s/status (metrics: http://%s/metrics)\n\n", addr, addr)
			}
		}
		header()
	}
	for _, h := range fed.Hospitals {
		agent, err := fed.Agent(h.Name, lis.Addr().String(), coord.PublicKeys(), o.Log, o.Seed, o.Python)
		if err != nil {
			cancel()
			wg.Wait()
			return Summary{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := ctx.Err(); err != nil {
		all = append(all, err)
	}
	if werr != nil {
		all = append(all, werr)
	}
	if len(all) > 0 {
		return Summary{}, errors.Join(all...)
	}
	if len(rows) == 0 {
		return Summary{}, errors.New("demo: no round closed")
	}
	last := rows[len(rows)-1]
	s := Summary{Rounds: len(rows), FinalAccuracy: last.Accuracy, FinalLoss: last.Loss, TestRows: fed.testRows(), Hospitals: len(fed.Hospitals), HospitalsReason: why, Seconds: time.Since(start).Seconds()}
	if o.Dir != "" {
		s.Dir = o.Dir
	}
	s.Poisoned = o.Poison
	for _, r := range rows {
		s.Flags += len(r.Flags)
		if o.Poison != "" && slices.ContainsFunc(r.Flags, func(f Flag) bool { return f.Participant == o.Poison }) {
			s.PoisonFlagged++
		}
	}
	if o.JSON {
		b, _ := json.Marshal(map[string]any{"summary": s})
		fmt.Fprintln(out, string(b))
	} else {
		fmt.Fprintf(out, "\nfinal: accuracy %.4f, loss %.4f on %d held-out rows after %d rounds (%.1f s)\n",
			s.FinalAccuracy, s.FinalLoss, s.TestRows, s.Rounds, s.Seconds)
		fmt.Fprintf(out, "anomaly flags: %d", s.Flags)
		if o.Poison != "" {
			fmt.Fprintf(out, "; the poisoned %s was flagged in %d of %d rounds", o.Poison, s.PoisonFlagged, s.Rounds)
		}
		fmt.Fprintln(out)
		if o.Dir != "" {
			data := cfg.DataDir
			fmt.Fprintf(out, "\nevery round is signed and audited; to check the record offline:\n"+
				"  fedguard audit export --db %s --out audit.jsonl\n"+
				"  fedguard audit verify --key %s audit.jsonl\n"+
				"  fedguard audit report --db %s --key %s\n"+
				"  fedguard audit lineage --db %s --key %s\n"+
				"  fedguard participant witness --state %s --cert %s --key %s --coordinator-key %s --out hospital-a.witness.json\n"+
				"  fedguard audit verify --key %s --ca %s --witness hospital-a.witness.json audit.jsonl\n"+
				"  fedguard audit model --data-dir %s --key %s --out %s\n"+
				"and the last round's model without fedguard, with cosign:\n"+
				"  cosign verify-blob-attestation --key %s --insecure-ignore-tlog --type %s --signature %s.manifest.json %s\n",
				filepath.Join(data, coordinator.AuditFile), filepath.Join(data, manifest.PublicFile),
				filepath.Join(data, coordinator.AuditFile), filepath.Join(data, manifest.PublicFile),
				filepath.Join(data, coordinator.AuditFile), filepath.Join(data, manifest.PublicFile),
				filepath.Join(o.Dir, "hospital-a", "accepted.json"), filepath.Join(o.Dir, "hospital-a", "hospital-a.crt"), filepath.Join(o.Dir, "hospital-a", "hospital-a.key"), filepath.Join(data, manifest.PublicFile),
				filepath.Join(data, manifest.PublicFile), filepath.Join(o.Dir, "ca", "ca.crt"),
				data, filepath.Join(data, manifest.PublicFile), o.Dir,
				filepath.Join(data, manifest.CosignPublicFile), manifest.PredicateType,
				filepath.Join(o.Dir, manifest.SubjectName(cfg.Federation, uint64(s.Rounds))), filepath.Join(o.Dir, manifest.SubjectName(cfg.Federation, uint64(s.Rounds))))
		}
	}
	return s, nil
}

// flagText lays out a round's anomaly flags for the table.
func flagText(flags []audit.AnomalyFlagged) string {
	if len(flags) == 0 {
		return "-"
	}
	parts := make([]string, len(flags))
	for i, f := range flags {
		parts[i] = fmt.Sprintf("%s %s %.3g", f.Participant, f.Kind, f.Value)
	}
	return strings.Join(parts, ", ")
}

// waitMetricsAddr waits until c's metrics listener is bound and returns
// its address; "" if ctx ends first or it takes more than ten seconds.
func waitMetricsAddr(ctx context.Context, c *coordinator.Coordinator) string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if a := c.MetricsAddr(); a != "" {
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// chooseHospitals returns the number of hospitals a demo with options o
// (defaults filled in) runs, and when it is not the one asked for, why. An
// explicit o.Hospitals is used as it is; zero means DefaultHospitals if the
// coordinator configuration built for them is valid, else the fewest more
// whose configuration is. Every count is checked with
// coordinator.Config.Validate on Fed.CoordinatorConfig, so whatever that
// configuration is made of takes part.
func chooseHospitals(o Options) (int, string, error) {
	var features []string
	label, classes := mnistLabel, mnist.Classes()
	defaultN := DefaultPyTorchHospitals
	if o.Trainer != TrainerPyTorch {
		var err error
		if features, err = wdbcFeatures(); err != nil {
			return 0, "", err
		}
		label, classes, defaultN = wdbc.Label, wdbc.Classes(), DefaultHospitals
	}
	check := func(n int) error {
		hs, err := HospitalSplit(n)
		if err != nil {
			return err
		}
		f := &Fed{Dir: o.Dir, Features: features, Hospitals: hs, Label: label, Classes: classes}
		c := f.CoordinatorConfig(o)
		if o.Trainer == TrainerPyTorch {
			// The layout comes from the initial model, not written yet:
			// check the rest of the configuration with a stand-in.
			c.InitialModel, c.Model.Tensors = "initial.safetensors", []coordinator.TensorConfig{{Name: "w", Shape: []int{1}}}
		}
		return c.Validate()
	}
	if o.Hospitals != 0 {
		return o.Hospitals, "", check(o.Hospitals)
	}
	first := check(defaultN)
	if first == nil {
		return defaultN, "", nil
	}
	for n := defaultN + 1; n <= MaxHospitals; n++ {
		if check(n) == nil {
			if o.Secure {
				// Secure rounds count buckets differently (⌊n/s⌋, none
				// smaller than s): say what the configuration check said.
				why := strings.TrimPrefix(first.Error(), "invalid coordinator config: ")
				return n, fmt.Sprintf("%d are too few: %s", defaultN, why), nil
			}
			return n, tooFew(o.Aggregation, defaultN), nil
		}
	}
	return 0, "", first
}

// tooFew says in a few words why the aggregation rule c cannot run with n
// hospitals: the first round size it cannot aggregate, and the rule's
// precondition.
func tooFew(c aggregation.Config, n int) string {
	for k := minParticipants(n); k <= n; k++ {
		if err := c.CheckCohort(k); err != nil {
			msg := strings.Replace(err.Error(), aggregation.ErrCohort.Error()+": ", "", 1)
			if !strings.HasPrefix(msg, fmt.Sprintf("%d updates", k)) {
				msg = fmt.Sprintf("%d updates: %s", k, msg)
			}
			return fmt.Sprintf("%d are too few: a round of %s", n, msg)
		}
	}
	return fmt.Sprintf("%d are too few for %s", n, ruleName(c))
}

// minParticipants is the quorum of a demo with n hospitals: a round closes
// without one of them.
func minParticipants(n int) int { return max(1, n-1) }

// Fed is a demo federation laid out in a directory: the CA, the
// coordinator's certificate, and per hospital its key, certificate and data.
type Fed struct {
	Dir      string
	Features []string
	Test     *dataset.Table
	// Hospitals are the federation's participants.
	Hospitals []Hospital
	// Poison names the hospital whose agent (see Agent) sends its updates
	// multiplied by PoisonFactor; empty: none.
	Poison string
	// Label and Classes are the label column and its values; empty means
	// WDBC's.
	Label   string
	Classes []string
	// TrainerCode, when set, is the directory of the PyTorch trainer
	// (SetupMNIST): the hospitals run its train.py through the exec
	// contract, approving TrainerDigest, its digest.
	TrainerCode   string
	TrainerDigest string
	// InitialModel is the coordinator's initial_model; empty: none.
	InitialModel string
	// TestShard, when set, is a directory of test images and labels
	// (.npy) on which Evaluate scores each round's model with Python
	// running TrainerCode's train.py --evaluate (a tensor layout's network
	// is known to its trainer only).
	TestShard string
	Python    string
	// TestCount is the number of test images in TestShard.
	TestCount int
}

// testRows is the size of the demo's test split.
func (f *Fed) testRows() int {
	if f.TestShard != "" {
		return f.TestCount
	}
	return f.Test.Len()
}

// labels returns f's label column and classes.
func (f *Fed) labels() (string, []string) {
	if f.Label == "" {
		return wdbc.Label, wdbc.Classes()
	}
	return f.Label, f.Classes
}

// Setup is SetupHospitals with the DefaultHospitals of HospitalSplit.
func Setup(dir string, seed uint64) (*Fed, error) {
	hs, err := HospitalSplit(DefaultHospitals)
	if err != nil {
		return nil, err
	}
	return SetupHospitals(dir, seed, hs)
}

// SetupHospitals creates the federation's files in dir for hospitals (see
// certs.EnrolLocal) and splits the WDBC rows: a stratified 20 % test split kept by the
// demo, the rest shared among the hospitals by their fractions and preferred
// labels, each writing its share to dir/NAME/data.csv.
func SetupHospitals(dir string, seed uint64, hospitals []Hospital) (*Fed, error) {
	if err := certs.EnrolLocal(dir, Federation, names(hospitals)); err != nil {
		return nil, err
	}
	all, err := readWDBC()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0xde70))
	train, test := all.Split(0.2, rng)
	fractions := make([]float64, len(hospitals))
	preferred := make([]string, len(hospitals))
	for i, h := range hospitals {
		fractions[i], preferred[i] = h.Fraction, h.Preferred
	}
	parts, err := train.Partition(fractions, preferred, labelSkew, rng)
	if err != nil {
		return nil, fmt.Errorf("partition WDBC: %w", err)
	}
	for i, h := range hospitals {
		var buf bytes.Buffer
		if err := parts[i].WriteCSV(&buf, wdbc.Label); err != nil {
			return nil, err
		}
		if err := certs.WriteFileAtomic(filepath.Join(dir, h.Name, "data.csv"), buf.Bytes(), 0o600); err != nil {
			return nil, err
		}
	}
	return &Fed{Dir: dir, Features: all.Features, Test: test, Hospitals: slices.Clone(hospitals)}, nil
}

// readWDBC reads the shipped WDBC data.
func readWDBC() (*dataset.Table, error) {
	all, err := dataset.ReadCSV(bytes.NewReader(wdbc.CSV), dataset.ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		return nil, fmt.Errorf("read WDBC: %w", err)
	}
	return all, nil
}

// wdbcFeatures are the feature columns of the shipped WDBC data.
func wdbcFeatures() ([]string, error) {
	all, err := readWDBC()
	if err != nil {
		return nil, err
	}
	return all.Features, nil
}

// CoordinatorConfig is the demo coordinator's configuration for the
// federation's hospitals and options o (Rounds, Model, Aggregation, Seed,
// Secure and MetricsListen; zero Rounds and Model take their defaults). A round needs all hospitals
// but one.
func (f *Fed) CoordinatorConfig(o Options) coordinator.Config {
	o = o.withDefaults()
	label, classes := f.labels()
	c := coordinator.Config{
		Federation:      Federation,
		Listen:          "127.0.0.1:0",
		DataDir:         filepath.Join(f.Dir, "coordinator", "data"),
		CACert:          certs.Local(f.Dir).CACert(),
		Cert:            certs.Local(f.Dir).CoordinatorCert(),
		Key:             certs.Local(f.Dir).CoordinatorKey(),
		CRL:             certs.Local(f.Dir).CRL(),
		Enrolled:        names(f.Hospitals),
		MinParticipants: minParticipants(len(f.Hospitals)),
		Model: coordinator.ModelConfig{
			Kind: o.Model, Features: f.Features, Label: label, Classes: classes,
		},
		Training: coordinator.TrainingConfig{
			Rounds: o.Rounds, LocalEpochs: 2, LearningRate: 0.1, BatchSize: 16, L2: 1e-3,
		},
		Seed:          o.Seed,
		Aggregation:   o.Aggregation,
		Secure:        o.Secure,
		MetricsListen: o.MetricsListen,
		CohortTimeout: coordinator.Duration(3 * time.Second),
		RoundTimeout:  coordinator.Duration(30 * time.Second),
		StatsTimeout:  coordinator.Duration(5 * time.Second),
	}
	if o.Model == "mlp" {
		c.Model.Hidden = []int{16}
	}
	if o.Trainer == TrainerPyTorch {
		// Every hospital takes part in every round, and python under load
		// takes its time: starting torch, training.
		c.MinParticipants = len(f.Hospitals)
		c.InitialModel = f.InitialModel
		// The federation pins the trainer the hospitals approve: every
		// manifest names it, and an agent with other code refuses.
		c.TrainerDigest = f.TrainerDigest
		// A tensor layout without feature columns: the layout is the
		// initial model's, and there is no statistics phase.
		c.Model = coordinator.ModelConfig{Kind: "tensors", Label: label, Classes: classes}
		c.Training = coordinator.TrainingConfig{Rounds: o.Rounds, LocalEpochs: 1, LearningRate: 0.05, BatchSize: 64, L2: 1e-4}
		c.CohortTimeout = coordinator.Duration(60 * time.Second)
		c.StatsTimeout = coordinator.Duration(2 * time.Minute)
		c.RoundTimeout = coordinator.Duration(5 * time.Minute)
	}
	return c
}

// Agent builds hospital name's agent, dialling addr and trusting only
// manifests signed with keys (the coordinator's, pinned as at enrolment).
// The hospital named by f.Poison gets a Poisoned trainer.
// The agent keeps its last accepted manifest in dir/NAME/accepted.json.
//
// With f.TrainerCode (SetupMNIST) the agent runs python (DefaultPython
// when empty) on the approved train.py through the exec contract.
func (f *Fed) Agent(name, addr string, keys manifest.PublicKeys, log *slog.Logger, seed uint64, python string) (*participant.Agent, error) {
	tlsCfg, err := certs.LocalClientConfig(f.Dir, Federation, name, addr)
	if err != nil {
		return nil, err
	}
	ca, err := certs.LoadCertificate(filepath.Join(f.Dir, "ca", "ca.crt"))
	if err != nil {
		return nil, err
	}
	salt := lineage.SaltFor(ca.Raw)
	var trainer participant.Trainer = &participant.LocalTrainer{DataFile: filepath.Join(f.Dir, name, "data.csv"), Holdout: 0.2, Seed: seed}
	if f.TrainerCode != "" {
		python = cmp.Or(python, DefaultPython)
		trainer = f.execTrainer(name, python, seed)
	}
	if name == f.Poison {
		trainer = &Poisoned{Trainer: trainer, Factor: PoisonFactor}
	}
	return participant.New(participant.Config{
		Coordinator:     addr,
		TLS:             tlsCfg,
		Trainer:         trainer,
		Log:             log.With("participant", name),
		Federation:      Federation,
		CoordinatorKeys: keys,
		StateFile:       filepath.Join(f.Dir, name, "accepted.json"),
		DataSalt:        &salt,
	})
}

// secureNote says, in the header, what the coordinator sees.
func secureNote(c coordinator.Config) string {
	if !c.Secure {
		return ""
	}
	if c.Aggregation.Bucket > 1 {
		return fmt.Sprintf(", secure aggregation per bucket of %d or more (the coordinator sees only bucket sums)", c.Aggregation.Bucket)
	}
	return ", secure aggregation (the coordinator sees only the sum)"
}

// ruleName describes an aggregation configuration in one phrase.
func ruleName(c aggregation.Config) string {
	name := cmp.Or(c.Rule, aggregation.NameFedAvg)
	if c.NormClip > 0 {
		name += fmt.Sprintf(" after norm-clip %g", c.NormClip)
	}
	if c.Bucket > 1 {
		name += fmt.Sprintf(" over buckets of %d", c.Bucket)
	}
	return name
}

// Evaluate scores a round's global model on the demo's test split.
func (f *Fed) Evaluate(res coordinator.RoundResult) (model.Metrics, error) {
	if f.TestShard != "" {
		return f.evaluatePython(res)
	}
	test := f.Test.Subset(allRows(f.Test.Len()))
	if err := test.Standardize(res.Scaling); err != nil {
		return model.Metrics{}, err
	}
	_, classes := f.labels()
	y, err := test.Encode(classes)
	if err != nil {
		return model.Metrics{}, err
	}
	return model.Evaluate(res.Spec, res.Model, test.X, y)
}

func allRows(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
