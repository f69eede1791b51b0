package coordinator

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/metricsserver"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
	"github.com/fedguard/fedguard/secureround"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultListen is where the coordinator listens when Listen is empty.
	DefaultListen = "127.0.0.1:7443"
	// DefaultRounds is the number of rounds to run.
	DefaultRounds = 20
	// DefaultCohortTimeout is how long an open cohort waits for more than
	// the minimum number of ready participants before it starts anyway.
	DefaultCohortTimeout = 10 * time.Second
	// DefaultRoundTimeout bounds download, local training and upload.
	DefaultRoundTimeout = 5 * time.Minute
	// DefaultStatsTimeout is how long the coordinator waits for feature
	// statistics from more than the minimum number of participants.
	DefaultStatsTimeout = 30 * time.Second
	// DefaultLongPoll is how long one WaitRound call may block.
	DefaultLongPoll = 30 * time.Second
	// DefaultKeepModels is how many past global models stay in the database.
	DefaultKeepModels = 5
	// MaxSamples bounds a self-reported sample count.
	MaxSamples = 1 << 40
)

// Duration is a time.Duration written as "30s" in configuration files.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a duration such as \"30s\", \"10m\" or \"2h\" (units ns, us, ms, s, m, h): %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ModelConfig describes the model the federation trains.
type ModelConfig struct {
	// Kind is "logreg" or "mlp" (the built-in models), or "tensors": any
	// model given as a list of named float32 tensors (a CNN, a
	// transformer), trained by the hospitals' own trainers.
	Kind string `json:"kind"`
	// Features are the feature columns every hospital must have, in order.
	Features []string `json:"features"`
	// Label is the label column.
	Label string `json:"label"`
	// Classes are the label values; index i is model output i.
	Classes []string `json:"classes"`
	// Hidden are the MLP's hidden layer widths.
	Hidden []int `json:"hidden,omitempty"`
	// LayoutSHA256 is the digest (safetensors.Layout.Digest, hex) of the
	// model's tensor layout (safetensors.SpecLayout): the names, dtypes
	// and shapes a hospital's trainer reads and writes. With
	// Config.InitialModel the coordinator fills it in; it is part of
	// every round manifest's model_spec, so a hospital's agent checks
	// the layout it exchanges with its trainer against the signed one.
	// Set by hand, it must be the digest of the model's layout.
	LayoutSHA256 string `json:"layout_sha256,omitempty"`
	// Tensors is the tensor layout of a "tensors" model, in
	// parameter-vector order. Left empty, it is taken from
	// Config.InitialModel's header (the file's order) each time the
	// configuration is loaded; given, the file must have exactly these
	// tensors. It is part of every round manifest's model_spec. Empty for
	// the built-in kinds, whose layout the kind implies.
	Tensors []TensorConfig `json:"tensors,omitempty"`
}

// TensorConfig is one tensor of ModelConfig.Tensors.
type TensorConfig struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// TrainingConfig is what participants do locally each round.
type TrainingConfig struct {
	Rounds       int     `json:"rounds"`
	LocalEpochs  int     `json:"local_epochs"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    int     `json:"batch_size"`
	L2           float64 `json:"l2"`
}

// Config is the coordinator's configuration file (JSON).
type Config struct {
	// Federation is the federation's name, as in every certificate.
	Federation string `json:"federation"`
	// Listen is the TCP address for participants.
	Listen string `json:"listen"`
	// DataDir holds the coordinator's database (state.db).
	DataDir string `json:"data_dir"`
	// CACert, Cert and Key are PEM files: the federation CA certificate
	// and the coordinator's own server certificate and key.
	CACert string `json:"ca_cert"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
	// CRL is the federation CA's revocation list (crl.pem); the file is
	// reloaded whenever it changes. Empty means no revocation list.
	CRL string `json:"crl"`
	// Enrolled are the participant names allowed to take part.
	Enrolled []string `json:"enrolled"`
	// MinParticipants is the quorum: the fewest ready participants a round
	// opens with and the fewest updates it closes with.
	MinParticipants int            `json:"min_participants"`
	Model           ModelConfig    `json:"model"`
	Training        TrainingConfig `json:"training"`
	// Aggregation is the aggregation rule, its parameters and pre-steps
	// (see package aggregation); the default is fedavg.
	Aggregation   aggregation.Config `json:"aggregation"`
	CohortTimeout Duration           `json:"cohort_timeout"`
	RoundTimeout  Duration           `json:"round_timeout"`
	StatsTimeout  Duration           `json:"stats_timeout"`
	LongPoll      Duration           `json:"long_poll"`
	KeepModels    int                `json:"keep_models"`
	// Secure runs every round through secure aggregation (SecAgg+):
	// the coordinator learns only sums. With aggregation.bucket s ≥ 2 the
	// cohort is split into buckets of s or more, one secure sum each, and
	// the rule runs over the bucket means; aggregation.norm_clip is then
	// applied by each participant to its own update.
	Secure bool `json:"secure,omitempty"`
	// SecAgg tunes secure aggregation; zero values take the defaults.
	SecAgg SecAggConfig `json:"secagg,omitzero"`
	// DPConfig is federation-level differential privacy: dp_mechanism,
	// dp_epsilon, dp_delta, dp_clip_norm (see dp.go).
	DPConfig
	// Seed makes the initial model and the per-round seeds reproducible.
	Seed uint64 `json:"seed"`
	// InitialModel is a safetensors file (a hospital-supplied or
	// pre-trained model) that the federation starts from instead of a
	// random model. It is read when a new federation is made (--init)
	// and refused unless its tensors are exactly the model's layout
	// (names and shapes of safetensors.SpecLayout; F32, or F16, BF16 and
	// F64 converted as package safetensors says) with finite values.
	// Setting it puts the layout's digest into Model.LayoutSHA256, and so
	// into every manifest: keep it in the configuration afterwards.
	InitialModel string `json:"initial_model,omitempty"`
	// TrainerDigest pins the code every hospital trains with: "sha256:"
	// and 64 lowercase hex digits, a script's SHA-256 or a directory's
	// digest as `fedguard participant run --approve-trainer` takes it
	// (docs/trainer.md). It goes into every round manifest signed from
	// then on (trainer_digest), and an agent refuses to train a model
	// whose manifest pins another digest than its trainer's. Empty pins
	// nothing.
	TrainerDigest string `json:"trainer_digest,omitempty"`
	// Reflection registers the gRPC server reflection service (for grpcurl
	// and similar tools; callers still need an enrolled certificate).
	Reflection bool `json:"reflection,omitempty"`
	// MetricsListen is the TCP address (host:port) of the HTTP listener
	// that serves Prometheus metrics at /metrics, a liveness check at
	// /healthz and the operators' read-only status page at /status (and
	// /status.json); empty (the default) serves none. It carries no TLS
	// and no authentication, and the status page names participants:
	// bind it to loopback or a monitoring network, such as
	// "127.0.0.1:9464".
	MetricsListen string `json:"metrics_listen,omitempty"`
	// Anomaly tunes the anomaly flags raised on plain rounds' updates.
	Anomaly AnomalyConfig `json:"anomaly,omitzero"`
	// MinFreeBytes is the free space on the data directory's file system
	// below which the coordinator pauses, refusing calls with
	// ResourceExhausted until space is freed (default
	// DefaultMinFreeBytes, 256 MiB; see disk.go).
	MinFreeBytes uint64 `json:"min_free_bytes,omitempty"`
	// Spill says when a plain round keeps its accepted updates in a spill
	// file in the data directory instead of in memory (see spill.go and
	// docs/capacity.md); zero values take the defaults.
	Spill SpillConfig `json:"spill,omitzero"`
	// Limits bound the connections, calls and update streams of one
	// participant.
	Limits LimitsConfig `json:"limits,omitzero"`
	// PKCS11, if set, names the PKCS #11 token and key label of the
	// Ed25519 manifest- and checkpoint-signing key; the ML-DSA-65 half
	// stays in DATA_DIR/signing-mldsa.key (docs/keys.md). The PIN comes
	// from its pin_file or $FEDGUARD_PKCS11_PIN. Unset, both keys are
	// files in the data directory.
	PKCS11 keystore.PKCS11 `json:"pkcs11,omitzero"`
	// CentralDP, if set, adds central differential privacy to a plain
	// federation: the coordinator clips every update and adds Gaussian
	// noise to the aggregate, and accounts for it (see CentralDPConfig).
	CentralDP *CentralDPConfig `json:"central_dp,omitempty"`
}

// SecAggConfig tunes secure aggregation (see package secureround).
type SecAggConfig struct {
	// ThresholdPercent is the share of a bucket (or of a neighbourhood)
	// that must stay until the end of a session: 67 by default, never
	// less than half plus one.
	ThresholdPercent int `json:"threshold_percent,omitempty"`
	// Degree is the neighbour graph's degree: 0 (default) for the complete
	// graph, k for SecAgg+'s random k-regular graph in large buckets.
	Degree int `json:"degree,omitempty"`
	// Clip bounds every coordinate of an update before it is quantized
	// (default 1).
	Clip float64 `json:"clip,omitempty"`
	// QuantBits are the bits of one quantized coordinate (default: what
	// the 32-bit ring leaves after the weight and the largest bucket).
	QuantBits int `json:"quant_bits,omitempty"`
	// WeightBits bound an update's weight to 2^weight_bits (default 10).
	WeightBits int `json:"weight_bits,omitempty"`
	// WeightUnit: an update weighs ⌈samples/weight_unit⌉ (default 1).
	WeightUnit uint64 `json:"weight_unit,omitempty"`
	// PhaseTimeout bounds each phase of a session but the masked input,
	// which has the round's deadline (default 30s).
	PhaseTimeout Duration `json:"phase_timeout,omitempty"`
}

// MaxConfigBytes bounds a configuration file.
const MaxConfigBytes = 16 << 20

// LoadConfig reads a JSON configuration file; unknown fields are errors, so
// a misspelt setting is never silently ignored.
func LoadConfig(path string) (Config, error) {
	b, err := strictjson.ReadFile(path, MaxConfigBytes)
	if err != nil {
		return Config{}, fmt.Errorf("read coordinator config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("parse coordinator config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes one JSON configuration object; unknown fields and
// anything after the object are errors.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := strictjson.Unmarshal(b, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// withDefaults fills zero values with the documented defaults.
func (c Config) withDefaults() Config {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.Training.Rounds = cmp.Or(c.Training.Rounds, DefaultRounds)
	c.Training.LocalEpochs = cmp.Or(c.Training.LocalEpochs, 1)
	c.Training.LearningRate = cmp.Or(c.Training.LearningRate, 0.1)
	c.Training.BatchSize = cmp.Or(c.Training.BatchSize, 32)
	if c.MinParticipants == 0 {
		c.MinParticipants = max(1, (len(c.Enrolled)+1)/2)
	}
	if c.Model.Kind == "mlp" && len(c.Model.Hidden) == 0 {
		c.Model.Hidden = []int{16}
	}
	c.Aggregation.Rule = cmp.Or(c.Aggregation.Rule, aggregation.NameFedAvg)
	if c.CohortTimeout == 0 {
		c.CohortTimeout = Duration(DefaultCohortTimeout)
	}
	if c.RoundTimeout == 0 {
		c.RoundTimeout = Duration(DefaultRoundTimeout)
	}
	if c.StatsTimeout == 0 {
		c.StatsTimeout = Duration(DefaultStatsTimeout)
	}
	if c.LongPoll == 0 {
		c.LongPoll = Duration(DefaultLongPoll)
	}
	c.Limits = c.Limits.withDefaults()
	c.KeepModels = cmp.Or(c.KeepModels, DefaultKeepModels)
	c.MinFreeBytes = cmp.Or(c.MinFreeBytes, DefaultMinFreeBytes)
	if c.Model.Kind == "tensors" && len(c.Model.Tensors) == 0 && c.InitialModel != "" {
		if l, err := initialLayout(c.InitialModel); err == nil { // else Validate reports it
			c.Model.Tensors = make([]TensorConfig, len(l))
			for i, t := range l {
				c.Model.Tensors[i] = TensorConfig{Name: t.Name, Shape: t.Shape}
			}
		}
	}
	if c.InitialModel != "" && c.Model.LayoutSHA256 == "" {
		if d, err := c.layoutDigest(); err == nil { // else Validate reports the spec
			c.Model.LayoutSHA256 = d
		}
	}
	if c.Secure {
		a := &c.SecAgg
		a.ThresholdPercent = cmp.Or(a.ThresholdPercent, secureround.DefaultThresholdPercent)
		a.Clip = cmp.Or(a.Clip, 1)
		a.WeightBits = cmp.Or(a.WeightBits, secagg.DefaultWeightBits)
		a.WeightUnit = cmp.Or(a.WeightUnit, 1)
		if a.PhaseTimeout == 0 {
			a.PhaseTimeout = Duration(secureround.DefaultPhaseTimeout)
		}
		if a.QuantBits == 0 {
			largest := secureround.LargestBucket(len(c.Enrolled), c.Aggregation.Bucket)
			a.QuantBits = max(2, secagg.RingBits-bits.Len(uint(max(largest, 1)-1))-a.WeightBits)
		}
	}
	return c
}

// securePlan is the layout of a secure round over cohort; dim and start
// are filled in by the caller for a real round.
func (c Config) securePlan(cohort []string) secureround.Plan {
	bucket := c.Aggregation.Bucket
	if bucket <= 1 {
		bucket = 0
	}
	return secureround.Plan{
		Federation:       c.Federation,
		Cohort:           cohort,
		BucketSize:       bucket,
		ThresholdPercent: c.SecAgg.ThresholdPercent,
		Degree:           c.SecAgg.Degree,
		Params:           secagg.Params{Clip: c.SecAgg.Clip, QuantBits: uint(max(c.SecAgg.QuantBits, 0)), WeightBits: uint(max(c.SecAgg.WeightBits, 0))},
		WeightUnit:       c.SecAgg.WeightUnit,
		NormClip:         c.Aggregation.NormClip,
		PhaseTimeout:     time.Duration(c.SecAgg.PhaseTimeout),
		Dim:              1,
	}
}

// secureRule is the rule over bucket means: the configured one without
// its pre-steps, which the secure round replaces (participants clip their
// own updates; the buckets are the secure sessions).
func (c Config) secureRule() aggregation.Config {
	a := c.Aggregation
	a.Bucket, a.NormClip = 0, 0
	return a
}

// checkSecure checks that every cohort a round may have, from
// min_participants to all enrolled, can be laid out in buckets whose
// encoding fits the ring, and that the rule can aggregate the buckets.
func (c Config) checkSecure(add func(string, ...any)) {
	a := c.SecAgg
	if a.Degree < 0 || a.QuantBits < 0 || a.WeightBits < 0 || a.PhaseTimeout < 0 {
		add("secagg: degree, quant_bits, weight_bits and phase_timeout must not be negative")
		return
	}
	if c.MinParticipants < 2 {
		add("secure: min_participants %d must be at least 2 (a secure sum of one is the update)", c.MinParticipants)
		return
	}
	rule := c.secureRule()
	for n := c.MinParticipants; n <= len(c.Enrolled); n++ {
		cohort := make([]string, n)
		for i := range cohort {
			cohort[i] = fmt.Sprintf("p%06d", i)
		}
		plan := c.securePlan(cohort)
		if err := plan.Check(); err != nil {
			add("secure: a round of %d participants: %w", n, err)
			return
		}
		k := len(plan.Buckets())
		if err := rule.CheckCohort(k); err != nil {
			add("secure: a round of %d participants makes %d buckets, which %s cannot aggregate: %w", n, k, rule.Rule, err)
			return
		}
	}
	if ws := c.dropoutWedges(); len(ws) > 0 && ws.fixable() {
		w := ws[0]
		add("secure: in a round of %d participants the threshold of bucket %d is %d, all of a neighbourhood of %d (secagg.threshold_percent %d), "+
			"so one dropout fails the round although the other %d would be a quorum: set secagg.threshold_percent to at most %d",
			w.n, w.bucket, w.threshold, w.hood, c.SecAgg.ThresholdPercent, w.n-1, ws.maxPercent())
	}
}

// wedge is a round that one dropout makes impossible (see dropoutWedges).
type wedge struct {
	n, bucket       int // the cohort size, the 1-based bucket
	hood, threshold int // the bucket's neighbourhood and threshold
}

type wedges []wedge

// fixable reports whether a lower threshold_percent removes every wedge:
// each is a neighbourhood of three or more. A bucket of two has no
// threshold with slack (it must be more than half of two).
func (ws wedges) fixable() bool {
	for _, w := range ws {
		if w.hood <= 2 {
			return false
		}
	}
	return true
}

// maxPercent is the largest threshold_percent whose threshold leaves
// every neighbourhood of ws one dropout of slack: ⌈hood·p/100⌉ ≤ hood−1.
func (ws wedges) maxPercent() int {
	p := 100
	for _, w := range ws {
		p = min(p, 100*(w.hood-1)/w.hood)
	}
	return p
}

// dropoutWedges lists the buckets of the full round (every enrolled
// hospital in the cohort, more than min_participants) that make one
// dropout fail the round although the others would still be a quorum:
// the bucket's threshold is its whole neighbourhood (a participant and
// the holders of its shares), so its session fails when one member
// leaves, and the round cannot close without it (its other buckets hold
// fewer than min_participants inputs, or are too few for the rule). Such
// a round fails at every attempt while a hospital of the cohort keeps
// dropping out. Smaller cohorts are not checked: one hospital is already
// missing from them, and their retries lay out new buckets.
//
// When a lower threshold_percent removes every wedge, Validate refuses
// the configuration and names the percentage. When buckets of two are
// among them, only a larger bucket or a smaller min_participants helps:
// that is a Warning, since documented configurations (the demo's secure
// Krum over buckets of 2) run so on purpose.
func (c Config) dropoutWedges() wedges {
	rule := c.secureRule()
	var ws wedges
	n := len(c.Enrolled)
	if n <= c.MinParticipants {
		return nil // every hospital is needed anyway
	}
	cohort := make([]string, n)
	for i := range cohort {
		cohort[i] = fmt.Sprintf("p%06d", i)
	}
	buckets, sessions := c.securePlan(cohort).Layout()
	for b, s := range sessions {
		hood := s.N
		if s.Degree > 0 {
			hood = s.Degree + 1
		}
		if s.Threshold < hood {
			continue
		}
		if len(buckets) > 1 && n-len(buckets[b]) >= c.MinParticipants && rule.CheckCohort(len(buckets)-1) == nil {
			continue
		}
		ws = append(ws, wedge{n: n, bucket: b + 1, hood: hood, threshold: s.Threshold})
	}
	return ws
}

// Warnings are the problems of a valid configuration that an operator
// should know of before the first round: today, a secure layout in which
// one dropout fails a round that a lower threshold cannot save (see
// dropoutWedges). Validate refuses what it must; the coordinator logs
// these at start, and --check-config prints them.
func (c Config) Warnings() []string {
	c = c.withDefaults()
	if !c.Secure || c.Validate() != nil {
		return nil
	}
	for _, w := range c.dropoutWedges() {
		if w.hood > 2 {
			continue
		}
		return []string{fmt.Sprintf("secure: in a round of %d participants the threshold of bucket %d is %d, all of a neighbourhood of %d, "+
			"so one dropout fails the round although the other %d would be a quorum: use aggregation.bucket 3 or more, or lower min_participants",
			w.n, w.bucket, w.threshold, w.hood, w.n-1)}
	}
	return nil
}

// layoutDigest is the hex digest of the model's tensor layout.
func (c Config) layoutDigest() (string, error) {
	s, err := c.spec()
	if err != nil {
		return "", err
	}
	l, err := safetensors.SpecLayout(s)
	if err != nil {
		return "", err
	}
	d := l.Digest()
	return hex.EncodeToString(d[:]), nil
}

// spec returns the model specification the configuration describes.
func (c Config) spec() (model.Spec, error) {
	k, err := model.ParseKind(c.Model.Kind)
	if err != nil {
		return model.Spec{}, err
	}
	s := model.Spec{Kind: k, Features: len(c.Model.Features), Classes: len(c.Model.Classes)}
	if k == model.MLP {
		s.Hidden = slices.Clone(c.Model.Hidden)
	}
	if k == model.Tensors {
		s.Tensors = make([]model.Tensor, len(c.Model.Tensors))
		for i, t := range c.Model.Tensors {
			s.Tensors[i] = model.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape)}
		}
	}
	return s, s.Validate()
}

// Validate checks the configuration (after defaults) and names every
// problem it finds.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := certs.ValidateName(c.Federation); err != nil {
		add("federation: %w", err)
	}
	if c.DataDir == "" {
		add("data_dir is required")
	}
	if c.TrainerDigest != "" {
		if err := manifest.CheckTrainerDigest(c.TrainerDigest); err != nil {
			add("trainer_digest: %w", err)
		}
	}
	if c.PKCS11.Enabled() {
		if err := c.PKCS11.Validate(); err != nil {
			add("pkcs11: %w", err)
		}
	}
	for _, f := range []struct{ name, value string }{{"ca_cert", c.CACert}, {"cert", c.Cert}, {"key", c.Key}} {
		if f.value == "" {
			add("%s is required", f.name)
		}
	}
	if len(c.Enrolled) == 0 {
		add("enrolled: no participants")
	}
	if err := c.CentralDP.validate(c); err != nil {
		add("%w", err)
	}
	validateSpill(c, add)
	seen := map[string]bool{}
	for _, n := range c.Enrolled {
		if err := certs.ValidateName(n); err != nil {
			add("enrolled %q: %w", n, err)
		}
		if seen[n] {
			add("enrolled: %q listed twice", n)
		}
		seen[n] = true
	}
	if c.MinParticipants < 1 || c.MinParticipants > len(c.Enrolled) {
		add("min_participants %d must be between 1 and the %d enrolled", c.MinParticipants, len(c.Enrolled))
	}
	tensorKind := c.Model.Kind == "tensors"
	switch {
	case tensorKind && c.InitialModel == "":
		add("model: kind tensors needs initial_model, the safetensors file the federation starts from (there is no built-in initialization of a tensor layout)")
	case tensorKind && len(c.Model.Tensors) == 0:
		if _, err := initialLayout(c.InitialModel); err != nil {
			add("model: kind tensors takes its layout from initial_model: %w", err)
		}
	case !tensorKind && len(c.Model.Tensors) > 0:
		add("model: tensors are only for kind tensors, not %q", c.Model.Kind)
	}
	if _, err := c.spec(); err != nil {
		add("%w", err) // the model package names itself
	} else if want, err := c.layoutDigest(); err != nil {
		add("model: %w", err)
	} else if c.Model.LayoutSHA256 != "" && c.Model.LayoutSHA256 != want {
		add("model.layout_sha256 %q is not the digest of the model's tensor layout, %s", c.Model.LayoutSHA256, want)
	}
	if c.Model.Kind != "mlp" && len(c.Model.Hidden) > 0 {
		add("model: hidden layers are only for kind mlp, not %q", c.Model.Kind)
	}
	if c.Model.Label == "" && (!tensorKind || len(c.Model.Features) > 0) {
		add("model.label is required")
	}
	cols := map[string]bool{c.Model.Label: true}
	for _, f := range c.Model.Features {
		if f == "" || cols[f] {
			add("model.features: %q is empty or repeated (or is the label)", f)
		}
		cols[f] = true
	}
	classes := map[string]bool{}
	for _, cl := range c.Model.Classes {
		if cl == "" || classes[cl] {
			add("model.classes: %q is empty or repeated", cl)
		}
		classes[cl] = true
	}
	plan := c.plan()
	if err := plan.Validate(); err != nil {
		add("training: %w", err)
	}
	// The wire carries these as uint32.
	if c.Training.LocalEpochs > math.MaxUint32 || c.Training.BatchSize > math.MaxUint32 {
		add("training: local_epochs %d and batch_size %d must fit in 32 bits", c.Training.LocalEpochs, c.Training.BatchSize)
	}
	if c.Training.Rounds < 1 {
		add("training.rounds %d must be at least 1", c.Training.Rounds)
	}
	if err := c.Aggregation.Validate(); err != nil {
		add("%w", err) // the aggregation package names itself
	} else if !c.Secure && c.MinParticipants >= 1 && c.MinParticipants <= len(c.Enrolled) {
		// A round may close with any number of updates from the quorum to
		// the whole federation, and some preconditions (trimmed-mean's) are
		// not monotone in that number: check every one.
		for n := c.MinParticipants; n <= len(c.Enrolled); n++ {
			if err := c.Aggregation.CheckCohort(n); err != nil {
				add("a round of %d updates (min_participants %d to %d enrolled) could never be aggregated: %w", n, c.MinParticipants, len(c.Enrolled), err)
				break
			}
		}
	}
	for _, d := range []struct {
		name  string
		value Duration
	}{{"cohort_timeout", c.CohortTimeout}, {"round_timeout", c.RoundTimeout}, {"stats_timeout", c.StatsTimeout}, {"long_poll", c.LongPoll}} {
		if d.value < 0 {
			add("%s must not be negative", d.name)
		}
	}
	if c.KeepModels < 1 {
		add("keep_models %d must be at least 1", c.KeepModels)
	}
	if c.Secure && c.MinParticipants >= 1 && c.MinParticipants <= len(c.Enrolled) {
		c.checkSecure(add)
	}
	if c.Listen != "" {
		if err := metricsserver.ValidateAddr(c.Listen); err != nil {
			add("listen %w", err)
		}
	}
	if c.MetricsListen != "" {
		if err := validateMetricsListen(c.MetricsListen, c.Listen); err != nil {
			add("%w", err)
		}
	}
	validateAnomaly(c.Anomaly, add)
	c.Limits.validate(add)
	c.checkDP(add)
	if len(errs) > 0 {
		return fmt.Errorf("invalid coordinator config: %w", errors.Join(errs...))
	}
	return nil
}

func (c Config) plan() model.Plan {
	return model.Plan{
		Epochs:       c.Training.LocalEpochs,
		LearningRate: c.Training.LearningRate,
		BatchSize:    c.Training.BatchSize,
		L2:           c.Training.L2,
	}
}

// minBudget keeps small federations from garbage-collecting continuously.
const minBudget = 128 << 20

// nonHeap is what a coordinator process holds outside the Go heap: its
// mapped code, thread stacks, runtime metadata.
const nonHeap = 32 << 20

// MemoryBudget is the soft memory limit for a coordinator with this
// configuration. When its rounds spill their updates to disk, it is
// spillVectors (spill.go). Otherwise the goal is that the whole process stays within one
// model-sized vector per enrolled participant (their updates) and two
// more, plus what the aggregation rule itself holds:
//   - the vectors of the updates and of the round's aggregate
//     (buffers.go): enrolled + 1. The model itself is not held (GetModel
//     and the close read it from the store), and the copy of the new model
//     bbolt makes while it commits it comes after the updates are
//     collected (runClose);
//   - headroom for the collector: 1 (the decoded chunks of updates are
//     garbage as soon as they are copied into their vector: with more
//     headroom the heap simply grew by it, as the soft limit allowed);
//   - the rule's own vectors (ruleVectors): norm-clip's copies of the
//     clipped updates and its zero vector, bucketing's bucket means under
//     a robust rule, centered-clipping's iterate.
//
// The limit leaves out what the process holds outside the heap (nonHeap,
// but never more than half a model, so the limit stays above the live
// peak). `fedguard coordinator` gives it to the Go runtime (unless
// GOMEMLIMIT is set), so that garbage collection keeps the heap near what
// is live instead of letting it double.
func MemoryBudget(cfg Config) (int64, error) {
	cfg = cfg.withDefaults()
	s, err := cfg.spec()
	if err != nil {
		return 0, err
	}
	m := 4 * int64(s.NumParams())
	n := len(cfg.Enrolled)
	if spills(cfg) {
		return max(spillVectors(n, m)-min(nonHeap, m/2), minBudget), nil
	}
	return max(int64(n+2+ruleVectors(cfg.Aggregation, n))*m-min(nonHeap, m/2), minBudget), nil
}

// ruleVectors is how many model-sized vectors the rule of a (configured)
// aggregation holds, at most, while it aggregates n updates, beyond the
// updates and the aggregate.
func ruleVectors(a aggregation.Config, n int) int {
	k := 0
	if a.Bucket > 1 && a.Rule != aggregation.NameFedAvg {
		// One mean per bucket (fedavg needs none: the mean of the bucket
		// means is the mean).
		k += (n + a.Bucket - 1) / a.Bucket
	}
	if a.Rule == aggregation.NameCenteredClipping {
		k++ // the iterate v
	}
	if a.NormClip > 0 {
		// The zero vector the norms are measured from, and a scaled copy
		// of every update over the bound.
		k += 1 + n
	}
	return k
}
