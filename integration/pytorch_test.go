package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/demo"
)

// needTorch skips the test unless demo.DefaultPython imports torch and
// numpy; in CI (CI set), which installs them (.ci/run), it fails instead.
func needTorch(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := demo.CheckPython(ctx, demo.DefaultPython)
	if err == nil {
		return
	}
	if !errors.Is(err, demo.ErrNoTorch) {
		t.Fatal(err)
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("%v (.ci/run installs them)", err)
	}
	t.Skip(err)
}

// TestDemoPyTorch runs `fedguard demo --trainer pytorch` as a user would:
// three hospitals with a non-IID (Dirichlet) split of MNIST, each agent
// running examples/pytorch/train.py in a real /usr/bin/python3 process
// through the exec contract, its code approved by digest, over mutual TLS.
// It checks the accuracy a few rounds reach, that every hospital took part
// in every round, that the audit log verifies and holds no refused
// manifest, and that every round's model exports and verifies as
// safetensors against its signed manifest.
func TestDemoPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python training processes for minutes")
	}
	needTorch(t)
	for _, tc := range []struct {
		name   string
		args   []string
		rounds int
		// min is below the test accuracy the rounds reach with seed 1
		// (measured with the CNN: median 0.9759 after 2 rounds, secure
		// fedavg 0.9489 after 1; with the earlier MLP 0.948 and 0.911), by
		// a margin for other machines' float rounding. The thresholds were
		// kept as they were for the MLP.
		min float64
	}{
		{"median", []string{"--rule", "median"}, 2, 0.90},
		{"secure", []string{"--secure"}, 1, 0.85},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fed")
			args := append([]string{"demo", "--trainer", "pytorch", "--json", "--dir", dir, "--rounds", fmt.Sprint(tc.rounds)}, tc.args...)
			out, errOut, err := runFedguard(t, 10*time.Minute, args...)
			if err != nil {
				t.Fatalf("fedguard %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
			}
			recs := jsonLines(t, out)
			if len(recs) != tc.rounds+1 {
				t.Fatalf("printed %d JSON lines, want %d rounds + 1 summary:\n%s", len(recs), tc.rounds, out)
			}
			for i, r := range recs[:tc.rounds] {
				if got := r["participants"]; got != float64(demo.DefaultPyTorchHospitals) {
					t.Errorf("round %d: participants = %v, want %d", i+1, got, demo.DefaultPyTorchHospitals)
				}
			}
			sum, ok := recs[tc.rounds]["summary"].(map[string]any)
			if !ok {
				t.Fatalf("last line = %v, want {\"summary\": {...}}", recs[tc.rounds])
			}
			acc, _ := sum["final_accuracy"].(float64)
			t.Logf("%s: test accuracy %.4f after %d rounds, %.1f s", tc.name, acc, tc.rounds, sum["seconds"])
			if acc < tc.min {
				t.Errorf("final_accuracy = %v after %d rounds, want >= %v", acc, tc.rounds, tc.min)
			}

			data := filepath.Join(dir, "coordinator", "data")
			checkAuditTrail(t, data, tc.rounds)
			_, _, lines := exportAudit(t, data)
			for _, l := range lines {
				if strings.Contains(l.Kind, "refus") {
					t.Errorf("audit log has a %s event: a hospital refused a manifest or its trainer", l.Kind)
				}
			}
			pub := filepath.Join(data, "signing.pub")
			for r := 1; r <= tc.rounds; r++ {
				mustFedguard(t, "model", "export", "--data-dir", data, "--round", fmt.Sprint(r), "--out", dir)
				st := filepath.Join(dir, fmt.Sprintf("%s-model-round-%06d.safetensors", demo.Federation, r))
				out := mustFedguard(t, "model", "verify", "--model", st, "--manifest", st+".manifest.json", "--key", pub, "--federation", demo.Federation)
				if !strings.Contains(out, "verified: ") || !strings.Contains(out, fmt.Sprintf("round %d", r)) {
					t.Errorf("model verify of round %d printed %q", r, out)
				}
			}
		})
	}
}
