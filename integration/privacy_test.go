package integration

import (
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPrivacyEpsilonCommand runs `fedguard privacy epsilon` as a compliance
// officer would: the JSON answer for dp_accounting's reference sequence
// (q = 0.01, σ = 1.1, 10⁴ steps, δ = 1e−5 → ε = 5.632010670081592 at order
// 4.7), and exit code 2 with the flag named for a sampling rate above 1.
func TestPrivacyEpsilonCommand(t *testing.T) {
	out := mustFedguard(t, "privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "10000", "--delta", "1e-5", "--json")
	var got struct {
		Q, Sigma, Delta, Epsilon, Order float64
		Steps                           int64
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if math.Abs(got.Epsilon-5.632010670081592) > 1e-9 || got.Order != 4.7 || got.Steps != 10000 {
		t.Errorf("fedguard privacy epsilon --json = %+v, want epsilon 5.632010670081592 at order 4.7", got)
	}

	_, errOut, err := runFedguard(t, 30*time.Second, "privacy", "epsilon", "--q", "1.5", "--sigma", "1.1", "--steps", "10", "--delta", "1e-5")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("fedguard privacy epsilon --q 1.5: err = %v, want exit code 2", err)
	}
	if !strings.Contains(errOut, "-q 1.5") {
		t.Errorf("stderr %q does not name the bad flag", errOut)
	}
}
