package participant_test

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// newSigner makes a fresh coordinator identity.
func newSigner(t *testing.T) *manifest.Signer {
	t.Helper()
	s, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rotation is a rotation from old to next, signed by both, taking effect
// after chain[after] of f; seq and previous as manifest.Rotation. f.mu
// must be held.
func (f *fakeCoordinator) rotation(old, next *manifest.Signer, seq uint64, previous string, after uint64) ([]byte, [32]byte) {
	env, d, err := manifest.SignRotation(old, next, manifest.Rotation{
		Federation: federation, Seq: seq, Previous: previous,
		AfterRound: after, AfterManifest: hex.EncodeToString(f.chain[after].digest[:]), Rotated: time.Now(),
	})
	if err != nil {
		f.t.Errorf("SignRotation = %v", err)
	}
	return env, d
}

// rotateAt makes f rotate from its keys to next when it signs the manifest
// of round at (the new keys' first), carrying the rotation that edit
// returns from the real one (nil edit: the real one).
func (f *fakeCoordinator) rotateAt(at uint64, next *manifest.Signer, seq uint64, previous string, edit func(env []byte) []byte) {
	prevRotate := f.rotate
	f.rotate = func(n uint64) []json.RawMessage {
		var carried []json.RawMessage
		if prevRotate != nil {
			carried = prevRotate(n)
		}
		if n != at {
			return carried
		}
		env, _ := f.rotation(f.signer, next, seq, previous, at-1)
		if edit != nil {
			env = edit(env)
		}
		f.signer = next
		return append(carried, env)
	}
}

// stateRotations reads the rotations recorded in an agent's state file.
func stateRotations(t *testing.T, path string) (round uint64, rotations []map[string]any) {
	t.Helper()
	st := readStateFile(t, path)
	return st.Round, st.Rotations
}

// TestKeyRotationFollowed: the coordinator rotates its keys after round 2;
// the agent, which pinned the old keys, follows the rotation carried by
// the manifest of round 3, records it in its state file, and after a
// restart (configured with the old keys still) verifies manifests signed
// by the new keys alone.
func TestKeyRotationFollowed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 4)
	oldKeys, oldSigner := fake.keys(), fake.signer
	next := newSigner(t)
	fake.mu.Lock()
	fake.rotateAt(3, next, 1, "", nil)
	fake.mu.Unlock()
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "accepted.json")

	a, logs := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
	if err := run(t, a, 20*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil: the agent must follow the rotation", err)
	}
	checkUpdates(t, fake, 4)
	round, rots := stateRotations(t, state)
	if round != 4 || len(rots) != 1 {
		t.Fatalf("state file at round %d with %d rotations, want round 4 (the final manifest) and 1 rotation", round, len(rots))
	}
	v, err := manifest.OpenRotation(mustCarried(t, fake.closed(3).env))
	if err != nil {
		t.Fatal(err)
	}
	d := v.Digest
	if rots[0]["old_fingerprint"] != oldKeys.Fingerprint() || rots[0]["new_fingerprint"] != next.Public().Fingerprint() ||
		rots[0]["sha256"] != hex.EncodeToString(d[:]) || rots[0]["at"] == "" {
		t.Errorf("state file rotation record = %v, want old %s, new %s, digest %x", rots[0], oldKeys.Fingerprint(), next.Public().Fingerprint(), d)
	}
	if !strings.Contains(logs.String(), "coordinator keys rotated") {
		t.Errorf("the agent did not log the rotation:\n%s", logs.String())
	}

	// A restarted agent, configured with the old keys, pins the new ones
	// from its state file: round 5 starts from manifest 4, signed by the
	// new keys and carrying no rotation.
	fake.mu.Lock()
	fake.rounds = 5
	fake.mu.Unlock()
	restarted, _ := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
	if err := run(t, restarted, 20*time.Second); err != nil {
		t.Fatalf("restarted agent: Run = %v, want nil", err)
	}
	checkUpdates(t, fake, 5)
	if _, refusals := fake.manifestLog(); len(refusals) != 0 {
		t.Errorf("refusals %v, want none", refusals)
	}

	// Rollback across the rotation: whoever still holds the old keys signs
	// a manifest of round 5 for the agent, which pinned the new keys.
	fake.mu.Lock()
	fake.rounds = 6
	fake.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
		asg.Manifest = resign(t, oldSigner, fake.chain[5].round, func(*manifest.Round) {})
		return asg
	}
	fake.mu.Unlock()
	rolled, logs := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
	err = run(t, rolled, 20*time.Second)
	checkRefused(t, err, rolled, fake, manifest.ReasonBadSignature, 5)
	if round, _ := stateRotations(t, state); round != 5 {
		t.Errorf("state file at round %d after the refusal, want 5 (the restarted agent's final manifest)", round)
	}
	if !strings.Contains(logs.String(), "round manifest refused") {
		t.Errorf("the refusal is not logged:\n%s", logs.String())
	}
}

// mustCarried returns the one rotation a round manifest carries.
func mustCarried(t *testing.T, env []byte) []byte {
	t.Helper()
	c := manifest.CarriedRotations(env)
	if len(c) != 1 {
		t.Fatalf("the manifest carries %d rotations, want 1", len(c))
	}
	return c[0]
}

// TestKeyRotationChainMissed: an agent that stopped after round 1 misses
// two rotations (old → mid after round 2, mid → new after round 4); when
// it comes back, the offered manifest is signed by keys it never pinned,
// and it catches up through the missed manifests, following both.
func TestKeyRotationChainMissed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	oldKeys := fake.keys()
	mid, next := newSigner(t), newSigner(t)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "accepted.json")
	a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
	if err := run(t, a, 20*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// Rounds 2..5 close without this hospital.
	fake.mu.Lock()
	var first [32]byte
	fake.rotate = func(n uint64) []json.RawMessage {
		switch n {
		case 3:
			env, d := fake.rotation(fake.signer, mid, 1, "", 2)
			first, fake.signer = d, mid
			return []json.RawMessage{env}
		case 5:
			env, _ := fake.rotation(fake.signer, next, 2, hex.EncodeToString(first[:]), 4)
			fake.signer = next
			return []json.RawMessage{env}
		}
		return nil
	}
	fake.rounds = 7
	for fake.round < 6 {
		fake.advanceLocked("hospital-other")
	}
	fake.mu.Unlock()
	back, logs := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
	if err := run(t, back, 20*time.Second); err != nil {
		t.Fatalf("Run after missing two rotations = %v, want nil", err)
	}
	if fetched, _ := fake.manifestLog(); len(fetched) == 0 {
		t.Errorf("the agent fetched no missed manifest")
	}
	round, rots := stateRotations(t, state)
	if round != 7 || len(rots) != 2 || rots[1]["new_fingerprint"] != next.Public().Fingerprint() {
		t.Fatalf("state file at round %d with rotations %v, want round 7 (the final manifest) and two rotations ending at %s", round, rots, next.Public().Fingerprint())
	}
	if n := strings.Count(logs.String(), "coordinator keys rotated"); n != 2 {
		t.Errorf("the agent logged %d rotations, want 2", n)
	}
}

// TestKeyRotationRefused: rotations the agent must not follow. Each is
// carried by the manifest of round 2 (the first the new keys sign); the
// agent refuses it, says why to the coordinator (which audits it) and in
// its log, and keeps its state file and pinned keys.
func TestKeyRotationRefused(t *testing.T) {
	t.Parallel()
	mallory := newSigner(t)
	for _, tc := range []struct {
		name string
		// edit returns the rotation to carry instead of the real one
		// (the fake's keys to next, signed by both). f.mu is held.
		edit func(t *testing.T, f *fakeCoordinator, next *manifest.Signer, env []byte) []byte
	}{
		{"signed by the new keys alone", func(t *testing.T, _ *fakeCoordinator, _ *manifest.Signer, env []byte) []byte {
			return editEnvelope(t, env, func(e map[string]any) { e["signatures"] = e["signatures"].([]any)[2:] })
		}},
		{"forged: signed by an unrelated key and the new one", func(t *testing.T, f *fakeCoordinator, next *manifest.Signer, _ []byte) []byte {
			env, _ := f.rotation(mallory, next, 1, "", 1)
			return env
		}},
		{"takes effect after another round", func(t *testing.T, f *fakeCoordinator, next *manifest.Signer, _ []byte) []byte {
			env, _ := f.rotation(f.signer, next, 1, "", 0)
			return env
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newFake(t, 3)
			oldKeys := fake.keys()
			next := newSigner(t)
			fake.mu.Lock()
			fake.rotateAt(2, next, 1, "", func(env []byte) []byte { return tc.edit(t, fake, next, env) })
			fake.mu.Unlock()
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			state := filepath.Join(t.TempDir(), "accepted.json")
			a, logs := newAgent(t, addr, p.clientTLS, newTrainer(), oldKeys, withState(state))
			err := run(t, a, 20*time.Second)
			checkRefused(t, err, a, fake, manifest.ReasonBadRotation, 2)
			if round, rots := stateRotations(t, state); round != 1 || len(rots) != 0 {
				t.Errorf("state file at round %d with %d rotations, want round 1 and none", round, len(rots))
			}
			if s := logs.String(); !strings.Contains(s, "reason="+string(manifest.ReasonBadRotation)) {
				t.Errorf("log does not report the refused rotation:\n%s", s)
			}
			if st := a.Stats(); st.Rounds != 2 {
				t.Errorf("Stats().Rounds = %d, want 2 (none on the refused manifest)", st.Rounds)
			}
		})
	}
}
