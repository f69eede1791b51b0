package simulation

import (
	"errors"
	"testing"
)

// TestPresetsValid checks every preset's every cell passes validation, so
// `fedguard simulate grid --preset NAME` cannot fail on its own options.
func TestPresetsValid(t *testing.T) {
	if len(PresetNames()) < 2 {
		t.Fatalf("presets %v, want at least two", PresetNames())
	}
	for _, name := range PresetNames() {
		p, err := LookupPreset(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Options.Preset != name || len(p.Attacks) == 0 || len(p.Rules) == 0 || p.Paper == "" || p.Source == "" {
			t.Errorf("preset %s incomplete: %+v", name, p)
		}
		for _, a := range p.Attacks {
			for _, r := range p.Rules {
				o := p.Options
				o.Attack, o.Aggregation = a, r
				if _, err := check(o); err != nil {
					t.Errorf("preset %s, %s × %s: %v", name, AttackLabel(a), RuleLabel(r), err)
				}
			}
		}
		p.Rules[0].Rule = "changed" // a copy: the registry must not change
		if Presets[name].Rules[0].Rule == "changed" {
			t.Errorf("LookupPreset(%s) shares its rules with the registry", name)
		}
	}
	if _, err := LookupPreset("nope"); !errors.Is(err, ErrOptions) {
		t.Errorf("LookupPreset(nope) = %v, want ErrOptions", err)
	}
}

// TestPartitionHonest checks that with PartitionHonest the honest clients
// share every training row once, sorted by label, and the Byzantine ones
// get IID shares.
func TestPartitionHonest(t *testing.T) {
	o := wdbcOptions()
	o.Clients, o.Byzantine, o.Partition, o.PartitionHonest = 6, 2, "sorted", true
	c, err := check(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := load(c.o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := setup(c, d)
	if err != nil {
		t.Fatal(err)
	}
	rows, labels := 0, map[int]int{}
	for i := range o.Clients {
		if s.byz[i] {
			if len(s.clientY[i]) == 0 {
				t.Errorf("Byzantine client %d has no rows", i)
			}
			continue
		}
		rows += len(s.clientY[i])
		for _, y := range s.clientY[i] {
			labels[y]++
		}
	}
	if rows != len(d.trainY) {
		t.Errorf("honest clients hold %d rows, want all %d", rows, len(d.trainY))
	}
	for y, n := range labels {
		want := 0
		for _, v := range d.trainY {
			if v == y {
				want++
			}
		}
		if n != want {
			t.Errorf("label %d: honest clients hold %d rows, want %d", y, n, want)
		}
	}
}
