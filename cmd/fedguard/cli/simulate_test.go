package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wdbcArgs is a small simulation that runs in well under a second.
var wdbcArgs = []string{"--dataset", "wdbc", "--model", "logreg", "--clients", "7", "--rounds", "3", "--seed", "3"}

func TestSimulateJSON(t *testing.T) {
	out := t.TempDir()
	args := append([]string{"simulate", "--json", "--out", out, "--byzantine", "1", "--attack", "backdoor", "--target", "1", "--rule", "median"}, wdbcArgs...)
	code, stdout, stderr := caRun(t, args...)
	if code != 0 {
		t.Fatalf("simulate = %d, stderr %s", code, stderr)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("simulate --json printed %d lines, want 3 rounds and a summary:\n%s", len(lines), stdout)
	}
	for i, m := range lines[:3] {
		if m["round"] != float64(i+1) {
			t.Errorf("line %d: round %v, want %d", i, m["round"], i+1)
		}
		for _, k := range []string{"accuracy", "loss", "attack_success", "seconds"} {
			if _, ok := m[k].(float64); !ok {
				t.Errorf("line %d: %q = %v, want a number", i, k, m[k])
			}
		}
	}
	sum, ok := lines[3]["summary"].(map[string]any)
	if !ok {
		t.Fatalf("last line %v, want {\"summary\": {...}}", lines[3])
	}
	for _, k := range []string{"final_accuracy", "final_attack_success", "seconds"} {
		if _, ok := sum[k].(float64); !ok {
			t.Errorf("summary %q = %v, want a number", k, sum[k])
		}
	}
	rule := sum["options"].(map[string]any)["aggregation"].(map[string]any)
	if rule["rule"] != "median" || rule["f"] != 1.0 {
		t.Errorf("summary rule %v, want median with f = 1 (the Byzantine count)", rule)
	}
	for _, f := range []string{"result.json", "rounds.csv", "accuracy-backdoor.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("--out: %s: %v", f, err)
		}
	}
}

func TestSimulateTable(t *testing.T) {
	code, stdout, stderr := caRun(t, append([]string{"simulate"}, wdbcArgs...)...)
	if code != 0 || !strings.Contains(stdout, "round  accuracy") || !strings.Contains(stdout, "final: accuracy") {
		t.Errorf("simulate = %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestSimulateSecure runs `simulate --secure --bucket 2`: the layout and
// the anomaly flags are printed, and a secure run whose rule cannot take
// the buckets is a usage error.
func TestSimulateSecure(t *testing.T) {
	args := append(append([]string{"simulate"}, wdbcArgs...), "--clients", "8", "--byzantine", "1", "--attack", "gaussian",
		"--rule", "median", "--secure", "--bucket", "2")
	code, stdout, stderr := caRun(t, args...)
	// No norm or cosine flag: the coordinator sees no single update.
	if code != 0 || !strings.Contains(stdout, "secure: 4 buckets (size 2), coordinate clip 1,") ||
		!strings.Contains(stdout, "norm 0.00/0.00, cosine 0.00/0.00") {
		t.Errorf("simulate --secure = %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, _, stderr = caRun(t, append(args, "--f", "2")...)
	if code != 2 || !strings.Contains(stderr, "4 secure buckets") {
		t.Errorf("simulate --secure --f 2 over 4 buckets = %d, stderr %q; want 2 and the buckets named", code, stderr)
	}
}

// TestSimulateDPMechanisms runs `simulate -dp-mechanism M -dp-epsilon 40`
// with each federation-level mechanism: the summary names the mechanism
// and the federation's ε (not "record-level DP-SGD", which it printed for
// every mechanism before), and central DP with a robust rule is a usage
// error.
func TestSimulateDPMechanisms(t *testing.T) {
	for mech, want := range map[string]string{
		"":                              "record-level DP-SGD: ε = ",
		"central-gaussian":              "central DP (central-gaussian): the federation's ε = ",
		"distributed-discrete-gaussian": "distributed DP (distributed-discrete-gaussian): the federation's ε = ",
	} {
		args := append(append([]string{"simulate"}, wdbcArgs...), "--clients", "4", "--dp-epsilon", "40")
		if mech != "" {
			args = append(args, "-dp-mechanism", mech)
		}
		code, stdout, stderr := caRun(t, args...)
		if code != 0 || !strings.Contains(stdout, want) || (mech != "" && strings.Contains(stdout, "record-level")) {
			t.Errorf("simulate -dp-mechanism %q = %d, want the summary %q\nstdout:\n%s\nstderr:\n%s", mech, code, want, stdout, stderr)
		}
	}
	args := append(append([]string{"simulate"}, wdbcArgs...), "--dp-epsilon", "8", "-dp-mechanism", "central-gaussian", "--rule", "median")
	if code, _, stderr := caRun(t, args...); code != 2 || !strings.Contains(stderr, "must be fedavg") {
		t.Errorf("central DP with the median = %d, stderr %q; want a usage error", code, stderr)
	}
}

func TestSimulateUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--attack", "nope", "--byzantine", "1"}, `unknown attack "nope"`},
		{[]string{"--rule", "krum", "--f", "3"}, "krum"},
		{[]string{"--rule", "bulyan", "--byzantine", "2"}, "bulyan"},
		{[]string{"--byzantine", "7"}, "byzantine 7"},
		{[]string{"--attack", "alie", "--byzantine", "1", "--sigma", "3"}, "sigma is not a parameter of alie"},
		{[]string{"--hidden", "x"}, "-hidden"},
		{[]string{"--dataset", "cifar"}, "unknown dataset"},
		{[]string{"grid", "--attacks", "none,nope", "--rules", "fedavg"}, `unknown attack "nope"`},
		{[]string{"grid", "--rules", "krum,bulyan", "--attacks", "none", "--byzantine", "2"}, "rule bulyan"},
		{[]string{"grid", "--rule", "krum"}, "-rules"},
	} {
		args := append(append([]string{"simulate"}, wdbcArgs...), tc.args...)
		if tc.args[0] == "grid" {
			args = append(append([]string{"simulate", "grid"}, wdbcArgs...), tc.args[1:]...)
		}
		code, _, stderr := caRun(t, args...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("fedguard %s = %d, stderr %q; want 2 and %q", strings.Join(args, " "), code, stderr, tc.msg)
		}
	}
}

func TestSimulateGrid(t *testing.T) {
	out := t.TempDir()
	args := append([]string{"simulate", "grid", "--attacks", "sign-flip,gaussian", "--rules", "fedavg,trimmed-mean",
		"--byzantine", "1", "--sigma", "2", "--out", out}, wdbcArgs...)
	code, stdout, stderr := caRun(t, args...)
	if code != 0 {
		t.Fatalf("simulate grid = %d, stderr %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "attack \\ rule") || !strings.Contains(lines[0], "trimmed-mean") ||
		!strings.HasPrefix(lines[1], "sign-flip") || !strings.HasPrefix(lines[2], "gaussian") {
		t.Errorf("simulate grid table:\n%s", stdout)
	}
	if !strings.Contains(stderr, "run 4/4") {
		t.Errorf("simulate grid progress:\n%s", stderr)
	}
	for _, f := range []string{"grid.csv", "heatmap.png", "accuracy-sign-flip.png", "accuracy-gaussian.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("--out: %s: %v", f, err)
		}
	}
}

// TestSimulatePreset checks that a preset sets the options and the flags
// given override it.
func TestSimulatePreset(t *testing.T) {
	args := []string{"simulate", "--json", "--preset", "karimireddy2022-mnist", "--dataset", "wdbc", "--model", "logreg",
		"--clients", "10", "--byzantine", "2", "--rounds", "4", "--lr", "0.05"}
	code, stdout, stderr := caRun(t, args...)
	if code != 0 {
		t.Fatalf("simulate --preset = %d, stderr %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var last map[string]map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("summary %q: %v", lines[len(lines)-1], err)
	}
	o := last["summary"]["options"].(map[string]any)
	for k, want := range map[string]any{
		"preset": "karimireddy2022-mnist", "worker_momentum": 0.9, "momentum_style": "heavy-ball", "local_steps": 1.0,
		"clipping_center": "previous", "partition": "sorted", "partition_honest": true, "batch_size": 32.0, "init": "pytorch",
		"clients": 10.0, "byzantine": 2.0, "rounds": 4.0, "learning_rate": 0.05, "dataset": "wdbc",
	} {
		if o[k] != want {
			t.Errorf("options %s = %v, want %v", k, o[k], want)
		}
	}
	atk := o["attack"].(map[string]any)
	// z is left to the run's n and f (10 and 2 here), not the preset's 25 and 5.
	if atk["name"] != "alie" || atk["z"] != nil || atk["z_rule"] != "bucketing" || atk["z_sign"] != "gradients" || atk["honest_stats"] != true {
		t.Errorf("attack %v, want the preset's first: alie, z of the bucketing code's formula for the run's n and f, in gradient space, honest statistics", atk)
	}
	if code, _, stderr := caRun(t, "simulate", "--preset", "nope"); code != 2 || !strings.Contains(stderr, "karimireddy2022-mnist") {
		t.Errorf("unknown preset: exit %d, stderr %s; want 2 and the known names", code, stderr)
	}
}

// TestSimulateGridShards checks that a grid split into 4 shards and
// merged gives the same grid.csv, plots and table as the whole run, byte
// for byte, and that merge refuses an incomplete or repeated set.
func TestSimulateGridShards(t *testing.T) {
	grid := append([]string{"simulate", "grid", "--attacks", "none,sign-flip,gaussian", "--rules", "fedavg,median",
		"--byzantine", "1", "--sigma", "2", "--bucket", "2", "--eval-every", "2", "--worker-momentum", "0.5"}, wdbcArgs...)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole")
	code, wholeOut, stderr := caRun(t, append(grid, "--out", whole)...)
	if code != 0 {
		t.Fatalf("simulate grid = %d, stderr %s", code, stderr)
	}
	var shards []string
	for k := 1; k <= 4; k++ {
		sd := filepath.Join(dir, fmt.Sprintf("shard%d", k))
		code, _, stderr := caRun(t, append(grid, "--out", sd, "--shard", fmt.Sprintf("%d/4", k))...)
		if code != 0 {
			t.Fatalf("simulate grid --shard %d/4 = %d, stderr %s", k, code, stderr)
		}
		if _, err := os.Stat(filepath.Join(sd, "grid.csv")); err == nil {
			t.Errorf("shard %d/4 wrote grid.csv: only a whole grid or a merge should", k)
		}
		shards = append(shards, sd)
	}
	merged := filepath.Join(dir, "merged")
	// In another order than the shards' numbers.
	code, mergedOut, stderr := caRun(t, "simulate", "merge", "--out", merged, shards[2], shards[0], filepath.Join(shards[3], "grid.json"), shards[1])
	if code != 0 {
		t.Fatalf("simulate merge = %d, stderr %s", code, stderr)
	}
	table := func(s string) string { return s[:strings.LastIndex(strings.TrimRight(s, "\n"), "\n")] }
	if table(wholeOut) != table(mergedOut) {
		t.Errorf("merged table:\n%s\nwant the whole run's:\n%s", mergedOut, wholeOut)
	}
	files, _ := filepath.Glob(filepath.Join(whole, "*"))
	for _, f := range files {
		name := filepath.Base(f)
		if name == "grid.json" || name == "timing.csv" { // they hold wall times
			continue
		}
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(merged, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("merged %s differs from the whole run's (%v)", name, err)
		}
	}
	if len(files) < 6 {
		t.Errorf("whole run wrote %v, want grid.csv, grid.json, timing.csv, heatmap.png and 3 accuracy plots", files)
	}
	for _, bad := range [][]string{
		{shards[0], shards[1], shards[2]},
		{shards[0], shards[1], shards[2], shards[2]},
		{shards[0], shards[1], shards[2], whole},
	} {
		if code, _, _ := caRun(t, append([]string{"simulate", "merge", "--out", filepath.Join(dir, "bad")}, bad...)...); code == 0 {
			t.Errorf("simulate merge %v succeeded, want a refusal", bad)
		}
	}
}

// TestSimulateFinalRounds: the summary line counts rounds, not
// evaluations. With --eval-every it said "after 2 rounds" for a 4-round
// run (and "after 20 rounds" for the 600-round presets).
func TestSimulateFinalRounds(t *testing.T) {
	args := append([]string{"simulate"}, wdbcArgs...)
	args = append(args, "--rounds", "4", "--eval-every", "2")
	code, stdout, stderr := caRun(t, args...)
	if code != 0 {
		t.Fatalf("simulate = %d, stderr %s", code, stderr)
	}
	if !strings.Contains(stdout, " after 4 rounds (") {
		t.Errorf("summary does not say 4 rounds:\n%s", stdout)
	}
}
