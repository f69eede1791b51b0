package participant

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/metricsserver"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/validation"
)

// DefaultSeed is the seed of the holdout split and the local shuffling when
// a [FileConfig] (or `fedguard participant run`) names none. Any fixed value
// does: the point is that a restarted agent splits its rows the same way.
const DefaultSeed = 1

// MaxFileConfigBytes bounds a participant configuration file. A real one is
// well under a kilobyte; the bound only stops a wrong path (a data file, a
// device) from being read whole.
const MaxFileConfigBytes = 1 << 20

// FileConfig is the participant's configuration file (JSON), the settings
// of `fedguard participant run`, one field per command-line flag: the
// field coordinator_key is the flag -coordinator-key, and so on. Flags
// given on the command line override the file's values.
//
// Relative paths in the file (ca, cert, key, coordinator_key, data, state,
// expect) are resolved against the directory of the file, not the working
// directory, so a file and its certificates can move together.
// examples/participant.json is a complete example.
//
// Unknown fields are errors, so a misspelt setting is never silently
// ignored. A field left out takes the value of [DefaultFileConfig].
type FileConfig struct {
	// Coordinator is the coordinator's address, host:port. Required.
	Coordinator string `json:"coordinator"`
	// Federation is the federation's name, as in every certificate.
	// Required.
	Federation string `json:"federation"`
	// CA is the federation CA certificate (ca.crt). Required.
	CA string `json:"ca"`
	// Cert and Key are this hospital's certificate (NAME.crt) and private
	// key (NAME.key). Required.
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// CoordinatorKey is the coordinator's manifest-signing public keys
	// (its signing.pub), pinned at enrolment. Required.
	CoordinatorKey string `json:"coordinator_key"`
	// Data is the local training data, a CSV file with a header row.
	// Required. With the exec trainer it is the path the trainer gets
	// (plan.json's data), a file or a directory; the agent reads it as
	// CSV only when the federation's model has feature columns.
	Data string `json:"data"`
	// Ignore names CSV columns to skip, such as a record id.
	Ignore []string `json:"ignore,omitempty"`
	// Holdout is the fraction of local rows kept for evaluation, in
	// [0, 1); 0 means no holdout. Left out, it is [DefaultHoldout].
	Holdout float64 `json:"holdout"`
	// Seed seeds the holdout split and the local shuffling. Left out, it
	// is [DefaultSeed].
	Seed uint64 `json:"seed"`
	// ServerName is the name expected in the coordinator's certificate;
	// empty means the host of Coordinator.
	ServerName string `json:"server_name,omitempty"`
	// State is the file keeping the last round manifest accepted (see
	// [Config.StateFile]); empty means NAME.accepted.json beside Key.
	State string `json:"state,omitempty"`
	// RequireSecure takes part in secure-aggregation rounds only (see
	// [Config.RequireSecure]).
	RequireSecure bool `json:"require_secure,omitempty"`
	// MinSecureBucket declines secure rounds that put this hospital in a
	// sum of fewer members (see [Config.MinSecureBucket]); 0 means any.
	MinSecureBucket int `json:"min_secure_bucket,omitempty"`
	// DPSecureRoundEpsilon declines secure rounds whose distributed DP
	// would cost this hospital more than this ε per round, and those
	// without it (see [Config.SecureDPRoundEpsilon]); 0 means any.
	DPSecureRoundEpsilon float64 `json:"dp_secure_round_epsilon,omitempty"`
	// DPSecureEpsilon is the hospital's federation-level privacy budget
	// over all the secure rounds with distributed DP it sends an input to
	// (see [Config.SecureDPEpsilon]); 0 means none.
	DPSecureEpsilon float64 `json:"dp_secure_epsilon,omitempty"`
	// Expect is an expectations file (package validation): the data file
	// is checked against it before every round and the findings, counts
	// only, are reported to the coordinator. Empty means no validation.
	Expect string `json:"expect,omitempty"`
	// Validation is, with Expect, [ValidationWarn] (the default: report
	// and train) or [ValidationEnforce] (sit out rounds whose data has
	// errors).
	Validation string `json:"validation,omitempty"`
	// Trainer is how the agent trains: "local" (the default: the
	// built-in models, trained on Data) or "exec" (the hospital's own
	// program, TrainerCommand, through files; see [ExecTrainer] and
	// docs/trainer.md). With exec, the trainer gets Data's path; for a
	// model with feature columns Data still serves the feature
	// statistics and validation (a CSV file), for a tensor layout
	// without them the agent does not read it.
	Trainer string `json:"trainer,omitempty"`
	// TrainerCommand is the exec trainer's command line, such as
	// "python3 train.py", split into words without a shell (see
	// [SplitCommand]). It runs in the agent's working directory: unlike
	// the file's paths, its words are not resolved against the file's
	// directory, so give the script's absolute path in a file.
	TrainerCommand string `json:"trainer_command,omitempty"`
	// TrainerTimeout bounds one run of the exec trainer, as a Go duration
	// ("45m"); empty means [DefaultTrainerTimeout].
	TrainerTimeout string `json:"trainer_timeout,omitempty"`
	// TrainerDir is where the exec trainer's private round directories
	// go (created 0700); empty means a new temporary directory.
	TrainerDir string `json:"trainer_dir,omitempty"`
	// TrainerCode is the exec trainer's code (a file or a directory)
	// whose digest is logged every round and checked against
	// ApproveTrainer; empty means the program of TrainerCommand (for
	// "python3 train.py" that is python3: name the script here).
	TrainerCode string `json:"trainer_code,omitempty"`
	// ApproveTrainer is the hospital's allow-list of trainer digests
	// ("sha256:…", see [TrainerDigest]): the agent refuses to run exec
	// trainer code whose digest is not on it.
	ApproveTrainer []string `json:"approve_trainer,omitempty"`
	// MetricsListen is the host:port of an HTTP listener serving this
	// agent's Prometheus metrics at /metrics (see [Config.MetricsListen]);
	// empty, the default, means none.
	MetricsListen string `json:"metrics_listen,omitempty"`
	// NoDataVersion stops the agent reporting its data version (see
	// [Config.DataSalt] and docs/lineage.md): for a hospital whose data
	// are so few and so well known outside that confirming a guess of the
	// whole file would disclose something.
	NoDataVersion bool `json:"no_data_version,omitempty"`
	// GiveUpAfter is how long the agent keeps retrying a coordinator it
	// cannot reach before it exits with [ErrCoordinatorGone], as a Go
	// duration ("6h"), or "never"; empty means [DefaultGiveUpAfter]. A
	// systemd unit that restarts the agent anyway may want "never"; an
	// operator who wants to hear about a retired federation keeps a bound.
	GiveUpAfter string `json:"give_up_after,omitempty"`
	// DPEpsilon is the hospital's record-level privacy budget ε (see
	// [Config.DPEpsilon]); 0, the default, means none. It needs
	// DPNoiseMultiplier and DPClipNorm: the built-in trainer then trains
	// with DP-SGD and the agent sits out any round that would exceed it.
	DPEpsilon float64 `json:"dp_epsilon,omitempty"`
	// DPDelta is the δ of the budget; 0 means [DefaultDPDelta].
	DPDelta float64 `json:"dp_delta,omitempty"`
	// DPNoiseMultiplier is DP-SGD's noise multiplier σ (see
	// [DPSettings]); with DPClipNorm it turns DP-SGD on.
	DPNoiseMultiplier float64 `json:"dp_noise_multiplier,omitempty"`
	// DPClipNorm is DP-SGD's per-record clipping norm C.
	DPClipNorm float64 `json:"dp_clip_norm,omitempty"`
	// Momentum is the built-in trainer's worker momentum β in [0, 1);
	// 0, the default, means none (see [LocalTrainer.Momentum]).
	Momentum float64 `json:"momentum,omitempty"`
	// MomentumStyle is the momentum recursion: ema (the default when
	// empty) or heavy-ball.
	MomentumStyle string `json:"momentum_style,omitempty"`
}

// GiveUpNever is the give_up_after value that retries forever.
const GiveUpNever = "never"

// giveUpAfter turns c.GiveUpAfter (valid) into [Config.GiveUpAfter].
func (c FileConfig) giveUpAfter() time.Duration {
	switch c.GiveUpAfter {
	case "":
		return 0 // Config's default
	case GiveUpNever:
		return -1
	}
	d, _ := time.ParseDuration(c.GiveUpAfter) // checked by Validate
	return d
}

// DefaultFileConfig returns the values a configuration file's missing
// fields take: Holdout [DefaultHoldout], Seed [DefaultSeed], everything
// else empty.
func DefaultFileConfig() FileConfig {
	return FileConfig{Holdout: DefaultHoldout, Seed: DefaultSeed}
}

// FieldError is a problem with one field of a [FileConfig], found by
// [FileConfig.Validate]. Field and Other are JSON field names; the command
// line shows them as flags (Field "coordinator_key" is -coordinator-key).
type FieldError struct {
	// Field is the field at fault.
	Field string
	// Reason says what is wrong with it, such as "is required".
	Reason string
	// Other, when set, is a field that Reason refers to and that follows
	// it in the message ("validation needs expect").
	Other string
}

// Error returns the problem with the fields named as in the file.
func (e *FieldError) Error() string {
	return "participant: config: " + e.Describe(func(f string) string { return f })
}

// Describe returns the problem with each field named by name, for example
// as a command-line flag.
func (e *FieldError) Describe(name func(field string) string) string {
	s := name(e.Field) + " " + e.Reason
	if e.Other != "" {
		s += " " + name(e.Other)
	}
	return s
}

// LoadFileConfig reads the configuration file at path and resolves its
// relative paths against the directory of path. Errors name the file, and
// the field when the JSON decoder does (an unknown field, a wrong type).
// It does not validate the result: flags may still complete or override
// it; call [FileConfig.Validate] on the final configuration.
func LoadFileConfig(path string) (FileConfig, error) {
	b, err := strictjson.ReadFile(path, MaxFileConfigBytes)
	if err != nil {
		return FileConfig{}, fmt.Errorf("participant: read config: %w", err)
	}
	c, err := ParseFileConfig(b, filepath.Dir(path))
	if err != nil {
		return FileConfig{}, fmt.Errorf("participant: config %s: %w", path, err)
	}
	return c, nil
}

// ParseFileConfig decodes one JSON configuration object over
// [DefaultFileConfig], then resolves its relative paths against dir (none
// are changed when dir is empty). Unknown fields and anything after the
// object are errors.
func ParseFileConfig(b []byte, dir string) (FileConfig, error) {
	c := DefaultFileConfig()
	if err := strictjson.Unmarshal(b, &c); err != nil {
		return FileConfig{}, err
	}
	if dir != "" {
		for _, p := range c.paths() {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	return c, nil
}

// paths returns the fields that hold file paths.
func (c *FileConfig) paths() []*string {
	return []*string{&c.CA, &c.Cert, &c.Key, &c.CoordinatorKey, &c.Data, &c.State, &c.Expect, &c.TrainerDir, &c.TrainerCode}
}

// Validate checks c without touching a file and returns the first problem
// as a *[FieldError].
func (c FileConfig) Validate() error {
	switch {
	case c.Validation != "" && c.Expect == "":
		return &FieldError{Field: "validation", Reason: "needs", Other: "expect"}
	case c.Validation != "" && c.Validation != ValidationWarn && c.Validation != ValidationEnforce:
		return &FieldError{Field: "validation", Reason: fmt.Sprintf("%q, want %s or %s", c.Validation, ValidationWarn, ValidationEnforce)}
	}
	for _, r := range []struct{ field, value string }{
		{"coordinator", c.Coordinator}, {"federation", c.Federation}, {"ca", c.CA}, {"cert", c.Cert},
		{"key", c.Key}, {"data", c.Data}, {"coordinator_key", c.CoordinatorKey},
	} {
		if r.value == "" {
			return &FieldError{Field: r.field, Reason: "is required"}
		}
	}
	if _, _, err := net.SplitHostPort(c.Coordinator); err != nil {
		return &FieldError{Field: "coordinator", Reason: fmt.Sprintf("%q: %v", c.Coordinator, err)}
	}
	if err := certs.ValidateName(c.Federation); err != nil {
		return &FieldError{Field: "federation", Reason: fmt.Sprintf("%q: %v", c.Federation, err)}
	}
	switch {
	case !(c.Holdout >= 0 && c.Holdout < 1):
		return &FieldError{Field: "holdout", Reason: fmt.Sprintf("%v outside [0, 1)", c.Holdout)}
	case c.MinSecureBucket < 0:
		return &FieldError{Field: "min_secure_bucket", Reason: fmt.Sprintf("%d is negative", c.MinSecureBucket)}
	case !(c.DPSecureRoundEpsilon >= 0) || math.IsInf(c.DPSecureRoundEpsilon, 1):
		return &FieldError{Field: "dp_secure_round_epsilon", Reason: fmt.Sprintf("%v, want a finite number ≥ 0", c.DPSecureRoundEpsilon)}
	case !(c.DPSecureEpsilon >= 0) || math.IsInf(c.DPSecureEpsilon, 1):
		return &FieldError{Field: "dp_secure_epsilon", Reason: fmt.Sprintf("%v, want a finite number ≥ 0", c.DPSecureEpsilon)}
	}
	if c.MetricsListen != "" {
		if err := metricsserver.ValidateAddr(c.MetricsListen); err != nil {
			return &FieldError{Field: "metrics_listen", Reason: err.Error()}
		}
	}
	if c.GiveUpAfter != "" && c.GiveUpAfter != GiveUpNever {
		if d, err := time.ParseDuration(c.GiveUpAfter); err != nil || d <= 0 {
			return &FieldError{Field: "give_up_after", Reason: fmt.Sprintf("%q is not a positive duration such as 6h, or %q", c.GiveUpAfter, GiveUpNever)}
		}
	}
	if err := c.validateTrainer(); err != nil {
		return err
	}
	if err := c.validateDP(); err != nil {
		return err
	}
	if err := c.validateMomentum(); err != nil {
		return err
	}
	for _, col := range c.Ignore {
		if strings.TrimSpace(col) == "" {
			return &FieldError{Field: "ignore", Reason: "holds an empty column name"}
		}
	}
	return nil
}

// Trainer kinds of a [FileConfig].
const (
	TrainerLocal = "local"
	TrainerExec  = "exec"
)

func (c FileConfig) validateTrainer() error {
	switch c.Trainer {
	case "", TrainerLocal:
		for _, f := range []struct{ field, value string }{
			{"trainer_command", c.TrainerCommand}, {"trainer_timeout", c.TrainerTimeout}, {"trainer_dir", c.TrainerDir},
			{"trainer_code", c.TrainerCode}, {"approve_trainer", strings.Join(c.ApproveTrainer, ",")},
		} {
			if f.value != "" {
				return &FieldError{Field: f.field, Reason: "is only for an exec trainer: set", Other: "trainer"}
			}
		}
		return nil
	case TrainerExec:
	default:
		return &FieldError{Field: "trainer", Reason: fmt.Sprintf("%q, want %s or %s", c.Trainer, TrainerLocal, TrainerExec)}
	}
	if c.TrainerCommand == "" {
		return &FieldError{Field: "trainer_command", Reason: "is required with trainer exec"}
	}
	if _, err := SplitCommand(c.TrainerCommand); err != nil {
		return &FieldError{Field: "trainer_command", Reason: strings.TrimPrefix(err.Error(), "participant: ")}
	}
	for _, d := range c.ApproveTrainer {
		if _, err := ParseTrainerDigest(d); err != nil {
			return &FieldError{Field: "approve_trainer", Reason: strings.TrimPrefix(err.Error(), "participant: ")}
		}
	}
	if c.TrainerTimeout != "" {
		if d, err := time.ParseDuration(c.TrainerTimeout); err != nil || d <= 0 {
			return &FieldError{Field: "trainer_timeout", Reason: fmt.Sprintf("%q is not a positive duration such as 45m", c.TrainerTimeout)}
		}
	}
	return nil
}

func (c FileConfig) validateDP() error {
	bad := func(v float64) bool { return !(v >= 0) || math.IsInf(v, 0) }
	switch {
	case bad(c.DPEpsilon):
		return &FieldError{Field: "dp_epsilon", Reason: fmt.Sprintf("%v, want a finite number > 0", c.DPEpsilon)}
	case bad(c.DPDelta) || c.DPDelta >= 1:
		return &FieldError{Field: "dp_delta", Reason: fmt.Sprintf("%v outside (0, 1)", c.DPDelta)}
	case bad(c.DPNoiseMultiplier):
		return &FieldError{Field: "dp_noise_multiplier", Reason: fmt.Sprintf("%v, want a finite number > 0", c.DPNoiseMultiplier)}
	case bad(c.DPClipNorm):
		return &FieldError{Field: "dp_clip_norm", Reason: fmt.Sprintf("%v, want a finite number > 0", c.DPClipNorm)}
	case c.DPNoiseMultiplier > 0 && c.DPClipNorm == 0:
		return &FieldError{Field: "dp_noise_multiplier", Reason: "needs", Other: "dp_clip_norm"}
	case c.DPClipNorm > 0 && c.DPNoiseMultiplier == 0:
		return &FieldError{Field: "dp_clip_norm", Reason: "needs", Other: "dp_noise_multiplier"}
	case c.DPEpsilon > 0 && c.DPNoiseMultiplier == 0 && c.Trainer != TrainerExec:
		return &FieldError{Field: "dp_epsilon", Reason: "needs DP-SGD: set", Other: "dp_noise_multiplier"}
	case c.DPDelta > 0 && c.DPEpsilon == 0 && c.DPSecureEpsilon == 0 && c.DPSecureRoundEpsilon == 0:
		return &FieldError{Field: "dp_delta", Reason: "needs a budget: set", Other: "dp_epsilon"}
	case c.DPNoiseMultiplier > 0 && c.Trainer == TrainerExec:
		return &FieldError{Field: "dp_noise_multiplier", Reason: "is for the built-in trainer only: unset", Other: "trainer"}
	}
	return nil
}

func (c FileConfig) validateMomentum() error {
	m := model.Momentum{Beta: c.Momentum, Style: c.MomentumStyle}
	switch {
	case !(c.Momentum >= 0 && c.Momentum < 1):
		return &FieldError{Field: "momentum", Reason: fmt.Sprintf("%v outside [0, 1)", c.Momentum)}
	case m.Validate() != nil:
		return &FieldError{Field: "momentum_style", Reason: fmt.Sprintf("%q, want %s or %s", c.MomentumStyle, model.MomentumEMA, model.MomentumHeavyBall)}
	case c.MomentumStyle != "" && c.Momentum == 0:
		return &FieldError{Field: "momentum_style", Reason: "needs", Other: "momentum"}
	case c.Momentum > 0 && c.Trainer == TrainerExec:
		return &FieldError{Field: "momentum", Reason: "is for the built-in trainer only: unset", Other: "trainer"}
	}
	return nil
}

// trainer returns the Trainer c asks for (c is valid).
func (c FileConfig) trainer(h float64) Trainer {
	local := &LocalTrainer{DataFile: c.Data, Ignore: c.Ignore, Holdout: h, Seed: c.Seed, Momentum: c.Momentum, MomentumStyle: c.MomentumStyle}
	if c.DPNoiseMultiplier > 0 {
		local.DP = &DPSettings{NoiseMultiplier: c.DPNoiseMultiplier, ClipNorm: c.DPClipNorm}
	}
	if c.Trainer != TrainerExec {
		return local
	}
	cmd, _ := SplitCommand(c.TrainerCommand)           // checked by Validate
	timeout, _ := time.ParseDuration(c.TrainerTimeout) // "" gives 0: the default
	return &ExecTrainer{Command: cmd, Dir: c.TrainerDir, Timeout: timeout, Local: local, Seed: c.Seed,
		Code: c.TrainerCode, Approved: c.ApproveTrainer}
}

// Config validates c, loads the files it names (the CA certificate, this
// hospital's certificate and key, the coordinator's public keys) and
// returns the agent's [Config], with a [LocalTrainer] over Data. The
// caller sets Log and AgentVersion.
func (c FileConfig) Config() (Config, error) {
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	keys, err := manifest.LoadPublicKeys(c.CoordinatorKey)
	if err != nil {
		return Config{}, fmt.Errorf("participant: coordinator_key: %w", err)
	}
	cas, err := certs.LoadCABundle(c.CA)
	if err != nil {
		return Config{}, fmt.Errorf("participant: ca: %w", err)
	}
	serverName := c.ServerName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(c.Coordinator) // checked by Validate
	}
	tlsCfg, err := certs.ClientConfig(certs.ClientOptions{
		CA:         cas[0],
		MoreCAs:    cas[1:],
		CertFile:   c.Cert,
		KeyFile:    c.Key,
		Federation: c.Federation,
		ServerName: serverName,
	})
	if err != nil {
		return Config{}, fmt.Errorf("participant: cert and key: %w", err)
	}
	state := c.State
	if state == "" {
		state = strings.TrimSuffix(c.Key, filepath.Ext(c.Key)) + ".accepted.json"
	}
	h := c.Holdout
	if h == 0 {
		h = NoHoldout // an explicit 0 means no holdout, not the default
	}
	var salt *lineage.Salt
	if !c.NoDataVersion {
		// The first CA of the bundle: during a CA rotation's overlap the
		// old one, so the data version stays the same (docs/lineage.md).
		s := lineage.SaltFor(cas[0].Raw)
		salt = &s
	}
	return Config{
		DataSalt:             salt,
		Coordinator:          c.Coordinator,
		TLS:                  tlsCfg,
		Trainer:              c.trainer(h),
		Federation:           c.Federation,
		CoordinatorKeys:      keys,
		StateFile:            state,
		RequireSecure:        c.RequireSecure,
		MinSecureBucket:      c.MinSecureBucket,
		SecureDPRoundEpsilon: c.DPSecureRoundEpsilon,
		SecureDPEpsilon:      c.DPSecureEpsilon,
		Expectations:         c.Expect,
		ValidationMode:       c.Validation,
		MetricsListen:        c.MetricsListen,
		GiveUpAfter:          c.giveUpAfter(),
		DPEpsilon:            c.DPEpsilon,
		DPDelta:              c.DPDelta,
	}, nil
}

// Check does what an agent does with c before it first dials the
// coordinator, without dialling: it builds the [Config] (see
// [FileConfig.Config]), checks that the certificate chains to the CA as a
// participant of the federation and is valid now, that the data file and
// the state file (when it exists) can be read, and that the expectations
// file, if any, parses. It returns this hospital's identity.
func (c FileConfig) Check() (certs.Identity, error) {
	cfg, err := c.Config()
	if err != nil {
		return certs.Identity{}, err
	}
	id, err := c.checkCertificate(cfg)
	if err != nil {
		return certs.Identity{}, err
	}
	if _, exec := cfg.Trainer.(*ExecTrainer); exec && !isCSV(c.Data) {
		// The trainer's own data (a directory of images, say): the
		// agent does not read it, it only has to be there. Whether the
		// federation wants a CSV is known at join.
		if _, err := os.Stat(c.Data); err != nil {
			return certs.Identity{}, fmt.Errorf("participant: data: %w", err)
		}
	} else if err := readHeader(c.Data); err != nil {
		return certs.Identity{}, fmt.Errorf("participant: data: %w", err)
	}
	if et, ok := cfg.Trainer.(*ExecTrainer); ok {
		if err := et.lookPath(); err != nil {
			return certs.Identity{}, err
		}
		if _, err := et.approve(); err != nil {
			return certs.Identity{}, err
		}
	}
	if _, err := loadState(cfg.StateFile); err != nil {
		return certs.Identity{}, fmt.Errorf("participant: state: %w", err)
	}
	if c.Expect != "" {
		if err := checkData(cfg, c.Expect); err != nil {
			return certs.Identity{}, err
		}
	}
	return id, nil
}

// checkData checks the data file against the expectations as the agent
// does before each round, and fails on any finding of severity error, in
// either mode: in warn mode the agent would train on such data, which a
// configuration check should not call OK without saying so.
func checkData(cfg Config, expect string) error {
	v, err := newValidator(cfg)
	if err != nil {
		return fmt.Errorf("participant: expect: %w", err)
	}
	rep, err := v.read()
	if err != nil {
		return fmt.Errorf("participant: data %s against %s: %w", v.file, expect, err)
	}
	if rep.Errors() == 0 {
		return nil
	}
	var msgs []string
	for _, f := range rep.Findings {
		if f.Severity == validation.SeverityError {
			msgs = append(msgs, fmt.Sprintf("  %s: %s: %s", f.Column, f.Rule, f.Message))
		}
	}
	then := "the agent sits out every round until the data is fixed (validation: enforce)"
	if v.mode == ValidationWarn {
		then = "the agent would train on it anyway (validation: warn)"
	}
	return fmt.Errorf("participant: data %s fails its expectations %s with %d errors; %s:\n%s",
		v.file, expect, rep.Errors(), then, strings.Join(msgs, "\n"))
}

// checkCertificate verifies the client certificate of cfg.TLS against its
// CA and returns the participant identity it carries.
func (c FileConfig) checkCertificate(cfg Config) (certs.Identity, error) {
	tc, err := cfg.TLS.GetClientCertificate(nil)
	if err != nil {
		return certs.Identity{}, fmt.Errorf("participant: cert and key: %w", err)
	}
	leaf, err := certs.Leaf(tc)
	if err != nil {
		return certs.Identity{}, fmt.Errorf("participant: cert: %w", err)
	}
	id, err := certs.CheckOwn(leaf, cfg.TLS.RootCAs, certs.RoleParticipant, c.Federation)
	if wrong := (*certs.WrongIdentityError)(nil); errors.As(err, &wrong) {
		return certs.Identity{}, fmt.Errorf("participant: cert %s is %s, want a participant of federation %q (this hospital's certificate, from fedguard ca sign of its CSR)",
			c.Cert, wrong.Got, c.Federation)
	}
	if err != nil {
		return certs.Identity{}, fmt.Errorf("participant: cert %s: %w", c.Cert, err)
	}
	return id, nil
}

// readHeader checks that path can be opened and starts with a CSV header.
// isCSV reports whether path names a regular file with a .csv extension.
func isCSV(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && strings.EqualFold(filepath.Ext(path), ".csv")
}

func readHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Bounded as the agent reads the file, so that a header row that
	// never ends (a device, a FIFO) is refused, not read until memory
	// runs out.
	r := csv.NewReader(dataset.NewBoundedReader(f, dataset.MaxBytes, dataset.MaxLineBytes))
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s is empty, want a CSV header row", path)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := dataset.CheckSeparator(header); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
