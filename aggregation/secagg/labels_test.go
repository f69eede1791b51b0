package secagg

import "testing"

// TestPhaseLabels: every phase has its own metric label, in protocol
// order, and anything else is "other", so the label set stays bounded.
func TestPhaseLabels(t *testing.T) {
	want := []string{"advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking"}
	ps := Phases()
	if len(ps) != len(want) {
		t.Fatalf("Phases() has %d phases, want %d", len(ps), len(want))
	}
	for i, p := range ps {
		if got := PhaseLabel(p); got != want[i] {
			t.Errorf("PhaseLabel(%v) = %q, want %q", p, got, want[i])
		}
	}
	for _, p := range []Phase{0, PhaseUnmasking + 1} {
		if got := PhaseLabel(p); got != "other" {
			t.Errorf("PhaseLabel(%d) = %q, want other", int(p), got)
		}
	}
}
