package participant

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/privacy"
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
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":1,"sigma":1e-300,"steps":1}]}`))
	f.Add([]byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":1,"sigma":0.5,"steps":9223372036854775807}]}`))
	f.Add([]byte(`{"version":1,"events":[],"extra":1}`))
	f.Add([]byte(`{"version":1,"events":[]} {}`))
	f.Add([]byte{})
	f.Add([]byte(`{"version":1,"events":[],"distributed":[{"round":2,"attempt":0,"sigma":4096,"clients":7,"dim":65536,"l2":1100.5,"steps":1}]}`))
	f.Add([]byte(`{"version":1,"events":[],"distributed":[{"round":2,"attempt":0,"sigma":0.2,"clients":7,"dim":65536,"l2":1100.5,"steps":1}]}`))
	f.Add([]byte(`{"version":1,"events":[],"distributed":[{"round":2,"attempt":0,"sigma":40,"clients":7,"dim":64,"l2":11,"steps":3}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := parseLedger(b)
		if err != nil {
			return
		}
		evs := rec.Events
		for i, e := range evs {
			if e.Validate() != nil || e.Round == 0 || math.IsNaN(e.Q) {
				t.Fatalf("accepted invalid event %d: %+v", i, e)
			}
		}
		for i, e := range rec.Distributed {
			if e.Validate() != nil || e.Round == 0 || e.Steps != 1 {
				t.Fatalf("accepted invalid distributed event %d: %+v", i, e)
			}
		}
		if len(evs) > 0 && len(evs) <= 64 {
			// An unbounded ε is a clear error, never +Inf or NaN; the
			// ledger the agent keeps (its composition, built event by
			// event as rounds are recorded) says the same as the
			// accountant from scratch, bit for bit.
			eps, err := ledgerEpsilon(evs, DefaultDPDelta)
			if err != nil && !errors.Is(err, errUnboundedEpsilon) {
				t.Fatalf("accepted ledger has no ε: %v", err)
			} else if err == nil && (math.IsInf(eps, 0) || math.IsNaN(eps) || eps < 0) {
				t.Fatalf("accepted ledger has ε %v", eps)
			}
			comp, cerr := privacy.NewComposition(privacy.DefaultOrders())
			if cerr != nil {
				t.Fatal(cerr)
			}
			l := &dpLedger{delta: DefaultDPDelta, comp: comp}
			for _, e := range evs {
				if err := comp.Add(e.Event); err != nil {
					t.Fatalf("composition refuses accepted event %+v: %v", e, err)
				}
			}
			kept, kerr := l.epsilonWith()
			if math.Float64bits(kept) != math.Float64bits(eps) || errors.Is(kerr, errUnboundedEpsilon) != errors.Is(err, errUnboundedEpsilon) {
				t.Fatalf("kept composition: ε %v (%v), from scratch %v (%v)", kept, kerr, eps, err)
			}
		}
		if len(rec.Distributed) > 0 && len(rec.Distributed) <= 64 {
			if _, err := distributedEpsilon(rec.Distributed, DefaultDPDelta); err != nil {
				t.Fatalf("accepted distributed ledger has no ε: %v", err)
			}
		}
		path := filepath.Join(t.TempDir(), "l.json")
		if err := saveLedger(path, rec); err != nil {
			t.Fatalf("save accepted ledger: %v", err)
		}
		back, err := loadLedger(path)
		if err != nil {
			t.Fatalf("load saved ledger: %v", err)
		}
		if len(evs) == 0 && len(back.Events) == 0 && len(rec.Distributed) == 0 && len(back.Distributed) == 0 {
			return
		}
		if !reflect.DeepEqual(evs, back.Events) && (len(evs) > 0 || len(back.Events) > 0) {
			t.Fatalf("round trip changed the ledger:\n%+v\n%+v", evs, back.Events)
		}
		if !reflect.DeepEqual(rec.Distributed, back.Distributed) && (len(rec.Distributed) > 0 || len(back.Distributed) > 0) {
			t.Fatalf("round trip changed the distributed ledger:\n%+v\n%+v", rec.Distributed, back.Distributed)
		}
	})
}

// TestLedgerBounds: a ledger larger than its bounds is refused on reading
// and never written.
func TestLedgerBounds(t *testing.T) {
	t.Parallel()
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
	if err := saveLedger(path, ledgerRecord{Events: evs}); err == nil {
		t.Error("saved a ledger of more than maxLedgerEvents events")
	}
	dev := `{"round":1,"attempt":0,"sigma":40,"clients":7,"dim":64,"l2":11,"steps":1}`
	manyD := `{"version":1,"events":[],"distributed":[` + strings.Repeat(dev+",", maxDistributedEvents) + dev + `]}`
	if _, err := parseLedger([]byte(manyD)); err == nil {
		t.Error("parsed a ledger of more than maxDistributedEvents distributed events")
	}
	if err := saveLedger(path, ledgerRecord{Distributed: make([]DistributedLedgerEvent, maxDistributedEvents+1)}); err == nil {
		t.Error("saved a ledger of more than maxDistributedEvents distributed events")
	}
	full := ledgerRecord{Events: make([]LedgerEvent, maxLedgerEvents), Distributed: make([]DistributedLedgerEvent, maxDistributedEvents)}
	for i := range full.Events {
		full.Events[i] = LedgerEvent{Round: 99999, Attempt: 999, Event: privacy.Event{Q: 0.0123456789012345, Sigma: 1.123456789012345, Steps: 123456}}
	}
	for i := range full.Distributed {
		full.Distributed[i] = DistributedLedgerEvent{Round: 99999, Attempt: 999, DistributedDiscreteGaussian: privacy.DistributedDiscreteGaussian{
			Sigma: 12345.678901234567, Clients: 1000, Dim: 1 << 20, L2: 123456.78901234567, L1: 1234567.8901234567, Steps: 1}}
	}
	if err := saveLedger(path, full); err != nil {
		t.Fatal(err)
	}
	if _, err := loadLedger(path); err != nil {
		t.Errorf("a full ledger of realistic events does not load back: %v", err)
	}
}

// ledgerEpsilon is the ε at δ of the ledger's events composed from scratch
// (privacy.Epsilon), with the agent's rule that an unbounded one is an
// error wrapping errUnboundedEpsilon: the reference for dpLedger's kept
// composition.
func ledgerEpsilon(evs []LedgerEvent, delta float64) (float64, error) {
	eps, err := composedEpsilon(evs, delta, func(e LedgerEvent) privacy.Event { return e.Event }, privacy.Epsilon)
	if err == nil && (math.IsInf(eps, 0) || math.IsNaN(eps)) {
		return 0, fmt.Errorf("ε at δ = %g is %v: %w", delta, eps, errUnboundedEpsilon)
	}
	return eps, err
}
