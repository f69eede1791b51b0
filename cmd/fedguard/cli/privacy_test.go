package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/privacy"
)

// go test ./cmd/fedguard/cli -run TestPrivacyCommands -update rewrites the
// golden files (internal/fedtest/golden).

// TestPrivacyCommands runs each command line and compares its exit code,
// stdout and stderr with testdata/privacy/NAME.golden.
func TestPrivacyCommands(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"epsilon", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10000", "--delta", "1e-5"}},
		{"epsilon-json", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10000", "--delta", "1e-5", "--json"}},
		{"epsilon-gaussian", []string{"privacy", "epsilon", "-q", "1", "-sigma", "10", "-steps", "100", "-delta", "1e-5"}},
		{"epsilon-zero-steps", []string{"privacy", "epsilon", "--q", "0.5", "--sigma", "1", "--steps", "0", "--delta", "1e-5", "--json"}},
		{"epsilon-q-zero", []string{"privacy", "epsilon", "--q", "0", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-q-above-one", []string{"privacy", "epsilon", "--q", "1.5", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-q-nan", []string{"privacy", "epsilon", "--q", "NaN", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-sigma-zero", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "0", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-sigma-negative", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "-2", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-sigma-inf", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "+Inf", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-sigma-underflow", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1e-300", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-steps-negative", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "-1", "--delta", "1e-5"}},
		{"epsilon-steps-not-integer", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "1e5", "--delta", "1e-5"}},
		{"epsilon-delta-zero", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10", "--delta", "0"}},
		{"epsilon-delta-one", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10", "--delta", "1"}},
		{"epsilon-missing-delta", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10"}},
		{"epsilon-stray-argument", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5", "extra"}},
		{"epsilon-ddg", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--sigma", "82", "--clients", "10", "--dim", "32", "--l2", "100.5", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-ddg-json", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--sigma", "0.9", "--clients", "5", "--dim", "1024", "--l2", "2", "--l1", "4", "--steps", "3", "--delta", "1e-5", "--json"}},
		{"epsilon-ddg-missing-clients", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--sigma", "82", "--dim", "32", "--l2", "100", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-ddg-with-q", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--q", "0.1", "--sigma", "82", "--clients", "10", "--dim", "32", "--l2", "100", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-ddg-sigma-below-half", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--sigma", "0.4", "--clients", "10", "--dim", "32", "--l2", "100", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-ddg-l1-below-l2", []string{"privacy", "epsilon", "--mechanism", "distributed-discrete-gaussian", "--sigma", "82", "--clients", "10", "--dim", "32", "--l2", "100", "--l1", "50", "--steps", "10", "--delta", "1e-5"}},
		{"epsilon-sampled-with-clients", []string{"privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5", "--clients", "3"}},
		{"epsilon-unknown-mechanism", []string{"privacy", "epsilon", "--mechanism", "skellam", "--sigma", "1", "--steps", "10", "--delta", "1e-5"}},
		{"sigma", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10000", "--epsilon", "8", "--delta", "1e-5"}},
		{"sigma-json", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10000", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"sigma-unreachable", []string{"privacy", "sigma", "--q", "1", "--steps", "1000000", "--epsilon", "0.001", "--delta", "1e-10"}},
		{"sigma-epsilon-zero", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10", "--epsilon", "0", "--delta", "1e-5"}},
		{"steps", []string{"privacy", "steps", "--q", "0.01", "--sigma", "1.1", "--epsilon", "8", "--delta", "1e-5"}},
		{"steps-json", []string{"privacy", "steps", "--q", "0.01", "--sigma", "1.1", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"steps-none", []string{"privacy", "steps", "--q", "1", "--sigma", "0.5", "--epsilon", "1", "--delta", "1e-5"}},
		{"sigma-ddg", []string{"privacy", "sigma", "--mechanism", "distributed-discrete-gaussian", "--clients", "10", "--dim", "32", "--l2", "100.5", "--steps", "10", "--epsilon", "8", "--delta", "1e-5"}},
		{"sigma-ddg-json", []string{"privacy", "sigma", "--mechanism", "distributed-discrete-gaussian", "--clients", "5", "--dim", "1024", "--l2", "2", "--l1", "4", "--steps", "3", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"sigma-ddg-missing-l2", []string{"privacy", "sigma", "--mechanism", "distributed-discrete-gaussian", "--clients", "10", "--dim", "32", "--steps", "10", "--epsilon", "8", "--delta", "1e-5"}},
		{"sigma-ddg-with-q", []string{"privacy", "sigma", "--mechanism", "distributed-discrete-gaussian", "--q", "0.1", "--clients", "10", "--dim", "32", "--l2", "100", "--steps", "10", "--epsilon", "8", "--delta", "1e-5"}},
		{"sigma-ddg-unreachable", []string{"privacy", "sigma", "--mechanism", "distributed-discrete-gaussian", "--clients", "2", "--dim", "4", "--l2", "1e12", "--steps", "1000000000", "--epsilon", "1e-6", "--delta", "1e-12"}},
		{"sigma-sampled-with-dim", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10", "--epsilon", "8", "--delta", "1e-5", "--dim", "3"}},
		{"sigma-unknown-mechanism", []string{"privacy", "sigma", "--mechanism", "skellam", "--steps", "10", "--epsilon", "8", "--delta", "1e-5"}},
		{"steps-ddg", []string{"privacy", "steps", "--mechanism", "distributed-discrete-gaussian", "--sigma", "82", "--clients", "10", "--dim", "32", "--l2", "100.5", "--epsilon", "8", "--delta", "1e-5"}},
		{"steps-ddg-json", []string{"privacy", "steps", "--mechanism", "distributed-discrete-gaussian", "--sigma", "4096", "--clients", "3", "--dim", "16384", "--l2", "2048", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"steps-ddg-none", []string{"privacy", "steps", "--mechanism", "distributed-discrete-gaussian", "--sigma", "0.5", "--clients", "2", "--dim", "4", "--l2", "100", "--epsilon", "1", "--delta", "1e-5"}},
		{"steps-ddg-sigma-below-half", []string{"privacy", "steps", "--mechanism", "distributed-discrete-gaussian", "--sigma", "0.4", "--clients", "2", "--dim", "4", "--l2", "1", "--epsilon", "1", "--delta", "1e-5"}},
		{"steps-ddg-missing-clients", []string{"privacy", "steps", "--mechanism", "distributed-discrete-gaussian", "--sigma", "82", "--dim", "32", "--l2", "100.5", "--epsilon", "8", "--delta", "1e-5"}},
		{"unknown", []string{"privacy", "budget"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "privacy", tt.name+".golden"), tt.args)
		})
	}
}

// TestPrivacyHelpNamesItsFlags: each privacy command's help mentions only
// flags that command takes. The -mechanism text was shared, and told
// `privacy sigma` (which has no -sigma) and `privacy steps` (no -steps) to
// set both.
func TestPrivacyHelpNamesItsFlags(t *testing.T) {
	declared := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	mention := regexp.MustCompile(`(?:^|[\s(,;])-([a-z][a-z0-9-]*)`)
	for _, cmd := range []string{"epsilon", "sigma", "steps"} {
		t.Run(cmd, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(context.Background(), []string{"privacy", cmd, "-h"}, &out, &errOut); code != 0 {
				t.Fatalf("privacy %s -h: exit %d\n%s", cmd, code, errOut.String())
			}
			help := out.String() + errOut.String()
			flags := map[string]bool{}
			for _, m := range declared.FindAllStringSubmatch(help, -1) {
				flags[m[1]] = true
			}
			for _, m := range mention.FindAllStringSubmatch(help, -1) {
				if !flags[m[1]] {
					t.Errorf("privacy %s -h mentions -%s, which it does not take:\n%s", cmd, m[1], help)
				}
			}
		})
	}
}

// checkGolden runs the command line args and compares its exit code,
// stdout and stderr with the golden file path (rewritten with -update).
func checkGolden(t *testing.T, path string, args []string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	got := fmt.Sprintf("$ fedguard %s\nexit %d\n-- stdout --\n%s-- stderr --\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	golden.Check(t, path, []byte(got))
}

// TestPrivacyEpsilonMatchesReference runs `fedguard privacy epsilon --json`
// on every single-event sequence of the accountant's dp_accounting reference
// and checks the command reports the reference ε, so the command anyone can
// run is the cross-checked one.
func TestPrivacyEpsilonMatchesReference(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "privacy", "testdata", "dp_accounting.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []struct {
			Name   string
			Delta  float64
			Events []struct {
				Q     float64
				Sigma float64
				Steps int64
			}
			Epsilon float64
			Order   float64
		}
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range ref.Cases {
		if len(c.Events) != 1 {
			continue
		}
		n++
		e := c.Events[0]
		args := []string{"privacy", "epsilon", "--json",
			"--q", fmt.Sprint(e.Q), "--sigma", fmt.Sprint(e.Sigma), "--steps", fmt.Sprint(e.Steps), "--delta", fmt.Sprint(c.Delta)}
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("%s: fedguard %s = exit %d: %s", c.Name, strings.Join(args, " "), code, errOut.String())
		}
		var got struct {
			Q, Sigma, Delta, Epsilon, Order float64
			Steps                           int64
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%s: output %q: %v", c.Name, out.String(), err)
		}
		if math.Abs(got.Epsilon-c.Epsilon) > 1e-9*c.Epsilon || got.Order != c.Order {
			t.Errorf("%s: epsilon %v at order %v, dp_accounting %v at %v", c.Name, got.Epsilon, got.Order, c.Epsilon, c.Order)
		}
		if got.Q != e.Q || got.Sigma != e.Sigma || got.Steps != e.Steps || got.Delta != c.Delta {
			t.Errorf("%s: inputs echoed as %+v", c.Name, got)
		}
	}
	if n < 10 {
		t.Fatalf("only %d single-event reference cases", n)
	}
}

// TestPrivacyEpsilonDistributed checks `fedguard privacy epsilon -mechanism
// distributed-discrete-gaussian --json` against what a secure federation
// records: the noise secagg calibrates for a budget over R rounds, given
// back with the manifest's parameters (privacy.DistributedDiscreteGaussian
// as JSON) and -steps R, reports an ε within that budget and within 1 % of
// it (the calibration finds the least integer σ²), and the ε of the package.
func TestPrivacyEpsilonDistributed(t *testing.T) {
	for _, tt := range []struct {
		dim, minSurvivors, rounds int
		clip, epsilon, delta      float64
	}{
		{31, 10, 10, 1, 8, 1e-5},
		{31, 10, 10, 1, 1, 1e-5},
		{50890, 7, 100, 0.5, 4, 1e-6},
		{1000, 3, 3, 2, 40, 1e-5},
	} {
		name := fmt.Sprintf("d%d-n%d-r%d-eps%g", tt.dim, tt.minSurvivors, tt.rounds, tt.epsilon)
		t.Run(name, func(t *testing.T) {
			p := secagg.DefaultDDP(tt.dim, tt.clip, [32]byte{})
			_, m, err := p.Calibrate(tt.minSurvivors, tt.minSurvivors, int64(tt.rounds), tt.epsilon, tt.delta)
			if err != nil {
				t.Fatal(err)
			}
			params, err := json.Marshal(m) // as the manifest's privacy record holds it
			if err != nil {
				t.Fatal(err)
			}
			var rec privacy.DistributedDiscreteGaussian
			if err := json.Unmarshal(params, &rec); err != nil {
				t.Fatal(err)
			}
			args := []string{"privacy", "epsilon", "--mechanism", secagg.DDPMechanism, "--json",
				"--sigma", fmt.Sprint(rec.Sigma), "--clients", fmt.Sprint(rec.Clients), "--dim", fmt.Sprint(rec.Dim),
				"--l2", fmt.Sprint(rec.L2), "--steps", fmt.Sprint(tt.rounds), "--delta", fmt.Sprint(tt.delta)}
			var out, errOut bytes.Buffer
			if code := Main(context.Background(), args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			var got struct {
				Epsilon float64 `json:"epsilon"`
				Steps   int64   `json:"steps"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			m.Steps = int64(tt.rounds)
			want, err := m.Epsilon(tt.delta)
			if err != nil {
				t.Fatal(err)
			}
			if got.Epsilon != want.Epsilon || got.Steps != int64(tt.rounds) {
				t.Errorf("ε %v after %d steps, want %v (the package's)", got.Epsilon, got.Steps, want.Epsilon)
			}
			if got.Epsilon > tt.epsilon || got.Epsilon < 0.99*tt.epsilon {
				t.Errorf("ε %v, want within 1 %% below the calibrated budget %v", got.Epsilon, tt.epsilon)
			}
		})
	}
}

// TestPrivacyDistributedCalibration runs `fedguard privacy sigma` and
// `fedguard privacy steps` with -mechanism distributed-discrete-gaussian
// and checks each answer with `fedguard privacy epsilon`: the σ found
// keeps the releases within the budget and 0.1 % less does not; the
// number of releases found is within the budget and one more is not.
func TestPrivacyDistributedCalibration(t *testing.T) {
	const delta = "1e-5"
	epsilonOf := func(t *testing.T, sigma float64, steps int64, params []string) float64 {
		t.Helper()
		var got struct {
			Epsilon float64 `json:"epsilon"`
		}
		runJSON(t, append([]string{"privacy", "epsilon", "--mechanism", secagg.DDPMechanism, "--json", "--delta", delta,
			"--sigma", fmt.Sprint(sigma), "--steps", fmt.Sprint(steps)}, params...), &got)
		return got.Epsilon
	}
	for _, tt := range []struct {
		params  []string
		epsilon float64
	}{
		{[]string{"--clients", "10", "--dim", "32", "--l2", "100.5"}, 8},
		{[]string{"--clients", "3", "--dim", "16384", "--l2", "2048"}, 4},
		{[]string{"--clients", "5", "--dim", "1024", "--l2", "2", "--l1", "4"}, 1},
	} {
		t.Run(strings.Join(tt.params, " "), func(t *testing.T) {
			budget := []string{"--epsilon", fmt.Sprint(tt.epsilon), "--delta", delta}
			var s struct {
				Sigma float64 `json:"sigma"`
				Steps int64   `json:"steps"`
			}
			runJSON(t, append(append([]string{"privacy", "sigma", "--mechanism", secagg.DDPMechanism, "--json", "--steps", "20"}, budget...), tt.params...), &s)
			if s.Steps != 20 {
				t.Errorf("privacy sigma echoed %d steps, want 20", s.Steps)
			}
			if e := epsilonOf(t, s.Sigma, 20, tt.params); e > tt.epsilon {
				t.Errorf("σ = %v: ε = %v over 20 releases, want ≤ %v", s.Sigma, e, tt.epsilon)
			}
			if e := epsilonOf(t, s.Sigma*0.999, 20, tt.params); e <= tt.epsilon {
				t.Errorf("σ = %v less 0.1 %%: ε = %v, still within %v", s.Sigma, e, tt.epsilon)
			}
			var n struct {
				Steps int64 `json:"steps"`
			}
			runJSON(t, append(append([]string{"privacy", "steps", "--mechanism", secagg.DDPMechanism, "--json", "--sigma", fmt.Sprint(s.Sigma)}, budget...), tt.params...), &n)
			if n.Steps < 20 {
				t.Errorf("σ = %v allows %d releases, want at least the 20 it was found for", s.Sigma, n.Steps)
			}
			if e := epsilonOf(t, s.Sigma, n.Steps, tt.params); e > tt.epsilon {
				t.Errorf("%d releases: ε = %v, want ≤ %v", n.Steps, e, tt.epsilon)
			}
			if e := epsilonOf(t, s.Sigma, n.Steps+1, tt.params); e <= tt.epsilon {
				t.Errorf("%d releases: ε = %v, still within %v", n.Steps+1, e, tt.epsilon)
			}
		})
	}
}

// runJSON runs the command line args, which must succeed, and decodes its
// output into v.
func runJSON(t *testing.T, args []string, v any) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("fedguard %s = exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("fedguard %s: output %q: %v", strings.Join(args, " "), out.String(), err)
	}
}
