package audit

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// rotatedExport builds a log signed by old until a key_rotated event (whose
// checkpoint old signs, as rotate-keys does), then by the signer that
// signAfter names, and returns its export.
func rotatedExport(t *testing.T, old, new, signAfter note.Signer) []byte {
	t.Helper()
	b := newExportBuilder(t, testOrigin, old)
	for i := 0; i < 3; i++ {
		b.add(synthEntry(i))
	}
	b.checkpoint()
	b.add(Entry{Kind: KindKeyRotated, Actor: ActorCoordinator, Payload: KeyRotated{Seq: 1, SHA256: "ab"}})
	b.checkpoint() // the old keys' last: it covers the rotation
	b.signer = signAfter
	for i := 3; i < 6; i++ {
		b.add(synthEntry(i))
	}
	b.checkpoint()
	return b.export()
}

func TestVerifyAcrossRotation(t *testing.T) {
	oldS, oldV := testKey(t, testOrigin, "old")
	newS, newV := testKey(t, testOrigin, "new")
	follow := func(*Event) (note.Verifiers, error) { return newV, nil }
	refuse := func(*Event) (note.Verifiers, error) { return nil, errors.New("not signed by the trusted keys") }
	for _, tc := range []struct {
		name    string
		export  []byte
		rotate  func(*Event) (note.Verifiers, error)
		wantErr bool
	}{
		{"rotation followed", rotatedExport(t, oldS, newS, newS), follow, false},
		{"rotation not followed: the new keys' checkpoint is unknown", rotatedExport(t, oldS, newS, newS), nil, true},
		{"a rotation the trusted keys did not sign", rotatedExport(t, oldS, newS, newS), refuse, true},
		// Whoever kept the retired keys signs a checkpoint after the
		// rotation: refused, though that key verified earlier ones.
		{"retired keys sign after the rotation", rotatedExport(t, oldS, newS, oldS), follow, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := Verify(bytes.NewReader(tc.export), VerifyOptions{Verifiers: oldV, Rotate: tc.rotate})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify = %+v, %v; want error %v", sum, err, tc.wantErr)
			}
			if err == nil && (sum.Checkpoints != 3 || sum.Covered != 7) {
				t.Errorf("Verify = %+v, want 3 checkpoints covering 7 events", sum)
			}
		})
	}
	// The checkpoint covering the rotation event is the old keys': signed
	// by the new ones instead, it is refused.
	b := newExportBuilder(t, testOrigin, oldS)
	b.add(synthEntry(0))
	b.add(Entry{Kind: KindKeyRotated, Actor: ActorCoordinator, Payload: KeyRotated{Seq: 1}})
	b.signer = newS
	b.checkpoint()
	if _, err := Verify(bytes.NewReader(b.export()), VerifyOptions{Verifiers: oldV, Rotate: follow}); err == nil {
		t.Errorf("Verify accepted the rotation's own checkpoint signed by the new keys")
	}
}
