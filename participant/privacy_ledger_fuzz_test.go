package participant

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseLedger feeds arbitrary privacy ledger files to the parser: it
// must never panic, everything it accepts must be events the accountant
// is defined on (so the ε of a ledger that loads is always computable),
// and what it accepts must save and load back as the same events.
func FuzzParseLedger(f *testing.F) {
	f.Add([]byte(`{"version":1,"events":[]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":0.01,"sigma":1.1,"steps":300}]}` + "\n"))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":0.01,"sigma":1.1,"steps":300},{"round":2,"attempt":3,"q":1,"sigma":10,"steps":1}]}`))
	f.Add([]byte(`{"version":2,"events":[]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":0,"attempt":1,"q":0.01,"sigma":1.1,"steps":300}]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":0,"sigma":1.1,"steps":300}]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":0.5,"sigma":-1,"steps":-3}]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":0.5,"sigma":1e400,"steps":3}]}`))
	f.Add([]byte(`{"version":1,"events":[],"extra":1}`))
	f.Add([]byte(`{"version":1,"events":[]} {}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := parseLedger(b)
		if err != nil {
			return
		}
		for i, e := range evs {
			if e.Validate() != nil || e.Round == 0 || math.IsNaN(e.Q) {
				t.Fatalf("accepted invalid event %d: %+v", i, e)
			}
		}
		if len(evs) > 0 && len(evs) <= 64 {
			if _, err := ledgerEpsilon(evs, DefaultDPDelta); err != nil {
				t.Fatalf("accepted ledger has no ε: %v", err)
			}
		}
		path := filepath.Join(t.TempDir(), "l.json")
		if err := saveLedger(path, evs); err != nil {
			t.Fatalf("save accepted ledger: %v", err)
		}
		back, err := loadLedger(path)
		if err != nil {
			t.Fatalf("load saved ledger: %v", err)
		}
		if len(evs) == 0 && len(back) == 0 {
			return
		}
		if !reflect.DeepEqual(evs, back) {
			t.Fatalf("round trip changed the ledger:\n%+v\n%+v", evs, back)
		}
	})
}

// TestLedgerBounds: a ledger larger than its bounds is refused on reading
// and never written.
func TestLedgerBounds(t *testing.T) {
	ev := `{"round":1,"attempt":1,"q":0.5,"sigma":1,"steps":1}`
	many := `{"version":1,"events":[` + strings.Repeat(ev+",", maxLedgerEvents) + ev + `]}`
	if _, err := parseLedger([]byte(many)); err == nil {
		t.Error("parsed a ledger of more than maxLedgerEvents events")
	}
	if _, err := parseLedger(make([]byte, maxLedgerFileSize+1)); err == nil {
		t.Error("parsed a ledger larger than maxLedgerFileSize")
	}
	evs := make([]LedgerEvent, maxLedgerEvents+1)
	path := filepath.Join(t.TempDir(), "l.json")
	if err := saveLedger(path, evs); err == nil {
		t.Error("saved a ledger of more than maxLedgerEvents events")
	}
}
