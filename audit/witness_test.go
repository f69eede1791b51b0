package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestVerifyWitnessed checks exports against witnessed checkpoints: the
// whole log and any prefix-extending export pass; one cut back below a
// witness, one that forks from it, or one of another log fail with a
// *WitnessError naming the witness.
func TestVerifyWitnessed(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "witness")
	full := newExportBuilder(t, testOrigin, signer)
	for i := range 30 {
		full.add(synthEntry(i))
		if i == 9 || i == 19 || i == 29 {
			full.checkpoint()
		}
	}
	// The same first 15 events, then others: a fork after event 14.
	fork := newExportBuilder(t, testOrigin, signer)
	for i := range 30 {
		e := synthEntry(i)
		if i >= 15 {
			e = synthEntry(i + 100)
		}
		fork.add(e)
		if i == 9 || i == 29 {
			fork.checkpoint()
		}
	}
	short := newExportBuilder(t, testOrigin, signer)
	for i := range 10 {
		short.add(synthEntry(i))
	}
	short.checkpoint()
	w := func(name string, cp Checkpoint) Witnessed {
		return Witnessed{Witness: name, Origin: cp.Origin, Size: cp.Size, Root: cp.Root}
	}
	at10, at20, at30 := w("hospital-a", full.cps[0]), w("hospital-b", full.cps[1]), w("hospital-c", full.cps[2])
	other := at10
	other.Origin = "fedguard/another"
	for _, tc := range []struct {
		name      string
		export    []byte
		witnessed []Witnessed
		witness   string // "" means Verify passes
		cutBack   bool
		reason    string
	}{
		{"full, all witnesses", full.export(), []Witnessed{at10, at20, at30}, "", false, ""},
		{"no witness", short.export(), nil, "", false, ""},
		{"cut back to a witness", short.export(), []Witnessed{at10}, "", false, ""},
		{"cut back below a witness", short.export(), []Witnessed{at10, at20}, "hospital-b", true, "it saw a signed checkpoint of 20 events, the export holds only 10"},
		{"fork after a witness", fork.export(), []Witnessed{at10}, "", false, ""},
		{"fork before a witness", fork.export(), []Witnessed{at10, at20}, "hospital-b", false, "forks from the witnessed one"},
		{"fork, same size as the witness", fork.export(), []Witnessed{at30}, "hospital-c", false, "it saw a signed checkpoint of 30 events whose root is not the export's"},
		{"another log", full.export(), []Witnessed{other}, "hospital-a", false, `it saw the log "fedguard/another"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.export), VerifyOptions{Verifiers: verifiers, Witnessed: tc.witnessed})
			if tc.witness == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			var we *WitnessError
			if !errors.As(err, &we) || we.Witness != tc.witness || we.CutBack != tc.cutBack || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Verify = %v, want a *WitnessError of %s (cut back %v) saying %q", err, tc.witness, tc.cutBack, tc.reason)
			}
		})
	}
}

// TestVerifyOnEvent: OnEvent sees every event in order, and its error
// stops Verify.
func TestVerifyOnEvent(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "onevent")
	data := buildExport(t, signer, 12, 12)
	var seqs []uint64
	if _, err := Verify(bytes.NewReader(data), VerifyOptions{Verifiers: verifiers, OnEvent: func(e Event) error {
		seqs = append(seqs, e.Seq)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 12 || seqs[0] != 0 || seqs[11] != 11 {
		t.Errorf("OnEvent saw %v, want events 0..11", seqs)
	}
	stop := errors.New("enough")
	if _, err := Verify(bytes.NewReader(data), VerifyOptions{Verifiers: verifiers, OnEvent: func(e Event) error {
		if e.Seq == 3 {
			return stop
		}
		return nil
	}}); !errors.Is(err, stop) {
		t.Errorf("Verify with a failing OnEvent = %v, want %v", err, stop)
	}
}
