package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// TestSimulateParams pins how `simulate` and `simulate grid` turn their
// flags into each attack's and rule's configuration and apply a preset
// under the flags given: testdata/simulate/params.golden was written by the
// field-by-field code this package had before, and must not change.
func TestSimulateParams(t *testing.T) {
	lines := [][]string{
		nil,
		{"--byzantine", "3", "--clients", "10"},
		{"--sigma", "2.5", "--z", "1.25", "--z-rule", "bucketing", "--epsilon", "0.1", "--perturbation", "unit", "--scale", "7", "--target", "4", "--own-only", "--honest-stats"},
		{"--f", "2", "--m", "5", "--beta", "0.2", "--tau", "0.75", "--iterations", "4", "--norm-clip", "3.5", "--bucket", "2", "--clients", "9", "--byzantine", "1"},
		{"--bucket", "3", "--clients", "10", "--byzantine", "2", "--beta", "0.1"},
		{"--preset", "karimireddy2022-mnist"},
		{"--preset", "karimireddy2022-mnist", "--dataset", "wdbc", "--model", "logreg", "--rounds", "2", "--clients", "8", "--byzantine", "1",
			"--local-epochs", "2", "--lr", "0.05", "--batch-size", "16", "--l2", "0.001", "--seed", "7", "--mnist-dir", "/x", "--workers", "2",
			"--local-steps", "3", "--worker-momentum", "0.5", "--server-momentum", "0.25", "--momentum-style", "ema",
			"--clipping-center", "previous", "--eval-every", "2", "--partition", "sorted", "--partition-honest"},
		// Secure buckets are ⌊n/S⌋, not ⌈n/S⌉: the rules' defaults count them.
		{"--secure", "--secure-clip", "0.5", "--bucket", "2", "--clients", "25", "--byzantine", "5"},
	}
	attacks := append([]string{"nosuch"}, attack.Names...)
	rules := []string{aggregation.NameFedAvg, aggregation.NameMedian, aggregation.NameTrimmedMean, aggregation.NameKrum,
		aggregation.NameMultiKrum, aggregation.NameBulyan, aggregation.NameCenteredClipping, "nosuch"}
	var b strings.Builder
	for _, args := range lines {
		f := newSimFlags(testEnv(), "simulate")
		if err := f.parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		fmt.Fprintf(&b, "$ %s\noptions %+v\n", strings.Join(args, " "), f.o)
		for _, all := range []bool{true, false} {
			for _, a := range attacks {
				fmt.Fprintf(&b, "attack all=%v %+v\n", all, f.attackConfig(a, all))
			}
			for _, r := range rules {
				fmt.Fprintf(&b, "rule all=%v %+v\n", all, f.ruleConfig(r, all))
			}
		}
	}
	path := filepath.Join("testdata", "simulate", "params.golden")
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d:\ngot  %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}
