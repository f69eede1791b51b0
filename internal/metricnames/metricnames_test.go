package metricnames

import "testing"

func TestResolve(t *testing.T) {
	e := Exported{"fedguard_round": "GAUGE", "fedguard_round_duration_seconds": "HISTOGRAM", "fedguard_rounds_total": "COUNTER"}
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{"fedguard_round", "fedguard_round", true},
		{"fedguard_round_duration_seconds_bucket", "fedguard_round_duration_seconds", true},
		{"fedguard_round_duration_seconds_count", "fedguard_round_duration_seconds", true},
		{"fedguard_rounds_total_sum", "", false}, // a counter has no _sum series
		{"fedguard_round_bucket", "", false},     // nor a gauge a _bucket
		{"fedguard_missing", "", false},
	}
	for _, tt := range tests {
		if got, ok := e.Resolve(tt.ref); got != tt.want || ok != tt.ok {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.ref, got, ok, tt.want, tt.ok)
		}
	}
	if got := Ref.FindAllString(`rate(fedguard_rounds_total{job="x"}[5m]) / fedguard_round_`, -1); len(got) != 2 || got[1] != "fedguard_round" {
		t.Errorf("Ref found %q", got)
	}
}
