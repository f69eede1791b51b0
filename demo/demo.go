// Package demo runs a whole federation on one machine: a federation CA, a
// coordinator and four hospitals with unequal, label-skewed shares of the
// WDBC breast-cancer data, all over real mutual-TLS gRPC on loopback.
//
// It is what `fedguard demo` runs, and the integration tests use it as the
// reference federation. The global model is evaluated after every round on
// rows that no hospital holds (the demo's held-out test split); in a real
// federation nobody holds such rows, and the participants' own holdout
// evaluations (also shown) are what the operator sees.
package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
)

// Federation is the demo federation's name, as in its certificates.
const Federation = "demo"

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
	// Seed fixes the data split and the initial model.
	Seed uint64
	// JSON prints one JSON object per round instead of a table.
	JSON bool
	// Log receives the federation's structured logs (default: discarded
	// below warnings).
	Log *slog.Logger
}

// Hospitals are the demo's participants and their shares of the training
// rows, each leaning towards one diagnosis.
var Hospitals = []struct {
	Name      string
	Fraction  float64
	Preferred string
}{
	{"hospital-a", 0.40, "B"},
	{"hospital-b", 0.30, "M"},
	{"hospital-c", 0.20, "B"},
	{"hospital-d", 0.10, "M"},
}

// tableFormat lays out one row of the per-round table.
const tableFormat = "%5s  %12s  %8s  %7s  %23s  %7s\n"

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
	// starting model, weighted by their holdout sizes.
	HoldoutAccuracy float64 `json:"holdout_accuracy"`
	Seconds         float64 `json:"seconds"`
	ModelSHA256     string  `json:"model_sha256"`
}

// Summary is the outcome of a demo run.
type Summary struct {
	Rounds        int     `json:"rounds"`
	FinalAccuracy float64 `json:"final_accuracy"`
	FinalLoss     float64 `json:"final_loss"`
	TestRows      int     `json:"test_rows"`
	Seconds       float64 `json:"seconds"`
	Dir           string  `json:"dir,omitempty"`
}

// Run sets up the federation, trains, prints a row per round to out and
// returns the summary.
func Run(ctx context.Context, o Options, out io.Writer) (Summary, error) {
	start := time.Now()
	if o.Rounds == 0 {
		o.Rounds = 20
	}
	if o.Model == "" {
		o.Model = "logreg"
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

	fed, err := Setup(dir, o.Seed)
	if err != nil {
		return Summary{}, err
	}
	cfg := fed.CoordinatorConfig(o.Rounds, o.Model, o.Aggregation)
	cfg.Seed = o.Seed
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}

	var (
		mu   sync.Mutex
		rows []Row
		werr error
	)
	if !o.JSON {
		fmt.Fprintf(out, "fedguard demo: %d hospitals, %s, %d rounds, rule %s, files in %s\n\n",
			len(Hospitals), o.Model, o.Rounds, ruleName(cfg.Aggregation), dir)
		fmt.Fprintf(out, tableFormat, "round", "participants", "accuracy", "loss", "hospitals' holdout acc.", "seconds")
	}
	observe := func(res coordinator.RoundResult) {
		m, err := fed.Evaluate(res)
		row := Row{
			Round: res.Record.Round, Participants: len(res.Record.Participants), Dropped: res.Record.Dropped,
			Accuracy: m.Accuracy, Loss: m.Loss, HoldoutAccuracy: res.Record.HoldoutAccuracy,
			Seconds: res.Duration.Seconds(), ModelSHA256: res.Record.ModelSHA256,
		}
		for _, p := range res.Record.Participants {
			row.Names = append(row.Names, p.Name)
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
		fmt.Fprintf(out, tableFormat, fmt.Sprint(row.Round), fmt.Sprint(row.Participants), fmt.Sprintf("%.4f", row.Accuracy),
			fmt.Sprintf("%.4f", row.Loss), fmt.Sprintf("%.4f", row.HoldoutAccuracy), fmt.Sprintf("%.3f", row.Seconds))
	}
	coord, err := coordinator.New(cfg, coordinator.WithLogger(o.Log), coordinator.WithObserver(observe))
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
	errs := make(chan error, len(Hospitals)+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := coord.Serve(ctx, lis); err != nil {
			errs <- fmt.Errorf("coordinator: %w", err)
			cancel()
		}
	}()
	for _, h := range Hospitals {
		agent, err := fed.Agent(h.Name, lis.Addr().String(), coord.PublicKeys(), o.Log, o.Seed)
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
	s := Summary{Rounds: len(rows), FinalAccuracy: last.Accuracy, FinalLoss: last.Loss, TestRows: fed.Test.Len(), Seconds: time.Since(start).Seconds()}
	if o.Dir != "" {
		s.Dir = o.Dir
	}
	if o.JSON {
		b, _ := json.Marshal(map[string]any{"summary": s})
		fmt.Fprintln(out, string(b))
	} else {
		fmt.Fprintf(out, "\nfinal: accuracy %.4f, loss %.4f on %d held-out rows after %d rounds (%.1f s)\n",
			s.FinalAccuracy, s.FinalLoss, s.TestRows, s.Rounds, s.Seconds)
		if o.Dir != "" {
			data := cfg.DataDir
			fmt.Fprintf(out, "\nevery round is signed and audited; to check the record offline:\n"+
				"  fedguard audit export --db %s --out audit.jsonl\n"+
				"  fedguard audit verify --key %s audit.jsonl\n"+
				"  fedguard audit report --db %s --key %s\n"+
				"  fedguard audit model --data-dir %s --key %s --out %s\n",
				filepath.Join(data, coordinator.AuditFile), filepath.Join(data, manifest.PublicFile),
				filepath.Join(data, coordinator.AuditFile), filepath.Join(data, manifest.PublicFile),
				data, filepath.Join(data, manifest.PublicFile), o.Dir)
		}
	}
	return s, nil
}

// Fed is a demo federation laid out in a directory: the CA, the
// coordinator's certificate, and per hospital its key, certificate and data.
type Fed struct {
	Dir      string
	Features []string
	Test     *dataset.Table
}

// Setup creates the federation's files in dir (see Enrol) and splits the
// WDBC rows: a stratified 20 % test split kept by the demo, the rest shared
// among the hospitals, each writing its share to dir/NAME/data.csv.
func Setup(dir string, seed uint64) (*Fed, error) {
	names := make([]string, len(Hospitals))
	for i, h := range Hospitals {
		names[i] = h.Name
	}
	if err := Enrol(dir, Federation, names); err != nil {
		return nil, err
	}
	all, err := dataset.ReadCSV(bytes.NewReader(wdbc.CSV), dataset.ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		return nil, fmt.Errorf("read WDBC: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, 0xde70))
	train, test := all.Split(0.2, rng)
	fractions := make([]float64, len(Hospitals))
	preferred := make([]string, len(Hospitals))
	for i, h := range Hospitals {
		fractions[i], preferred[i] = h.Fraction, h.Preferred
	}
	parts, err := train.Partition(fractions, preferred, labelSkew, rng)
	if err != nil {
		return nil, fmt.Errorf("partition WDBC: %w", err)
	}
	for i, h := range Hospitals {
		var buf bytes.Buffer
		if err := parts[i].WriteCSV(&buf, wdbc.Label); err != nil {
			return nil, err
		}
		if err := certs.WriteFileAtomic(filepath.Join(dir, h.Name, "data.csv"), buf.Bytes(), 0o600); err != nil {
			return nil, err
		}
	}
	return &Fed{Dir: dir, Features: all.Features, Test: test}, nil
}

// Enrol lays out a federation's certificates in dir the way an operator and
// its hospitals would make them, all on one machine: the CA in dir/ca, the
// coordinator's certificate for 127.0.0.1 and localhost in dir/coordinator,
// and for each name a key made "at the hospital" (dir/NAME/NAME.key), its
// CSR, and the certificate the CA signed from it (dir/NAME/NAME.crt).
func Enrol(dir, federation string, names []string) error {
	ca, err := certs.Init(filepath.Join(dir, "ca"), federation, certs.DefaultCAValidity)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, certs.DefaultCertValidity)
	if err != nil {
		return err
	}
	cdir := filepath.Join(dir, "coordinator")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(filepath.Join(cdir, "coordinator.crt"), certPEM, 0o644); err != nil {
		return err
	}
	if err := certs.WritePrivateKey(filepath.Join(cdir, "coordinator.key"), keyPEM); err != nil {
		return err
	}
	for _, name := range names {
		hdir := filepath.Join(dir, name)
		if err := os.MkdirAll(hdir, 0o700); err != nil {
			return err
		}
		key, csr, err := certs.NewParticipantRequest(federation, name)
		if err != nil {
			return err
		}
		if err := certs.WritePrivateKey(filepath.Join(hdir, name+".key"), key); err != nil {
			return err
		}
		if err := certs.WriteFileAtomic(filepath.Join(hdir, name+".csr"), csr, 0o644); err != nil {
			return err
		}
		crt, err := ca.Sign(csr, certs.DefaultCertValidity)
		if err != nil {
			return fmt.Errorf("sign %s: %w", name, err)
		}
		if err := certs.WriteFileAtomic(filepath.Join(hdir, name+".crt"), crt, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ClientTLS is the TLS configuration of participant name of an Enrol'ed
// federation in dir, dialling addr.
func ClientTLS(dir, federation, name, addr string) (*tls.Config, error) {
	ca, err := certs.LoadCertificate(filepath.Join(dir, "ca", "ca.crt"))
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("coordinator address %q: %w", addr, err)
	}
	return certs.ClientConfig(certs.ClientOptions{
		CA: ca, CertFile: filepath.Join(dir, name, name+".crt"), KeyFile: filepath.Join(dir, name, name+".key"),
		Federation: federation, ServerName: host,
	})
}

// CoordinatorConfig is the demo coordinator's configuration.
func (f *Fed) CoordinatorConfig(rounds int, kind string, agg aggregation.Config) coordinator.Config {
	names := make([]string, len(Hospitals))
	for i, h := range Hospitals {
		names[i] = h.Name
	}
	c := coordinator.Config{
		Federation:      Federation,
		Listen:          "127.0.0.1:0",
		DataDir:         filepath.Join(f.Dir, "coordinator", "data"),
		CACert:          filepath.Join(f.Dir, "ca", "ca.crt"),
		Cert:            filepath.Join(f.Dir, "coordinator", "coordinator.crt"),
		Key:             filepath.Join(f.Dir, "coordinator", "coordinator.key"),
		CRL:             filepath.Join(f.Dir, "ca", "crl.pem"),
		Enrolled:        names,
		MinParticipants: len(Hospitals) - 1,
		Model: coordinator.ModelConfig{
			Kind: kind, Features: f.Features, Label: wdbc.Label, Classes: wdbc.Classes(),
		},
		Training: coordinator.TrainingConfig{
			Rounds: rounds, LocalEpochs: 2, LearningRate: 0.1, BatchSize: 16, L2: 1e-3,
		},
		Aggregation:   agg,
		CohortTimeout: coordinator.Duration(3 * time.Second),
		RoundTimeout:  coordinator.Duration(30 * time.Second),
		StatsTimeout:  coordinator.Duration(5 * time.Second),
	}
	if kind == "mlp" {
		c.Model.Hidden = []int{16}
	}
	return c
}

// Agent builds hospital name's agent, dialling addr and trusting only
// manifests signed with keys (the coordinator's, pinned as at enrolment).
// The agent keeps its last accepted manifest in dir/NAME/accepted.json.
func (f *Fed) Agent(name, addr string, keys manifest.PublicKeys, log *slog.Logger, seed uint64) (*participant.Agent, error) {
	tlsCfg, err := ClientTLS(f.Dir, Federation, name, addr)
	if err != nil {
		return nil, err
	}
	return participant.New(participant.Config{
		Coordinator:     addr,
		TLS:             tlsCfg,
		Trainer:         &participant.LocalTrainer{DataFile: filepath.Join(f.Dir, name, "data.csv"), Holdout: 0.2, Seed: seed},
		Log:             log.With("participant", name),
		Federation:      Federation,
		CoordinatorKeys: keys,
		StateFile:       filepath.Join(f.Dir, name, "accepted.json"),
	})
}

// ruleName describes an aggregation configuration in one phrase.
func ruleName(c aggregation.Config) string {
	name := c.Rule
	if name == "" {
		name = aggregation.NameFedAvg
	}
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
	test := f.Test.Subset(allRows(f.Test.Len()))
	if err := test.Standardize(res.Scaling); err != nil {
		return model.Metrics{}, err
	}
	y, err := test.Encode(wdbc.Classes())
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
