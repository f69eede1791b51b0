package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
)

// TestRotationWithTheNewestKey: after `coordinator rotate-keys`,
// DATA_DIR/signing.pub holds the newest keys, and an auditor who verifies
// the log with it was told only that "rotation 1 is from keys A, not the
// keys trusted at that point, B". The error must say which key verifies a
// rotated log, and where it is kept.
func TestRotationWithTheNewestKey(t *testing.T) {
	oldKeys, err := manifest.GenerateSigner(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newKeys, err := manifest.GenerateSigner(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env, digest, err := manifest.SignRotation(oldKeys, newKeys, manifest.Rotation{Federation: "fed", Seq: 1, AfterRound: 5, AfterManifest: strings.Repeat("a", 64), Rotated: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(audit.KeyRotated{
		Seq: 1, OldFingerprint: oldKeys.Public().Fingerprint(), NewFingerprint: newKeys.Public().Fingerprint(),
		SHA256: hex.EncodeToString(digest[:]), Envelope: env,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := &audit.Event{Kind: audit.KindKeyRotated, Payload: payload}

	first := oldKeys.Public()
	if _, err := rotationFollower(manifest.PublicKeyFile{Keys: &first})(ev); err != nil {
		t.Fatalf("following the rotation from the first keys: %v", err)
	}
	newest := newKeys.Public()
	_, err = rotationFollower(manifest.PublicKeyFile{Keys: &newest})(ev)
	if err == nil || !strings.Contains(err.Error(), "verify with the federation's first signing.pub") ||
		!strings.Contains(err.Error(), "retired/000001/signing.pub") {
		t.Errorf("following the rotation from its new keys = %v, want an error naming the first signing.pub and where it is kept", err)
	}
}
