package cli

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/simulation"
)

// TestSimulateParams pins how `simulate` and `simulate grid` turn their
// flags into each attack's and rule's configuration and apply a preset
// under the flags given: testdata/simulate/params.golden was written by the
// field-by-field code this package had before, and changes only where a
// preset does (session 6: the karimireddy2022 presets' init pytorch).
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
		{"--z", "0.5", "--z-sign", "gradients"},
		{"--preset", "karimireddy2022-mnist", "--z-sign", "updates", "--clients", "30"},
		// The preset starts as PyTorch does; --init glorot takes fedguard's start back.
		{"--preset", "karimireddy2022-mnist", "--init", "glorot"},
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
	want := golden.File(t, path, []byte(b.String()))
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

// TestSimulatePresetFlags: with -preset, the attack and rule parameter
// flags given apply to the preset's attack and rule, in a single run and in
// a grid. They were dropped before (the preset's attack and rule replaced
// the flags' whole), so `simulate --preset karimireddy2022-mnist --z -0.25`
// silently ran the preset's z.
func TestSimulatePresetFlags(t *testing.T) {
	f := newSimFlags(testEnv(), "simulate")
	f.fs.StringVar(&f.attack.Name, "attack", attack.NameNone, "")
	if err := f.parse([]string{"--preset", "karimireddy2022-mnist", "--z", "-0.25", "--bucket", "2", "--batch-order", "epoch:30"}); err != nil {
		t.Fatal(err)
	}
	o := f.single()
	if a := o.Attack; a.Name != attack.NameALIE || a.Z != -0.25 || !a.HonestStats {
		t.Errorf("attack %+v, want the preset's alie with z -0.25", a)
	}
	if r := o.Aggregation; r.Rule != aggregation.NameMedian || r.Bucket != 2 {
		t.Errorf("rule %+v, want the preset's median with bucket 2", r)
	}
	if o.Attack.ZSign != attack.ZSignGradients || o.Attack.ZRule != attack.ZRuleBucketing {
		t.Errorf("attack %+v, want the preset's gradient sign and bucketing z rule under -z", o.Attack)
	}
	if o.BatchOrder != "epoch:30" || o.Clients != 25 {
		t.Errorf("options batch order %q, %d clients: want epoch:30 and the preset's 25", o.BatchOrder, o.Clients)
	}

	// An attack or rule the preset's grid has is the grid's cell: naming
	// IPM and the bucketed median gives the preset's IPM (its ε and its
	// honest-only statistics), not a bare one, so that a single run
	// repeats the grid's cell. Before, it ran IPM without honest_stats and
	// the median with f = 5, and ended at 49.0 % where the cell ends at
	// 37.2 %.
	c := newSimFlags(testEnv(), "simulate")
	c.fs.StringVar(&c.attack.Name, "attack", attack.NameNone, "")
	if err := c.parse([]string{"--preset", "karimireddy2022-mnist", "--attack", "ipm", "--rule", "median", "--bucket", "2"}); err != nil {
		t.Fatal(err)
	}
	cell := c.single()
	if a := cell.Attack; a.Name != attack.NameIPM || a.Epsilon != 0.1 || !a.HonestStats {
		t.Errorf("attack %+v, want the preset's ipm (epsilon 0.1, honest stats)", a)
	}
	if r := cell.Aggregation; r.Rule != aggregation.NameMedian || r.Bucket != 2 || r.F != 0 {
		t.Errorf("rule %+v, want the preset's median with bucket 2 and no f", r)
	}

	g := newSimFlags(testEnv(), "simulate grid")
	attacks := g.fs.String("attacks", defaultGridAttacks, "")
	rules := g.fs.String("rules", defaultGridRules, "")
	if err := g.parse([]string{"--preset", "karimireddy2022-mnist", "--z", "-0.25", "--tau", "0.5"}); err != nil {
		t.Fatal(err)
	}
	acs, rcs := g.grid(*attacks, *rules)
	if len(acs) != 2 || acs[0].Z != -0.25 || acs[1].Z != 0 || acs[1].Epsilon != 0.1 {
		t.Errorf("grid attacks %+v, want the preset's with z -0.25 on alie only", acs)
	}
	clips := 0
	for _, r := range rcs {
		if r.Rule == aggregation.NameCenteredClipping {
			clips++
			if r.Tau != 0.5 || r.Iterations != 3 {
				t.Errorf("grid rule %+v, want the preset's centered clipping with tau 0.5", r)
			}
		} else if r.Tau != 0 {
			t.Errorf("grid rule %+v took centered clipping's tau", r)
		}
	}
	if len(rcs) != 8 || clips != 2 {
		t.Errorf("grid has %d rules (%d centered clipping), want the preset's 8 (2)", len(rcs), clips)
	}

	// A grid's -attacks and -rules of names the preset has are the
	// preset's cells of those names, as in a single run. Before, they were
	// bare defaults: `simulate grid --preset karimireddy2022-mnist
	// -attacks alie -rules rfa` ran an ALIE with the updates' sign and an
	// unbucketed RFA with default parameters, not the preset's cells.
	want, err := simulation.LookupPreset("karimireddy2022-mnist")
	if err != nil {
		t.Fatal(err)
	}
	h := newSimFlags(testEnv(), "simulate grid")
	attacks = h.fs.String("attacks", defaultGridAttacks, "")
	rules = h.fs.String("rules", defaultGridRules, "")
	if err := h.parse([]string{"--preset", "karimireddy2022-mnist", "-attacks", "alie,gaussian", "-rules", "rfa,trimmed-mean"}); err != nil {
		t.Fatal(err)
	}
	acs, rcs = h.grid(*attacks, *rules)
	var wantRFA []aggregation.Config
	for _, r := range want.Rules {
		if r.Rule == aggregation.NameRFA {
			wantRFA = append(wantRFA, r)
		}
	}
	if len(acs) != 2 || !reflect.DeepEqual(acs[0], want.Attacks[0]) || acs[0].Name != attack.NameALIE || acs[1].Name != attack.NameGaussian || acs[1].ZSign != "" {
		t.Errorf("grid attacks %+v, want the preset's alie %+v, then a default gaussian", acs, want.Attacks[0])
	}
	if len(wantRFA) == 0 || len(rcs) != len(wantRFA)+1 || !reflect.DeepEqual(rcs[:len(wantRFA)], wantRFA) || rcs[len(wantRFA)].Rule != aggregation.NameTrimmedMean {
		t.Errorf("grid rules %+v, want the preset's rfa cells %+v, then a default trimmed mean", rcs, wantRFA)
	}
}
