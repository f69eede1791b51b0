package participant_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// exampleConfig is the shipped example; a test loads it so it stays valid.
const exampleConfig = "../examples/participant.json"

func TestLoadFileConfigExample(t *testing.T) {
	c, err := participant.LoadFileConfig(exampleConfig)
	if err != nil {
		t.Fatalf("LoadFileConfig(%q) = %v", exampleConfig, err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("LoadFileConfig(%q).Validate() = %v, want nil", exampleConfig, err)
	}
	want := participant.FileConfig{
		Coordinator:     "coordinator.example.org:7443",
		Federation:      "breast-cancer",
		CA:              "/etc/fedguard/ca.crt",
		Cert:            "/etc/fedguard/hospital-a.crt",
		Key:             "/etc/fedguard/hospital-a.key",
		CoordinatorKey:  "/etc/fedguard/signing.pub",
		Data:            "/data/wdbc-local.csv",
		Ignore:          []string{"id"},
		Holdout:         0.2,
		Seed:            1,
		ServerName:      "coordinator.example.org",
		State:           "/var/lib/fedguard/hospital-a.accepted.json",
		Expect:          "/etc/fedguard/expectations-wdbc.json",
		Validation:      participant.ValidationEnforce,
		RequireSecure:   false,
		MinSecureBucket: 0,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("LoadFileConfig(%q) mismatch (-want +got):\n%s", exampleConfig, diff)
	}
}

// TestLoadFileConfigExecExample keeps the shipped exec-trainer example
// valid (docs/trainer.md).
func TestLoadFileConfigExecExample(t *testing.T) {
	const path = "../examples/participant-exec.json"
	c, err := participant.LoadFileConfig(path)
	if err != nil {
		t.Fatalf("LoadFileConfig(%q) = %v", path, err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("LoadFileConfig(%q).Validate() = %v, want nil", path, err)
	}
	if c.Trainer != participant.TrainerExec || c.TrainerCode != "/opt/hospital-model" || len(c.ApproveTrainer) != 1 {
		t.Errorf("LoadFileConfig(%q) = %+v, want an exec trainer with its code and one approved digest", path, c)
	}
}

func TestParseFileConfig(t *testing.T) {
	const dir = "/srv/hospital"
	base := participant.FileConfig{
		Coordinator: "c.example:7443", Federation: "f", CA: "/abs/ca.crt",
		Cert: dir + "/h.crt", Key: dir + "/keys/h.key", CoordinatorKey: dir + "/signing.pub",
		Data: "/data/d.csv", Holdout: participant.DefaultHoldout, Seed: participant.DefaultSeed,
	}
	minimal := `{"coordinator":"c.example:7443","federation":"f","ca":"/abs/ca.crt","cert":"h.crt",
	  "key":"keys/h.key","coordinator_key":"./signing.pub","data":"/data/d.csv"`
	tests := []struct {
		name    string
		in      string
		dir     string
		want    func(c *participant.FileConfig)
		wantErr string
	}{
		{name: "defaults and relative paths", in: minimal + `}`, dir: dir, want: func(*participant.FileConfig) {}},
		{name: "no dir keeps paths", in: minimal + `}`, want: func(c *participant.FileConfig) {
			c.Cert, c.Key, c.CoordinatorKey = "h.crt", "keys/h.key", "./signing.pub"
		}},
		{name: "explicit zero holdout and seed", in: minimal + `,"holdout":0,"seed":0}`, dir: dir, want: func(c *participant.FileConfig) {
			c.Holdout, c.Seed = 0, 0
		}},
		{name: "state and expect resolved", in: minimal + `,"state":"s.json","expect":"../e.json","validation":"warn"}`, dir: dir, want: func(c *participant.FileConfig) {
			c.State, c.Expect, c.Validation = dir+"/s.json", "/srv/e.json", "warn"
		}},
		{name: "unknown field", in: minimal + `,"holdot":0.1}`, dir: dir, wantErr: `unknown field "holdot"`},
		{name: "wrong type", in: minimal + `,"seed":"one"}`, dir: dir, wantErr: "seed"},
		{name: "bad JSON", in: minimal, dir: dir, wantErr: "unexpected EOF"},
		{name: "two objects", in: minimal + `}{}`, dir: dir, wantErr: "data after the JSON value"},
		{name: "not an object", in: `[]`, dir: dir, wantErr: "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := participant.ParseFileConfig([]byte(tt.in), tt.dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFileConfig(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFileConfig(%q) = %v", tt.in, err)
			}
			want := base
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseFileConfig(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLoadFileConfigErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"coordinator":"c:1","color":"red"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"ignore":["`+strings.Repeat("x", participant.MaxFileConfigBytes)+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want []string
	}{
		{unknown, []string{unknown, `unknown field "color"`}},
		{big, []string{big, "larger than"}},
		{filepath.Join(dir, "missing.json"), []string{"missing.json", "no such file"}},
	}
	for _, tt := range tests {
		_, err := participant.LoadFileConfig(tt.path)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("LoadFileConfig(%q) = %v, want an error containing %q", tt.path, err, w)
			}
		}
	}
}

func TestFileConfigValidate(t *testing.T) {
	valid := participant.FileConfig{
		Coordinator: "c.example:7443", Federation: "f", CA: "ca.crt", Cert: "h.crt", Key: "h.key",
		CoordinatorKey: "signing.pub", Data: "d.csv", Holdout: 0.2, Seed: 1,
	}
	tests := []struct {
		name   string
		change func(c *participant.FileConfig)
		want   *participant.FieldError // nil: valid
	}{
		{"valid", func(*participant.FileConfig) {}, nil},
		{"no holdout", func(c *participant.FileConfig) { c.Holdout = 0 }, nil},
		{"enforce", func(c *participant.FileConfig) { c.Expect, c.Validation = "e.json", "enforce" }, nil},
		{"no coordinator", func(c *participant.FileConfig) { c.Coordinator = "" }, &participant.FieldError{Field: "coordinator", Reason: "is required"}},
		{"no coordinator key", func(c *participant.FileConfig) { c.CoordinatorKey = "" }, &participant.FieldError{Field: "coordinator_key", Reason: "is required"}},
		{"no port", func(c *participant.FileConfig) { c.Coordinator = "c.example" }, &participant.FieldError{Field: "coordinator", Reason: `"c.example": address c.example: missing port in address`}},
		{"bad federation", func(c *participant.FileConfig) { c.Federation = "Bad_Name" }, nil},
		{"validation without expect", func(c *participant.FileConfig) { c.Validation = "warn" }, &participant.FieldError{Field: "validation", Reason: "needs", Other: "expect"}},
		{"bad validation", func(c *participant.FileConfig) { c.Expect, c.Validation = "e.json", "strict" }, &participant.FieldError{Field: "validation", Reason: `"strict", want warn or enforce`}},
		{"holdout 1", func(c *participant.FileConfig) { c.Holdout = 1 }, &participant.FieldError{Field: "holdout", Reason: "1 outside [0, 1)"}},
		{"negative bucket", func(c *participant.FileConfig) { c.MinSecureBucket = -1 }, &participant.FieldError{Field: "min_secure_bucket", Reason: "-1 is negative"}},
		{"negative secure budget", func(c *participant.FileConfig) { c.DPSecureEpsilon = -1 }, &participant.FieldError{Field: "dp_secure_epsilon", Reason: "-1, want a finite number ≥ 0"}},
		{"infinite secure budget", func(c *participant.FileConfig) { c.DPSecureEpsilon = math.Inf(1) }, &participant.FieldError{Field: "dp_secure_epsilon", Reason: "+Inf, want a finite number ≥ 0"}},
		{"secure budget", func(c *participant.FileConfig) { c.DPSecureEpsilon = 4 }, nil},
		{"empty ignore", func(c *participant.FileConfig) { c.Ignore = []string{"id", " "} }, &participant.FieldError{Field: "ignore", Reason: "holds an empty column name"}},
		{"exec trainer", func(c *participant.FileConfig) {
			c.Trainer, c.TrainerCommand, c.TrainerTimeout, c.TrainerDir = "exec", "python3 '/opt/my model/train.py'", "45m", "/var/lib/fedguard/trainer"
		}, nil},
		{"local trainer", func(c *participant.FileConfig) { c.Trainer = "local" }, nil},
		{"approved trainer", func(c *participant.FileConfig) {
			c.Trainer, c.TrainerCommand, c.TrainerCode, c.ApproveTrainer = "exec", "python3 train.py", "train.py", []string{"sha256:" + strings.Repeat("ab", 32)}
		}, nil},
		{"bad digest", func(c *participant.FileConfig) {
			c.Trainer, c.TrainerCommand, c.ApproveTrainer = "exec", "t", []string{"sha256:ABC"}
		}, &participant.FieldError{Field: "approve_trainer", Reason: `trainer digest "sha256:ABC" is not sha256: and 64 lowercase hex digits`}},
		{"approve without exec", func(c *participant.FileConfig) { c.ApproveTrainer = []string{"sha256:" + strings.Repeat("ab", 32)} },
			&participant.FieldError{Field: "approve_trainer", Reason: "is only for an exec trainer: set", Other: "trainer"}},
		{"unknown trainer", func(c *participant.FileConfig) { c.Trainer = "torch" }, &participant.FieldError{Field: "trainer", Reason: `"torch", want local or exec`}},
		{"exec without command", func(c *participant.FileConfig) { c.Trainer = "exec" }, &participant.FieldError{Field: "trainer_command", Reason: "is required with trainer exec"}},
		{"unterminated quote", func(c *participant.FileConfig) { c.Trainer, c.TrainerCommand = "exec", "python3 'train.py" },
			&participant.FieldError{Field: "trainer_command", Reason: `trainer command "python3 'train.py": unterminated single quote`}},
		{"bad timeout", func(c *participant.FileConfig) { c.Trainer, c.TrainerCommand, c.TrainerTimeout = "exec", "t", "-5m" },
			&participant.FieldError{Field: "trainer_timeout", Reason: `"-5m" is not a positive duration such as 45m`}},
		{"command without exec", func(c *participant.FileConfig) { c.TrainerCommand = "python3 train.py" },
			&participant.FieldError{Field: "trainer_command", Reason: "is only for an exec trainer: set", Other: "trainer"}},
		{"give up after", func(c *participant.FileConfig) { c.GiveUpAfter = "6h" }, nil},
		{"give up never", func(c *participant.FileConfig) { c.GiveUpAfter = "never" }, nil},
		{"give up zero", func(c *participant.FileConfig) { c.GiveUpAfter = "0s" },
			&participant.FieldError{Field: "give_up_after", Reason: `"0s" is not a positive duration such as 6h, or "never"`}},
		{"give up words", func(c *participant.FileConfig) { c.GiveUpAfter = "forever" },
			&participant.FieldError{Field: "give_up_after", Reason: `"forever" is not a positive duration such as 6h, or "never"`}},
		{"timeout without exec", func(c *participant.FileConfig) { c.TrainerTimeout = "5m" },
			&participant.FieldError{Field: "trainer_timeout", Reason: "is only for an exec trainer: set", Other: "trainer"}},
		{"dp budget", func(c *participant.FileConfig) {
			c.DPEpsilon, c.DPDelta, c.DPNoiseMultiplier, c.DPClipNorm = 8, 1e-6, 1.1, 1
		}, nil},
		{"dp-sgd without budget", func(c *participant.FileConfig) { c.DPNoiseMultiplier, c.DPClipNorm = 1.1, 1 }, nil},
		{"dp budget without dp-sgd", func(c *participant.FileConfig) { c.DPEpsilon = 8 },
			&participant.FieldError{Field: "dp_epsilon", Reason: "needs DP-SGD: set", Other: "dp_noise_multiplier"}},
		// Before, the reason held a field name of its own, and the flag
		// form read "-dp-noise-multiplier and dp_clip_norm go together:
		// set both -dp-clip-norm".
		{"dp sigma without clip", func(c *participant.FileConfig) { c.DPEpsilon, c.DPNoiseMultiplier = 8, 1.1 },
			&participant.FieldError{Field: "dp_noise_multiplier", Reason: "needs", Other: "dp_clip_norm"}},
		{"dp clip without sigma", func(c *participant.FileConfig) { c.DPClipNorm = 1 },
			&participant.FieldError{Field: "dp_clip_norm", Reason: "needs", Other: "dp_noise_multiplier"}},
		{"dp delta 1", func(c *participant.FileConfig) {
			c.DPEpsilon, c.DPDelta, c.DPNoiseMultiplier, c.DPClipNorm = 8, 1, 1.1, 1
		},
			&participant.FieldError{Field: "dp_delta", Reason: "1 outside (0, 1)"}},
		{"dp negative epsilon", func(c *participant.FileConfig) { c.DPEpsilon = -1 },
			&participant.FieldError{Field: "dp_epsilon", Reason: "-1, want a finite number > 0"}},
		{"dp delta without budget", func(c *participant.FileConfig) { c.DPDelta, c.DPNoiseMultiplier, c.DPClipNorm = 1e-5, 1.1, 1 },
			&participant.FieldError{Field: "dp_delta", Reason: "needs a budget: set", Other: "dp_epsilon"}},
		{"dp delta with federation-level budget", func(c *participant.FileConfig) { c.DPDelta, c.DPSecureEpsilon = 1e-7, 10 }, nil},
		{"dp delta with per-round floor", func(c *participant.FileConfig) { c.DPDelta, c.DPSecureRoundEpsilon = 1e-7, 2 }, nil},
		{"dp with exec trainer", func(c *participant.FileConfig) {
			c.Trainer, c.TrainerCommand, c.DPNoiseMultiplier, c.DPClipNorm = "exec", "t", 1.1, 1
		}, &participant.FieldError{Field: "dp_noise_multiplier", Reason: "is for the built-in trainer only: unset", Other: "trainer"}},
		{"momentum", func(c *participant.FileConfig) { c.Momentum, c.MomentumStyle = 0.9, "heavy-ball" }, nil},
		{"momentum ema", func(c *participant.FileConfig) { c.Momentum = 0.5 }, nil},
		{"momentum 1", func(c *participant.FileConfig) { c.Momentum = 1 },
			&participant.FieldError{Field: "momentum", Reason: "1 outside [0, 1)"}},
		{"momentum negative", func(c *participant.FileConfig) { c.Momentum = -0.1 },
			&participant.FieldError{Field: "momentum", Reason: "-0.1 outside [0, 1)"}},
		{"momentum style", func(c *participant.FileConfig) { c.Momentum, c.MomentumStyle = 0.9, "nesterov" },
			&participant.FieldError{Field: "momentum_style", Reason: `"nesterov", want ema or heavy-ball`}},
		{"momentum style alone", func(c *participant.FileConfig) { c.MomentumStyle = "ema" },
			&participant.FieldError{Field: "momentum_style", Reason: "needs", Other: "momentum"}},
		{"momentum with exec trainer", func(c *participant.FileConfig) { c.Trainer, c.TrainerCommand, c.Momentum = "exec", "t", 0.9 },
			&participant.FieldError{Field: "momentum", Reason: "is for the built-in trainer only: unset", Other: "trainer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			err := c.Validate()
			var fe *participant.FieldError
			switch {
			case tt.name == "bad federation": // the reason comes from certs
				if !errors.As(err, &fe) || fe.Field != "federation" {
					t.Errorf("Validate() = %v, want a FieldError for federation", err)
				}
			case tt.want == nil:
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
			case !errors.As(err, &fe):
				t.Errorf("Validate() = %v, want %v", err, tt.want)
			default:
				if diff := cmp.Diff(tt.want, fe); diff != "" {
					t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestFieldErrorDescribe(t *testing.T) {
	e := &participant.FieldError{Field: "validation", Reason: "needs", Other: "expect"}
	if got, want := e.Error(), "participant: config: validation needs expect"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	flag := func(f string) string { return "-" + strings.ReplaceAll(f, "_", "-") }
	if got, want := e.Describe(flag), "-validation needs -expect"; got != want {
		t.Errorf("Describe(flag) = %q, want %q", got, want)
	}
}

// enrolment writes what a hospital has after enrolment into dir: ca.crt,
// st-mary.crt and .key for federation fed, the coordinator's signing.pub
// and a data file; it returns a configuration with paths relative to dir.
// The coordinator's own certificate and key (coordinator.crt, .key) are
// there too, for the tests of a hospital that configures them by mistake.
func enrolment(t *testing.T, dir, fed string) participant.FileConfig {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, err := certs.Init(caDir, fed, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := certs.NewParticipantRequest(fed, "st-mary")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.IssueServer([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "coordinator.crt"), serverCert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := certs.WritePrivateKey(filepath.Join(dir, "coordinator.key"), serverKey); err != nil {
		t.Fatal(err)
	}
	fedtest.CopyFile(t, filepath.Join(caDir, "ca.crt"), filepath.Join(dir, "ca.crt"))
	if err := os.WriteFile(filepath.Join(dir, "st-mary.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := certs.WritePrivateKey(filepath.Join(dir, "st-mary.key"), keyPEM); err != nil {
		t.Fatal(err)
	}
	coord := t.TempDir()
	if _, _, err := manifest.LoadOrCreateSigner(coord); err != nil {
		t.Fatal(err)
	}
	fedtest.CopyFile(t, filepath.Join(coord, manifest.PublicFile), filepath.Join(dir, manifest.PublicFile))
	fedtest.CopyFile(t, dataFile, filepath.Join(dir, "data.csv"))
	return participant.FileConfig{
		Coordinator: "127.0.0.1:7443", Federation: fed, CA: "ca.crt", Cert: "st-mary.crt", Key: "st-mary.key",
		CoordinatorKey: manifest.PublicFile, Data: "data.csv", Ignore: []string{"id"},
		Holdout: participant.DefaultHoldout, Seed: participant.DefaultSeed,
	}
}

// writeConfig writes c as dir/participant.json.
func writeConfig(t *testing.T, dir string, c participant.FileConfig) string {
	t.Helper()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "participant.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileConfigCheck(t *testing.T) {
	t.Parallel()
	other := t.TempDir()
	enrolment(t, other, "other-fed") // a second federation, to borrow its CA and certificate
	tests := []struct {
		name    string
		change  func(t *testing.T, dir string, c *participant.FileConfig)
		wantErr []string // substrings; none means Check succeeds
	}{
		{"valid", func(*testing.T, string, *participant.FileConfig) {}, nil},
		{"with expectations", func(t *testing.T, dir string, c *participant.FileConfig) {
			expect, _ := validationFiles(t)
			fedtest.CopyFile(t, expect, filepath.Join(dir, "expect.json"))
			c.Expect, c.Validation = "expect.json", participant.ValidationEnforce
		}, nil},
		// Before, both said OK: only the expectations file was parsed.
		{"data refused by its expectations (enforce)", func(t *testing.T, dir string, c *participant.FileConfig) {
			expect, withEmail := validationFiles(t)
			fedtest.CopyFile(t, expect, filepath.Join(dir, "expect.json"))
			fedtest.CopyFile(t, withEmail, filepath.Join(dir, "data.csv"))
			c.Expect, c.Validation = "expect.json", participant.ValidationEnforce
		}, []string{"fails its expectations", "email: pii", "sits out every round"}},
		{"data refused by its expectations (warn)", func(t *testing.T, dir string, c *participant.FileConfig) {
			expect, withEmail := validationFiles(t)
			fedtest.CopyFile(t, expect, filepath.Join(dir, "expect.json"))
			fedtest.CopyFile(t, withEmail, filepath.Join(dir, "data.csv"))
			c.Expect, c.Validation = "expect.json", participant.ValidationWarn
		}, []string{"fails its expectations", "would train on it anyway"}},
		{"missing data", func(_ *testing.T, _ string, c *participant.FileConfig) { c.Data = "nope.csv" }, []string{"participant: data:", "nope.csv", "no such file"}},
		// Before, --check-config said OK and the agent stopped later on
		// a missing label column.
		{"semicolon-separated data", func(t *testing.T, dir string, c *participant.FileConfig) {
			if err := os.WriteFile(filepath.Join(dir, "semi.csv"), []byte("id;x;y\n1;2;B\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			c.Data = "semi.csv"
		}, []string{"semi.csv", "the header is one column holding ';'", "separated by commas"}},
		{"empty data", func(t *testing.T, dir string, c *participant.FileConfig) {
			if err := os.WriteFile(filepath.Join(dir, "empty.csv"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			c.Data = "empty.csv"
		}, []string{"empty.csv is empty"}},
		// Before, a header row that never ends was read until memory ran out.
		{"endless data", func(t *testing.T, dir string, c *participant.FileConfig) {
			endless.File(t, dir, "endless.csv")
			c.Data = "endless.csv"
		}, []string{"endless.csv", "line 1 is longer than 8388608 bytes"}},
		{"missing key", func(_ *testing.T, _ string, c *participant.FileConfig) { c.Key = "nope.key" }, []string{"cert and key", "nope.key"}},
		{"key of another hospital", func(_ *testing.T, _ string, c *participant.FileConfig) { c.Key = filepath.Join(other, "st-mary.key") }, []string{"cert and key"}},
		{"coordinator key is not one", func(_ *testing.T, _ string, c *participant.FileConfig) { c.CoordinatorKey = "ca.crt" }, []string{"coordinator_key"}},
		{"ca is not a certificate", func(_ *testing.T, _ string, c *participant.FileConfig) { c.CA = "data.csv" }, []string{"participant: ca:"}},
		{"certificate of another CA", func(_ *testing.T, _ string, c *participant.FileConfig) { c.CA = filepath.Join(other, "ca.crt") }, []string{"st-mary.crt", "unknown authority"}},
		{"certificate of another federation", func(_ *testing.T, _ string, c *participant.FileConfig) {
			c.CA, c.Cert, c.Key = filepath.Join(other, "ca.crt"), filepath.Join(other, "st-mary.crt"), filepath.Join(other, "st-mary.key")
		}, []string{"want a participant of federation \"clinic-net\""}},
		// Before, x509's "incompatible key usage" was all it said.
		{"the coordinator's certificate", func(_ *testing.T, _ string, c *participant.FileConfig) {
			c.Cert, c.Key = "coordinator.crt", "coordinator.key"
		}, []string{"coordinator.crt is spiffe://clinic-net/coordinator", "want a participant of federation \"clinic-net\"", "fedguard ca sign"}},
		{"bad expectations", func(_ *testing.T, _ string, c *participant.FileConfig) { c.Expect = "data.csv" }, []string{"participant: expect:", "invalid expectations"}},
		{"corrupt state", func(t *testing.T, dir string, c *participant.FileConfig) {
			if err := os.WriteFile(filepath.Join(dir, "st-mary.accepted.json"), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"participant: state:"}},
		{"invalid", func(_ *testing.T, _ string, c *participant.FileConfig) { c.Holdout = 2 }, []string{"holdout 2 outside [0, 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := enrolment(t, dir, "clinic-net")
			tt.change(t, dir, &c)
			loaded, err := participant.LoadFileConfig(writeConfig(t, dir, c))
			if err != nil {
				t.Fatal(err)
			}
			id, err := loaded.Check()
			if len(tt.wantErr) == 0 {
				want := certs.Identity{Federation: "clinic-net", Role: certs.RoleParticipant, Name: "st-mary"}
				if err != nil || id != want {
					t.Errorf("Check() = %v, %v; want %v, nil", id, err, want)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Check() = %v, want an error containing %q", err, w)
				}
			}
		})
	}
}

// loadConfig writes c into dir, loads it back and makes the agent's
// Config of it.
func loadConfig(t *testing.T, dir string, c participant.FileConfig) (participant.FileConfig, participant.Config) {
	t.Helper()
	loaded, err := participant.LoadFileConfig(writeConfig(t, dir, c))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loaded.Config()
	if err != nil {
		t.Fatalf("Config() = %v", err)
	}
	return loaded, cfg
}

func TestFileConfigConfig(t *testing.T) {
	dir := t.TempDir()
	c := enrolment(t, dir, "clinic-net")
	c.Holdout = 0
	c.Expect, c.Validation = "e.json", participant.ValidationWarn
	c.DPSecureRoundEpsilon, c.DPSecureEpsilon = 2, 6
	loaded, cfg := loadConfig(t, dir, c)
	if cfg.SecureDPRoundEpsilon != 2 || cfg.SecureDPEpsilon != 6 {
		t.Errorf("Config() secure DP limits %v per round, %v in all; want 2 and 6", cfg.SecureDPRoundEpsilon, cfg.SecureDPEpsilon)
	}
	tr, ok := cfg.Trainer.(*participant.LocalTrainer)
	if !ok {
		t.Fatalf("Config().Trainer is %T, want *LocalTrainer", cfg.Trainer)
	}
	got := []any{cfg.Coordinator, cfg.Federation, cfg.StateFile, cfg.Expectations, cfg.ValidationMode, cfg.TLS.ServerName, tr.DataFile, tr.Ignore, tr.Holdout, tr.Seed, cfg.GiveUpAfter}
	want := []any{"127.0.0.1:7443", "clinic-net", filepath.Join(dir, "st-mary.accepted.json"), filepath.Join(dir, "e.json"), "warn", "127.0.0.1",
		filepath.Join(dir, "data.csv"), []string{"id"}, float64(participant.NoHoldout), uint64(participant.DefaultSeed), time.Duration(0)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Config() mismatch (-want +got):\n%s", diff)
	}
	for value, want := range map[string]time.Duration{"6h": 6 * time.Hour, "never": -1} {
		loaded.GiveUpAfter = value
		cfg, err := loaded.Config()
		if err != nil {
			t.Fatalf("Config() with give_up_after %q = %v", value, err)
		}
		if cfg.GiveUpAfter != want {
			t.Errorf("give_up_after %q: Config().GiveUpAfter = %v, want %v", value, cfg.GiveUpAfter, want)
		}
	}
}

func TestFileConfigExecTrainer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := enrolment(t, dir, "clinic-net")
	c.Trainer, c.TrainerCommand, c.TrainerTimeout, c.TrainerDir = "exec", "sh -c 'exit 0'", "90s", "work"
	loaded, cfg := loadConfig(t, dir, c)
	tr, ok := cfg.Trainer.(*participant.ExecTrainer)
	if !ok {
		t.Fatalf("Config().Trainer is %T, want *ExecTrainer", cfg.Trainer)
	}
	got := []any{tr.Command, tr.Timeout, tr.Dir, tr.Local.DataFile, tr.Seed}
	want := []any{[]string{"sh", "-c", "exit 0"}, 90 * time.Second, filepath.Join(dir, "work"), filepath.Join(dir, "data.csv"), uint64(participant.DefaultSeed)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Config() mismatch (-want +got):\n%s", diff)
	}
	if _, err := loaded.Check(); err != nil {
		t.Errorf("Check() = %v", err)
	}
	loaded.ApproveTrainer = []string{"sha256:" + strings.Repeat("0", 64)}
	if _, err := loaded.Check(); !errors.Is(err, participant.ErrTrainerNotApproved) {
		t.Errorf("Check() with an unapproved trainer = %v, want ErrTrainerNotApproved", err)
	}
	loaded.ApproveTrainer = nil
	loaded.TrainerCommand = "/nonexistent/train.py"
	if _, err := loaded.Check(); err == nil || !strings.Contains(err.Error(), "/nonexistent/train.py") {
		t.Errorf("Check() with a missing trainer = %v, want an error naming it", err)
	}
	// The exec trainer's own data (a tensor-layout federation's images):
	// a directory, not read as CSV; it only has to exist.
	loaded.TrainerCommand = "sh -c 'exit 0'"
	loaded.Data = t.TempDir()
	if _, err := loaded.Check(); err != nil {
		t.Errorf("Check() with a data directory = %v", err)
	}
	loaded.Data = filepath.Join(dir, "missing-shard")
	if _, err := loaded.Check(); err == nil || !strings.Contains(err.Error(), "missing-shard") {
		t.Errorf("Check() with missing data = %v, want an error naming it", err)
	}
}

// FuzzParseFileConfig checks that any input either fails or parses to a
// configuration that marshals and parses back to itself.
func FuzzParseFileConfig(f *testing.F) {
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(`{"holdout":0,"seed":0,"ignore":[]}`))
	f.Add([]byte(`{"data":"x"} {}`))
	f.Add([]byte(`{"momentum":0.9,"momentum_style":"heavy-ball"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := participant.ParseFileConfig(b, "")
		if err != nil {
			return
		}
		_ = c.Validate()
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", c, err)
		}
		again, err := participant.ParseFileConfig(out, "")
		if err != nil {
			t.Fatalf("ParseFileConfig(%s) = %v after a round trip", out, err)
		}
		if diff := cmp.Diff(c, again, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
