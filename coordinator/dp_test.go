package coordinator_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/coordinator"
)

// dpConfig is validConfig with distributed DP over secure rounds.
func dpConfig() coordinator.Config {
	c := validConfig()
	c.Secure, c.MinParticipants, c.SecAgg.ThresholdPercent = true, 2, 66
	c.DPMechanism, c.DPEpsilon, c.DPDelta, c.DPClipNorm = "distributed-discrete-gaussian", 8, 1e-5, 1
	return c
}

// TestValidateDP checks that every bad distributed-DP configuration is
// refused with an error naming the setting, and that New refuses it before
// touching the data directory.
func TestValidateDP(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*coordinator.Config)
		want   []string // nil: valid
	}{
		{"valid", func(*coordinator.Config) {}, nil},
		{"valid many rounds", func(c *coordinator.Config) { c.Training.Rounds, c.DPEpsilon = 1000, 1 }, nil},
		{"unknown mechanism", func(c *coordinator.Config) { c.DPMechanism = "skellam" }, []string{`dp_mechanism "skellam"`, "distributed-discrete-gaussian"}},
		{"plain mode", func(c *coordinator.Config) { c.Secure = false }, []string{"dp_mechanism", "secure: true"}},
		{"no epsilon", func(c *coordinator.Config) { c.DPEpsilon = 0 }, []string{"dp_epsilon 0"}},
		{"no delta", func(c *coordinator.Config) { c.DPDelta = 0 }, []string{"dp_delta 0"}},
		{"delta of one", func(c *coordinator.Config) { c.DPDelta = 1 }, []string{"dp_delta 1"}},
		{"no clip norm", func(c *coordinator.Config) { c.DPClipNorm = 0 }, []string{"dp_clip_norm 0"}},
		{"settings without a mechanism", func(c *coordinator.Config) { c.DPMechanism = "" }, []string{"need dp_mechanism"}},
		{"budget the ring cannot carry", func(c *coordinator.Config) { c.DPEpsilon, c.Training.Rounds = 1e-4, 100_000 },
			[]string{"dp_mechanism", "dp_epsilon 0.0001", "100000 rounds", "at least 2 survivors"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dpConfig()
			tt.mutate(&c)
			validateNames(t, c, tt.want)
		})
	}
}

// TestLoadConfigDP checks the settings' names in a configuration file.
func TestLoadConfigDP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	cfg := `{"federation": "demo", "data_dir": "/tmp/x", "ca_cert": "ca.crt", "cert": "c.crt", "key": "c.key",
		"enrolled": ["hospital-a", "hospital-b", "hospital-c"], "min_participants": 2, "secure": true, "secagg": {"threshold_percent": 66},
		"model": {"kind": "logreg", "features": ["f1", "f2"], "label": "y", "classes": ["B", "M"]},
		"dp_mechanism": "distributed-discrete-gaussian", "dp_epsilon": 4, "dp_delta": 1e-6, "dp_clip_norm": 0.5}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.DPMechanism != "distributed-discrete-gaussian" || c.DPEpsilon != 4 || c.DPDelta != 1e-6 || c.DPClipNorm != 0.5 {
		t.Errorf("loaded %+v", c.DPConfig)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
