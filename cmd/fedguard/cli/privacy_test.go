package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The -update flag rewrites the golden files:
//
//	go test ./cmd/fedguard/cli -run TestPrivacyCommands -update
//
// Other golden tests of the package may define the same flag, so it is
// defined here only if no one has yet.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

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
		{"sigma", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10000", "--epsilon", "8", "--delta", "1e-5"}},
		{"sigma-json", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10000", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"sigma-unreachable", []string{"privacy", "sigma", "--q", "1", "--steps", "1000000", "--epsilon", "0.001", "--delta", "1e-10"}},
		{"sigma-epsilon-zero", []string{"privacy", "sigma", "--q", "0.01", "--steps", "10", "--epsilon", "0", "--delta", "1e-5"}},
		{"steps", []string{"privacy", "steps", "--q", "0.01", "--sigma", "1.1", "--epsilon", "8", "--delta", "1e-5"}},
		{"steps-json", []string{"privacy", "steps", "--q", "0.01", "--sigma", "1.1", "--epsilon", "8", "--delta", "1e-5", "--json"}},
		{"steps-none", []string{"privacy", "steps", "--q", "1", "--sigma", "0.5", "--epsilon", "1", "--delta", "1e-5"}},
		{"unknown", []string{"privacy", "budget"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "privacy", tt.name+".golden"), tt.args)
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
	compareGolden(t, path, got)
}

// compareGolden compares got with the golden file at path, or rewrites
// the file under -update.
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
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
