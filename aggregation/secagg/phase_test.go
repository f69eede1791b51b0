package secagg

import (
	"regexp"
	"testing"
)

// TestPhases checks the one list of rounds: in protocol order, each named
// once, String and ParsePhase inverse, labels snake case, and anything
// outside the list named so that it cannot pass for a round.
func TestPhases(t *testing.T) {
	want := []Phase{PhaseAdvertiseKeys, PhaseShareKeys, PhaseMaskedInput, PhaseConsistencyCheck, PhaseUnmasking}
	got := Phases()
	if len(got) != len(want) {
		t.Fatalf("Phases() = %v, want %v", got, want)
	}
	label := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	names, labels := map[string]bool{}, map[string]bool{}
	for i, p := range got {
		if p != want[i] {
			t.Errorf("Phases()[%d] = %d, want %d", i, p, want[i])
		}
		if names[p.String()] || labels[p.Label()] {
			t.Errorf("%v: name %q or label %q used twice", p, p.String(), p.Label())
		}
		names[p.String()], labels[p.Label()] = true, true
		if back, ok := ParsePhase(p.String()); !ok || back != p {
			t.Errorf("ParsePhase(%q) = %v, %t; want %v", p.String(), back, ok, p)
		}
		if !label.MatchString(p.Label()) {
			t.Errorf("%v.Label() = %q, want snake case", p, p.Label())
		}
	}
	for _, p := range []Phase{0, -1, PhaseUnmasking + 1} {
		if p.Label() != "other" {
			t.Errorf("Phase(%d).Label() = %q, want other", int(p), p.Label())
		}
		if _, ok := ParsePhase(p.String()); ok {
			t.Errorf("ParsePhase(%q) found a round", p.String())
		}
	}
	for _, s := range []string{"", "advertise_keys", "Masked", "MaskedInput "} {
		if p, ok := ParsePhase(s); ok {
			t.Errorf("ParsePhase(%q) = %v, want none", s, p)
		}
	}
}
