package coordinator_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/keystore"
)

func TestLoadConfig(t *testing.T) {
	valid := coordinator.Config{
		Federation:      "wdbc-study",
		Listen:          "127.0.0.1:7443",
		DataDir:         "/var/lib/fedguard",
		CACert:          "ca/ca.crt",
		Cert:            "coordinator/coordinator.crt",
		Key:             "coordinator/coordinator.key",
		CRL:             "ca/crl.pem",
		Enrolled:        []string{"hospital-a", "hospital-b", "hospital-c"},
		MinParticipants: 2,
		Model: coordinator.ModelConfig{
			Kind: "mlp", Features: []string{"radius", "texture", "perimeter"}, Label: "diagnosis",
			Classes: []string{"B", "M"}, Hidden: []int{16, 8},
		},
		Training:      coordinator.TrainingConfig{Rounds: 30, LocalEpochs: 2, LearningRate: 0.05, BatchSize: 16, L2: 0.001},
		Aggregation:   aggregation.Config{Rule: "fedavg"},
		CohortTimeout: coordinator.Duration(3 * time.Second),
		RoundTimeout:  coordinator.Duration(150 * time.Second),
		StatsTimeout:  coordinator.Duration(500 * time.Millisecond),
		LongPoll:      coordinator.Duration(20 * time.Second),
		KeepModels:    3,
		Seed:          42,
	}
	minimal := coordinator.Config{
		Federation: "demo", DataDir: "data", CACert: "ca.crt", Cert: "c.crt", Key: "c.key",
		Enrolled: []string{"hospital-a"},
		Model:    coordinator.ModelConfig{Kind: "logreg", Features: []string{"x"}, Label: "y", Classes: []string{"0", "1"}},
	}
	tests := []struct {
		file    string
		want    coordinator.Config
		wantErr []string // substrings of the error; nil means success
	}{
		{"valid.json", valid, nil},
		{"minimal.json", minimal, nil},
		{"unknown_field.json", coordinator.Config{}, []string{"unknown field", "min_participant"}},
		{"unknown_nested_field.json", coordinator.Config{}, []string{"unknown field", "epochs"}},
		// The decoder does not name the field, so the error says what a
		// duration looks like (before, only time's "unknown unit").
		{"bad_duration.json", coordinator.Config{}, []string{`"5 minutes"`, `want a duration such as "30s", "10m" or "2h"`}},
		{"number_duration.json", coordinator.Config{}, []string{"duration must be a string"}},
		{"wrong_type.json", coordinator.Config{}, []string{"enrolled"}},
		{"syntax.json", coordinator.Config{}, []string{"syntax.json"}},
		{"empty.json", coordinator.Config{}, []string{"empty.json"}},
		// A file with content after the configuration object (here a
		// botched edit that left a second, stray fragment) must not be
		// half-read: the trailing setting would be silently ignored.
		{"trailing.json", coordinator.Config{}, []string{"trailing.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "config", tt.file)
			got, err := coordinator.LoadConfig(path)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("LoadConfig(%q) = %+v, nil; want an error", path, got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("LoadConfig(%q) error %q does not mention %q", path, err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig(%q) = %v", path, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadConfig(%q) mismatch (-want +got):\n%s", path, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("LoadConfig(%q).Validate() = %v", path, err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := coordinator.LoadConfig(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadConfig(%q) = %v, want an error wrapping fs.ErrNotExist", path, err)
	}
}

// TestConfigGoldenRoundTrip checks that a fully specified configuration
// marshals back to the same JSON document (durations as Go duration
// strings) and that the marshalled form loads to the same Config.
func TestConfigGoldenRoundTrip(t *testing.T) {
	path := filepath.Join("testdata", "config", "valid.json")
	cfg, err := coordinator.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("json.Marshal(config) = %v", err)
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json.Marshal(LoadConfig(%q)) differs from the file (-file +marshalled):\n%s", path, diff)
	}
	again := filepath.Join(t.TempDir(), "again.json")
	if err := os.WriteFile(again, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2, err := coordinator.LoadConfig(again)
	if err != nil {
		t.Fatalf("LoadConfig(marshalled config) = %v", err)
	}
	if diff := cmp.Diff(cfg, cfg2); diff != "" {
		t.Errorf("config does not survive marshal and load (-first +second):\n%s", diff)
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{`"30s"`, 30 * time.Second, false},
		{`"1h2m3.5s"`, time.Hour + 2*time.Minute + 3500*time.Millisecond, false},
		{`"-5s"`, -5 * time.Second, false},
		{`"0s"`, 0, false},
		{`30`, 0, true},
		{`"30"`, 0, true},
		{`null`, 0, true},
		{`"soon"`, 0, true},
	}
	for _, tt := range tests {
		var d coordinator.Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.wantErr || (err == nil && time.Duration(d) != tt.want) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v, error %v", tt.in, time.Duration(d), err, tt.want, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Errorf("Marshal(%v) = %v", time.Duration(d), err)
			continue
		}
		var back coordinator.Duration
		if err := json.Unmarshal(b, &back); err != nil || back != d {
			t.Errorf("Marshal(%v) = %s, which reads back as %v, %v", time.Duration(d), b, time.Duration(back), err)
		}
	}
}

// validConfig is a configuration Validate accepts, with every file field set.
func validConfig() coordinator.Config {
	return coordinator.Config{
		Federation: "demo",
		DataDir:    "/tmp/fedguard-data",
		CACert:     "ca.crt",
		Cert:       "coordinator.crt",
		Key:        "coordinator.key",
		Enrolled:   []string{"hospital-a", "hospital-b", "hospital-c"},
		Model: coordinator.ModelConfig{
			Kind: "logreg", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*coordinator.Config)
		want   []string // substrings of the error; nil means valid
	}{
		{"valid with defaults", func(*coordinator.Config) {}, nil},
		{"valid mlp without hidden (default width)", func(c *coordinator.Config) { c.Model.Kind = "mlp" }, nil},
		{"valid min equals enrolled", func(c *coordinator.Config) { c.MinParticipants = 3 }, nil},
		{"valid zero timeouts mean defaults", func(c *coordinator.Config) { c.RoundTimeout, c.LongPoll = 0, 0 }, nil},
		// Before, listen was only checked when the coordinator bound it.
		{"listen not an address", func(c *coordinator.Config) { c.Listen = "not-an-address" }, []string{"listen", "not-an-address"}},
		{"listen bad port", func(c *coordinator.Config) { c.Listen = "127.0.0.1:http2x" }, []string{"listen", "not a TCP port"}},
		{"negative limits", func(c *coordinator.Config) { c.Limits.MaxCalls = -1 }, []string{"limits must not be negative"}},
		{"valid spill always", func(c *coordinator.Config) { c.Spill.Mode = coordinator.SpillAlways }, nil},
		{"valid spill never", func(c *coordinator.Config) {
			c.Spill = coordinator.SpillConfig{Mode: coordinator.SpillNever, MemoryBytes: 1}
		}, nil},
		{"spill mode unknown", func(c *coordinator.Config) { c.Spill.Mode = "sometimes" }, []string{`spill.mode "sometimes"`, `"auto", "always" or "never"`}},
		{"spill threshold negative", func(c *coordinator.Config) { c.Spill.MemoryBytes = -1 }, []string{"spill.memory_bytes -1 must not be negative"}},
		{"spill always with krum", func(c *coordinator.Config) {
			c.Spill.Mode = coordinator.SpillAlways
			c.Enrolled = []string{"a", "b", "c", "d", "e"}
			c.MinParticipants = 5
			c.Aggregation = aggregation.Config{Rule: "krum", F: 1}
		}, []string{"spill.mode always", "rule krum aggregates in memory only"}},
		{"spill always with norm-clip", func(c *coordinator.Config) {
			c.Spill.Mode = coordinator.SpillAlways
			c.Aggregation = aggregation.Config{Rule: "fedavg", NormClip: 1}
		}, []string{"spill.mode always", "norm-clip+fedavg aggregates in memory only"}},
		{"spill always in secure rounds", func(c *coordinator.Config) {
			c.Spill.Mode = coordinator.SpillAlways
			c.Secure = true
		}, []string{"spill.mode always: secure rounds never hold plain updates"}},
		{"federation empty", func(c *coordinator.Config) { c.Federation = "" }, []string{"federation"}},
		{"federation bad name", func(c *coordinator.Config) { c.Federation = "My Federation" }, []string{"federation"}},
		{"data_dir missing", func(c *coordinator.Config) { c.DataDir = "" }, []string{"data_dir is required"}},
		{"valid pkcs11", func(c *coordinator.Config) {
			c.PKCS11 = keystore.PKCS11{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", KeyLabel: "k"}
		}, nil},
		{"pkcs11 without key_label", func(c *coordinator.Config) { c.PKCS11 = keystore.PKCS11{Module: "/m.so", TokenLabel: "t"} },
			[]string{"pkcs11:", "key_label"}},
		{"ca_cert missing", func(c *coordinator.Config) { c.CACert = "" }, []string{"ca_cert is required"}},
		{"cert missing", func(c *coordinator.Config) { c.Cert = "" }, []string{"cert is required"}},
		{"key missing", func(c *coordinator.Config) { c.Key = "" }, []string{"key is required"}},
		{"all files missing", func(c *coordinator.Config) { c.CACert, c.Cert, c.Key = "", "", "" },
			[]string{"ca_cert is required", "cert is required", "key is required"}},
		{"no enrolled", func(c *coordinator.Config) { c.Enrolled = nil }, []string{"enrolled: no participants"}},
		{"duplicate enrolled", func(c *coordinator.Config) { c.Enrolled = append(c.Enrolled, "hospital-b") },
			[]string{`"hospital-b" listed twice`}},
		{"bad enrolled name", func(c *coordinator.Config) { c.Enrolled[1] = "Hospital B" }, []string{`enrolled "Hospital B"`}},
		{"min_participants above enrolled", func(c *coordinator.Config) { c.MinParticipants = 4 }, []string{"min_participants 4"}},
		{"min_participants negative", func(c *coordinator.Config) { c.MinParticipants = -1 }, []string{"min_participants -1"}},
		{"bad model kind", func(c *coordinator.Config) { c.Model.Kind = "svm" }, []string{"model:", "svm"}},
		{"no features", func(c *coordinator.Config) { c.Model.Features = nil }, []string{"model:", "features 0"}},
		{"one class", func(c *coordinator.Config) { c.Model.Classes = []string{"B"} }, []string{"model:", "classes 1"}},
		{"mlp zero width", func(c *coordinator.Config) { c.Model.Kind, c.Model.Hidden = "mlp", []int{8, 0} }, []string{"model:", "width 0"}},
		{"logreg with hidden", func(c *coordinator.Config) { c.Model.Hidden = []int{8} }, []string{"model:", "hidden"}},
		{"label missing", func(c *coordinator.Config) { c.Model.Label = "" }, []string{"model.label is required"}},
		{"label among features", func(c *coordinator.Config) { c.Model.Features = []string{"f1", "y"} },
			[]string{`model.features: "y"`, "label"}},
		{"duplicate feature", func(c *coordinator.Config) { c.Model.Features = []string{"f1", "f2", "f1"} },
			[]string{`model.features: "f1"`}},
		{"empty feature", func(c *coordinator.Config) { c.Model.Features = []string{"f1", ""} }, []string{`model.features: ""`}},
		{"duplicate classes", func(c *coordinator.Config) { c.Model.Classes = []string{"B", "M", "B"} }, []string{`model.classes: "B"`}},
		{"empty class", func(c *coordinator.Config) { c.Model.Classes = []string{"B", ""} }, []string{`model.classes: ""`}},
		{"negative learning rate", func(c *coordinator.Config) { c.Training.LearningRate = -0.1 }, []string{"training:", "learning rate"}},
		{"NaN learning rate", func(c *coordinator.Config) { c.Training.LearningRate = math.NaN() }, []string{"training:", "learning rate"}},
		{"negative batch size", func(c *coordinator.Config) { c.Training.BatchSize = -4 }, []string{"training:", "batch size"}},
		{"negative epochs", func(c *coordinator.Config) { c.Training.LocalEpochs = -1 }, []string{"training:", "epochs"}},
		{"negative l2", func(c *coordinator.Config) { c.Training.L2 = -1 }, []string{"training:", "L2"}},
		{"infinite l2", func(c *coordinator.Config) { c.Training.L2 = math.Inf(1) }, []string{"training:", "L2"}},
		// The plan travels as uint32 fields (TrainingPlan.local_epochs,
		// batch_size): a larger value must be refused, not truncated on the
		// wire into something else (1<<32+1 would arrive as 1).
		{"local_epochs beyond the wire's uint32", func(c *coordinator.Config) { c.Training.LocalEpochs = 1<<32 + 1 }, []string{"epochs"}},
		{"batch_size beyond the wire's uint32", func(c *coordinator.Config) { c.Training.BatchSize = 1<<32 + 16 }, []string{"batch"}},
		{"negative rounds", func(c *coordinator.Config) { c.Training.Rounds = -3 }, []string{"training.rounds -3"}},
		{"unknown rule", func(c *coordinator.Config) { c.Aggregation.Rule = "krum-ish" }, []string{"aggregation:", "krum-ish"}},
		{"krum needs more updates than the quorum", func(c *coordinator.Config) {
			c.Aggregation = aggregation.Config{Rule: "krum", F: 1}
			c.MinParticipants = 2
		}, []string{"aggregation:", "round of 2 updates"}},
		{"valid rfa", func(c *coordinator.Config) {
			c.Aggregation = aggregation.Config{Rule: "rfa", Iterations: 8, Nu: 1e-3, Start: "zero", MaxSamples: 1000}
		}, nil},
		{"rfa iterations beyond the bound", func(c *coordinator.Config) {
			c.Aggregation = aggregation.Config{Rule: "rfa", Iterations: 101}
		}, []string{"aggregation:", "rfa iterations 101"}},
		{"valid secure", func(c *coordinator.Config) { c.Secure, c.MinParticipants, c.SecAgg.ThresholdPercent = true, 2, 66 }, nil},
		{"valid secure krum over buckets", func(c *coordinator.Config) {
			c.Enrolled = []string{"h1", "h2", "h3", "h4", "h5", "h6"}
			c.Secure, c.MinParticipants, c.Aggregation = true, 6, aggregation.Config{Rule: "krum", Bucket: 2}
		}, nil},
		{"secure quorum of one", func(c *coordinator.Config) { c.Secure, c.MinParticipants = true, 1 },
			[]string{"secure: min_participants 1", "sum of one is the update"}},
		{"secure krum over too few buckets", func(c *coordinator.Config) {
			c.Secure, c.MinParticipants, c.Aggregation = true, 2, aggregation.Config{Rule: "krum", Bucket: 2}
		}, []string{"secure: a round of 2 participants makes 1 buckets", "krum"}},
		{"secure bit budget exceeded", func(c *coordinator.Config) {
			c.Secure, c.MinParticipants = true, 2
			c.SecAgg.QuantBits, c.SecAgg.WeightBits = 24, 10
		}, []string{"secure: a round of 2 participants", "bit budget exceeded"}},
		{"secure threshold percent out of range", func(c *coordinator.Config) {
			c.Secure, c.MinParticipants, c.SecAgg.ThresholdPercent = true, 2, 150
		}, []string{"threshold_percent 150"}},
		{"secure negative degree", func(c *coordinator.Config) { c.Secure, c.MinParticipants, c.SecAgg.Degree = true, 2, -1 },
			[]string{"secagg: degree"}},
		{"negative cohort_timeout", func(c *coordinator.Config) { c.CohortTimeout = -1 }, []string{"cohort_timeout must not be negative"}},
		{"negative round_timeout", func(c *coordinator.Config) { c.RoundTimeout = coordinator.Duration(-time.Second) }, []string{"round_timeout must not be negative"}},
		{"negative stats_timeout", func(c *coordinator.Config) { c.StatsTimeout = -1 }, []string{"stats_timeout must not be negative"}},
		{"negative long_poll", func(c *coordinator.Config) { c.LongPoll = -1 }, []string{"long_poll must not be negative"}},
		{"negative keep_models", func(c *coordinator.Config) { c.KeepModels = -2 }, []string{"keep_models -2"}},
		{"every problem named", func(c *coordinator.Config) {
			c.Federation, c.DataDir, c.Enrolled, c.Model.Kind, c.Aggregation.Rule, c.LongPoll = "", "", nil, "svm", "krum-ish", -1
		}, []string{"federation", "data_dir", "enrolled: no participants", "model:", "unknown rule", "long_poll"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			validateNames(t, c, tt.want)
		})
	}
}

// validateNames checks that Validate refuses c with an error naming every
// string in want (want nil: that it accepts c), and that New, which
// validates first, refuses c before touching its data directory.
func validateNames(t *testing.T, c coordinator.Config, want []string) {
	t.Helper()
	err := c.Validate()
	if want == nil {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate() = nil, want an error naming %q", want)
	}
	t.Logf("refused: %v", err)
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Validate() = %q, want it to name %q", err, s)
		}
	}
	c.DataDir = filepath.Join(t.TempDir(), "data")
	if c.Validate() == nil {
		if !strings.Contains(err.Error(), "data_dir") {
			t.Fatalf("Validate() = %q, but nil with a fresh data_dir", err)
		}
		return // the only problem was data_dir
	}
	newRefusesUntouched(t, c)
}

// newRefusesUntouched checks that New refuses c, which Validate refuses,
// before it creates c.DataDir.
func newRefusesUntouched(t *testing.T, c coordinator.Config) {
	t.Helper()
	if co, err := coordinator.New(c, coordinator.WithInit()); err == nil {
		co.Close()
		t.Fatalf("New(invalid config) = nil error, want the Validate error")
	}
	if _, err := os.Stat(c.DataDir); err == nil {
		t.Errorf("New(invalid config) created %s", c.DataDir)
	}
}

func TestMemoryBudget(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		enrolled int
		model    coordinator.ModelConfig
		agg      aggregation.Config
		spill    coordinator.SpillConfig
		want     int64
		wantErr  bool
	}{
		{
			// 62 parameters: far under the floor.
			name: "small logreg gets the floor", enrolled: 4,
			model: coordinator.ModelConfig{Kind: "logreg", Features: names("f", 30), Label: "y", Classes: []string{"B", "M"}},
			want:  128 * mib,
		},
		{
			// 1000 -> 10000 -> 10: 10000·1001 + 10·10001 = 10 110 010
			// parameters; (4 enrolled + 2) buffers of 4 bytes each, less
			// half a model (under the 32 MiB allowance for memory outside
			// the heap, which may not take more than half a model).
			name: "large mlp", enrolled: 4, spill: coordinator.SpillConfig{Mode: coordinator.SpillNever},
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{10000}},
			want:  6*4*10_110_010 - 4*10_110_010/2,
		},
		{
			// The same, spilling its updates (the default above 64 MiB of
			// updates): the aggregate, one update, headroom, the 16 MiB
			// column block and 4 anomaly blocks of 64 KiB, under the floor.
			name: "large mlp, spilled", enrolled: 4,
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{10000}},
			want:  128 * mib,
		},
		{
			// 40 enrolled: the spilled budget stays at 3 models and the
			// blocks, not 42 models.
			name: "large mlp, 40 enrolled, spilled", enrolled: 40,
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{20000}},
			want:  3*4*20_220_010 + 16*mib + 40*4*16384 - 32*mib,
		},
		{
			// The same with norm-clip: its zero vector and a clipped copy
			// of each of the 4 updates (11 vectors in all).
			name: "large mlp, norm-clip", enrolled: 4, agg: aggregation.Config{Rule: "fedavg", NormClip: 1},
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{10000}},
			want:  11*4*10_110_010 - 4*10_110_010/2,
		},
		{
			// Buckets of 2 under the median: 2 bucket means.
			name: "large mlp, bucketed median", enrolled: 4, agg: aggregation.Config{Rule: "median", Bucket: 2},
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{10000}},
			want:  8*4*10_110_010 - 4*10_110_010/2,
		},
		{
			// Centered clipping's iterate.
			name: "large mlp, centered-clipping", enrolled: 4, agg: aggregation.Config{Rule: "centered-clipping", Tau: 1},
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 1000), Label: "y", Classes: names("c", 10), Hidden: []int{10000}},
			want:  7*4*10_110_010 - 4*10_110_010/2,
		},
		{
			// 100 -> 16 (default hidden) -> 2: 16·101 + 2·17 = 1650.
			name: "mlp default hidden", enrolled: 2,
			model: coordinator.ModelConfig{Kind: "mlp", Features: names("f", 100), Label: "y", Classes: []string{"a", "b"}},
			want:  128 * mib,
		},
		{
			name: "bad kind", enrolled: 2,
			model:   coordinator.ModelConfig{Kind: "svm", Features: names("f", 3), Label: "y", Classes: []string{"a", "b"}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.Enrolled = names("hospital-", tt.enrolled)
			c.Model = tt.model
			if tt.agg.Rule != "" {
				c.Aggregation = tt.agg
			}
			c.Spill = tt.spill
			got, err := coordinator.MemoryBudget(c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("MemoryBudget() = %d, %v; want error %v", got, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("MemoryBudget() = %d, want %d", got, tt.want)
			}
		})
	}
}

// names returns prefix0, prefix1, …
func names(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

// TestExampleConfigs keeps the shipped example configurations loadable
// and valid: they are what an operator starts from.
func TestExampleConfigs(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "examples", "coordinator*.json"))
	if err != nil || len(paths) < 2 {
		t.Fatalf("example configurations: %v, %v", paths, err)
	}
	for _, p := range paths {
		c, err := coordinator.LoadConfig(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if strings.Contains(p, "secure") && !c.Secure {
			t.Errorf("%s does not enable secure aggregation", p)
		}
	}
}

// TestCheckFilesServerCertificate: CheckFiles (coordinator --check-config)
// refuses a participant's certificate as the server's, which participants
// would refuse at every handshake. Before, it said OK.
func TestCheckFilesServerCertificate(t *testing.T) {
	f := newFederation(t, abc)
	if err := coordinator.CheckFiles(f.cfg); err != nil {
		t.Fatalf("CheckFiles(valid) = %v", err)
	}
	cfg := f.cfg
	cfg.Cert = filepath.Join(f.dir, "hospital-a", "hospital-a.crt")
	cfg.Key = filepath.Join(f.dir, "hospital-a", "hospital-a.key")
	// The error names what the file is and which one belongs there, not
	// only x509's "incompatible key usage".
	err := coordinator.CheckFiles(cfg)
	if err == nil || !strings.Contains(err.Error(), "server certificate") ||
		!strings.Contains(err.Error(), "participant/hospital-a") || !strings.Contains(err.Error(), "fedguard ca issue") {
		t.Errorf("CheckFiles(participant certificate as the server's) = %v, want a server certificate error naming the participant and fedguard ca issue", err)
	}
	if co, err := coordinator.New(cfg); err == nil {
		defer co.Close()
		lis, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		if err := co.Serve(t.Context(), lis); err == nil || !strings.Contains(err.Error(), "server certificate") {
			t.Errorf("Serve(participant certificate as the server's) = %v, want a server certificate error", err)
		}
	}
}

// TestSecureDropoutSlack: a secure configuration in which one hospital
// dropping out makes a round impossible, although the others would be a
// quorum, is refused when a lower threshold_percent would give the slack,
// and warned about when only the layout would (buckets of two). Before,
// three hospitals at the default 67 % passed --check-config and their
// rounds failed whenever one of them dropped out: the threshold of a
// bucket of three was three.
func TestSecureDropoutSlack(t *testing.T) {
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("hospital-%c", 'a'+i)
		}
		return out
	}
	tests := []struct {
		name                 string
		enrolled, min, pct   int
		degree, bucket       int
		rule                 string
		wantErr, wantWarning []string // substrings; nil means none
	}{
		{name: "three at the default 67 %", enrolled: 3, min: 2,
			wantErr: []string{"round of 3 participants", "threshold of bucket 1 is 3", "threshold_percent 67", "at most 66"}},
		{name: "three at 66 %", enrolled: 3, min: 2, pct: 66},
		{name: "three, all needed anyway", enrolled: 3, min: 3},
		{name: "four at the default", enrolled: 4, min: 3},
		{name: "four at 100 %", enrolled: 4, min: 2, pct: 100,
			wantErr: []string{"round of 4 participants", "threshold of bucket 1 is 4", "at most 75"}},
		{name: "five at 81 %", enrolled: 5, min: 3, pct: 81,
			wantErr: []string{"round of 5 participants", "is 5, all of a neighbourhood of 5", "at most 80"}},
		{name: "five at 80 %", enrolled: 5, min: 3, pct: 80},
		{name: "buckets of 3 at the default, quorum of all but one", enrolled: 6, min: 5, bucket: 3, rule: "median",
			wantErr: []string{"round of 6 participants", "neighbourhood of 3", "at most 66"}},
		{name: "buckets of 3 at 66 %", enrolled: 6, min: 5, bucket: 3, rule: "median", pct: 66},
		{name: "buckets of 3, the other bucket is a quorum", enrolled: 6, min: 3, bucket: 3, rule: "median"},
		{name: "buckets of 2, quorum of all but one (the demo's)", enrolled: 7, min: 6, bucket: 2, rule: "krum",
			wantWarning: []string{"round of 7 participants", "neighbourhood of 2", "aggregation.bucket 3 or more"}},
		{name: "buckets of 2, all needed anyway (examples/coordinator-secure.json)", enrolled: 6, min: 6, bucket: 2, rule: "krum"},
		{name: "sparse graph without slack", enrolled: 8, min: 6, degree: 2, pct: 100,
			wantErr: []string{"neighbourhood of 3", "at most 66"}},
		{name: "smaller cohorts are not checked", enrolled: 4, min: 2},
		{name: "sparse graph with slack", enrolled: 8, min: 6, degree: 4, pct: 67},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.Enrolled, c.MinParticipants, c.Secure = names(tt.enrolled), tt.min, true
			c.SecAgg.ThresholdPercent, c.SecAgg.Degree = tt.pct, tt.degree
			c.Aggregation = aggregation.Config{Rule: tt.rule, Bucket: tt.bucket}
			err := c.Validate()
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want an error containing %q", err, w)
				}
			}
			warnings := strings.Join(c.Warnings(), "\n")
			if tt.wantWarning == nil && warnings != "" {
				t.Errorf("Warnings() = %q, want none", warnings)
			}
			for _, w := range tt.wantWarning {
				if !strings.Contains(warnings, w) {
					t.Errorf("Warnings() = %q, want one containing %q", warnings, w)
				}
			}
		})
	}
}
