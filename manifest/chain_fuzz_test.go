package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzVerify feeds arbitrary envelopes to Verify, as a participant
// receives them from WaitRound and GetManifest. It must never panic;
// every refusal must be a *RefusalError with one of Reasons (what the
// participant reports to the coordinator, which refuses any other), and
// Extends must refuse a path made of what Verify accepts only with a
// *RefusalError as well. What it accepts is Open's result for this
// federation.
func FuzzVerify(f *testing.F) {
	s := testSigner(f)
	keys := s.Public()
	golden, genesis := addEnvelopeSeeds(f, s)
	other := genesisRound()
	other.Federation = "hospitals-us"
	foreign, _, err := Sign(s, other)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(foreign)
	f.Add(editEnvelope(f, golden, func(e map[string]any) { e["signatures"] = nil }))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"eyJwcmVkaWNhdGUiOnsicm91bmQiOjd9fQ==","signatures":[]}`))
	f.Add([]byte(``))
	gv, err := Verify(genesis, keys, "hospitals-eu")
	if err != nil {
		f.Fatal(err)
	}
	last := gv.Accepted()
	refusal := func(t *testing.T, fn string, err error) {
		t.Helper()
		var re *RefusalError
		if !errors.As(err, &re) {
			t.Fatalf("%s refused with %T %v, not a *RefusalError", fn, err, err)
		}
		if !slices.Contains(Reasons(), re.Reason) {
			t.Fatalf("%s refused with reason %q, not one of %v", fn, re.Reason, Reasons())
		}
	}
	f.Fuzz(func(t *testing.T, env []byte) {
		v, err := Verify(env, keys, "hospitals-eu")
		if err != nil {
			refusal(t, "Verify", err)
			return
		}
		r, digest, err := Open(env, keys)
		if err != nil || digest != v.Digest || r.Round != v.Round.Round || r.Federation != "hospitals-eu" {
			t.Fatalf("Verify accepted round %d (%x); Open: round %d of %q (%x), %v", v.Round.Round, v.Digest, r.Round, r.Federation, digest, err)
		}
		for _, tc := range []struct {
			last *Accepted
			path []Verified
		}{{nil, []Verified{v}}, {&last, []Verified{v}}, {&last, []Verified{gv, v}}} {
			if err := Extends(tc.last, tc.path); err != nil {
				refusal(t, "Extends", err)
			}
		}
	})
}

// FuzzLoadAccepted reads arbitrary bytes as the participant's record of
// the last accepted manifest (a state file on the hospital's disk). It
// must never panic, and what it accepts must save and load back the same.
func FuzzLoadAccepted(f *testing.F) {
	f.Add([]byte(`{"round":3,"digest":"` + sum("x") + `"}` + "\n"))
	f.Add([]byte(`{"round":3,"digest":"` + sum("x") + `","extra":1}`))
	f.Add([]byte(`{"round":-1,"digest":"AB"}`))
	f.Add([]byte(`{"round":3,"digest":"` + sum("x") + `"} {}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "accepted.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := LoadAccepted(path)
		if err != nil {
			return
		}
		if a == nil {
			t.Fatal("LoadAccepted of an existing file returned nothing and no error")
		}
		again := filepath.Join(dir, "again.json")
		if err := SaveAccepted(again, *a); err != nil {
			t.Fatalf("SaveAccepted of an accepted record %+v: %v", *a, err)
		}
		b, err := LoadAccepted(again)
		if err != nil || b == nil || *b != *a {
			t.Fatalf("round trip of %+v: %+v, %v", *a, b, err)
		}
	})
}
