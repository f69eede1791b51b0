package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// testRotation is rotation seq from old to new, after round after.
func testRotation(tb testing.TB, old, new *Signer, seq uint64, previous string, after uint64) ([]byte, VerifiedRotation) {
	tb.Helper()
	env, _, err := SignRotation(old, new, Rotation{
		Federation: "hospitals-eu", Seq: seq, Previous: previous,
		AfterRound: after, AfterManifest: sum("manifest " + string(rune('0'+after))),
		Rotated: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		tb.Fatal(err)
	}
	v, err := OpenRotation(env)
	if err != nil {
		tb.Fatalf("OpenRotation of a fresh rotation: %v", err)
	}
	return env, v
}

func TestFollowRotations(t *testing.T) {
	a, b, c := fixedSigner(t, "a"), fixedSigner(t, "b"), fixedSigner(t, "c")
	ab, vab := testRotation(t, a, b, 1, "", 3)
	bc, _ := testRotation(t, b, c, 2, hexDigest(vab.Digest), 5)
	for _, tc := range []struct {
		name    string
		pinned  *Signer
		chain   [][]byte
		want    *Signer
		applied int
	}{
		{"old to new", a, [][]byte{ab}, b, 1},
		{"old to mid to new", a, [][]byte{ab, bc}, c, 2},
		{"mid to new, the first rotation skipped", b, [][]byte{ab, bc}, c, 1},
		{"already at the newest", c, [][]byte{ab, bc}, c, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, applied, err := FollowRotations(tc.pinned.Public(), "hospitals-eu", tc.chain)
			if err != nil {
				t.Fatalf("FollowRotations = %v", err)
			}
			if !got.Equal(tc.want.Public()) || len(applied) != tc.applied {
				t.Errorf("FollowRotations = %s with %d applied, want %s with %d", got.Fingerprint(), len(applied), tc.want.Public().Fingerprint(), tc.applied)
			}
		})
	}
}

func TestFollowRotationsRefused(t *testing.T) {
	a, b, c, mallory := fixedSigner(t, "a"), fixedSigner(t, "b"), fixedSigner(t, "c"), fixedSigner(t, "mallory")
	ab, vab := testRotation(t, a, b, 1, "", 3)
	bc, _ := testRotation(t, b, c, 2, hexDigest(vab.Digest), 5)
	// Rotations signed by one side only: the other side's two signatures
	// are dropped (SignRotation writes old's two, then new's two).
	newOnly := editEnvelope(t, ab, func(e map[string]any) { e["signatures"] = sigs(e)[2:] })
	oldOnly := editEnvelope(t, ab, func(e map[string]any) { e["signatures"] = sigs(e)[:2] })
	// Half of each: the ML-DSA-65 signature of the old keys is missing.
	oldEdOnly := editEnvelope(t, ab, func(e map[string]any) { s := sigs(e); e["signatures"] = []any{s[0], s[2], s[3]} })
	forged, _ := testRotation(t, mallory, c, 1, "", 3)
	// mallory claims the federation's old keys in old_keys, but signs with
	// its own: the signatures do not verify under what it names.
	claimed := func() []byte {
		payload := rotationPayload(t, a, c, 1)
		env := signStatement(t, mallory, PayloadType, payload)
		env2 := signStatement(t, c, PayloadType, payload)
		var e1, e2 map[string]any
		_ = json.Unmarshal(env, &e1)
		_ = json.Unmarshal(env2, &e2)
		e1["signatures"] = append(sigs(e1), sigs(e2)...)
		out, _ := json.Marshal(e1)
		return out
	}()
	tampered := editEnvelope(t, ab, func(e map[string]any) {
		e["payload"] = b64.EncodeToString(rotationPayload(t, a, mallory, 1))
	})
	otherFed := func() []byte {
		env, _, err := SignRotation(a, b, Rotation{Federation: "elsewhere", Seq: 1, AfterManifest: sum("x"), Rotated: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}()
	bcUnlinked, _ := testRotation(t, b, c, 2, sum("not rotation 1"), 5)
	for _, tc := range []struct {
		name  string
		chain [][]byte
		want  error
	}{
		{"signed by the new keys alone", [][]byte{newOnly}, ErrBadSignature},
		{"signed by the old keys alone", [][]byte{oldOnly}, ErrBadSignature},
		{"old keys' ML-DSA-65 signature missing", [][]byte{oldEdOnly}, ErrBadSignature},
		{"forged: from an unrelated key", [][]byte{forged}, nil},
		{"forged: claims the pinned keys, signed by another", [][]byte{claimed}, ErrBadSignature},
		{"payload swapped under the signatures", [][]byte{tampered}, ErrBadSignature},
		{"other federation", [][]byte{otherFed}, nil},
		{"chain with a broken link", [][]byte{ab, bcUnlinked}, nil},
		{"chain out of order", [][]byte{bc, ab}, nil},
		{"not an envelope", [][]byte{[]byte(`{}`)}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := FollowRotations(a.Public(), "hospitals-eu", tc.chain)
			var ref *RefusalError
			if !errors.As(err, &ref) || ref.Reason != ReasonBadRotation {
				t.Fatalf("FollowRotations = %v, want a %s refusal", err, ReasonBadRotation)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("FollowRotations = %v, want it to wrap %v", err, tc.want)
			}
		})
	}
}

// rotationPayload is the statement of a rotation from old to new.
func rotationPayload(tb testing.TB, old, new *Signer, seq uint64) []byte {
	tb.Helper()
	env, _, err := SignRotation(old, new, Rotation{Federation: "hospitals-eu", Seq: seq, AfterManifest: sum("m"), Rotated: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		tb.Fatal(err)
	}
	_, payload, err := decodeEnvelope(env)
	if err != nil {
		tb.Fatal(err)
	}
	return payload
}

func TestSignRotationRefuses(t *testing.T) {
	a := fixedSigner(t, "a")
	for _, tc := range []struct {
		name string
		new  *Signer
		r    Rotation
	}{
		{"same keys", a, Rotation{Federation: "f", Seq: 1, AfterManifest: sum("m"), Rotated: time.Now()}},
		{"seq 0", fixedSigner(t, "b"), Rotation{Federation: "f", AfterManifest: sum("m"), Rotated: time.Now()}},
		{"no previous", fixedSigner(t, "b"), Rotation{Federation: "f", Seq: 2, AfterManifest: sum("m"), Rotated: time.Now()}},
		{"no after_manifest", fixedSigner(t, "b"), Rotation{Federation: "f", Seq: 1, Rotated: time.Now()}},
		{"no time", fixedSigner(t, "b"), Rotation{Federation: "f", Seq: 1, AfterManifest: sum("m")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := SignRotation(a, tc.new, tc.r); err == nil {
				t.Errorf("SignRotation(%+v) = nil error", tc.r)
			}
		})
	}
}

// TestRoundCarriesRotations checks the v2 round manifest: what it carries
// comes back, and the predicate type follows whether it carries any.
func TestRoundCarriesRotations(t *testing.T) {
	a, b := fixedSigner(t, "a"), fixedSigner(t, "b")
	ab, _ := testRotation(t, a, b, 1, "", 2)
	r := goldenRound()
	r.KeyRotations = []json.RawMessage{ab}
	env := mustSign(t, b, r)
	got, _, err := Open(env, b.Public())
	if err != nil {
		t.Fatalf("Open(v2) = %v", err)
	}
	if len(got.KeyRotations) != 1 || string(got.KeyRotations[0]) != string(ab) {
		t.Errorf("Open(v2) carries %d rotations, want the one signed", len(got.KeyRotations))
	}
	if c := CarriedRotations(env); len(c) != 1 || string(c[0]) != string(ab) {
		t.Errorf("CarriedRotations = %d rotations, want 1", len(c))
	}
	_, payload, _ := decodeEnvelope(env)
	var st statement
	_ = json.Unmarshal(payload, &st)
	if st.PredicateType != PredicateTypeV2 {
		t.Errorf("predicateType = %q, want %q", st.PredicateType, PredicateTypeV2)
	}
	// The same fields under the v1 type: refused, and the v2 type without
	// rotations too.
	for _, tc := range []struct {
		name string
		r    Round
		pt   string
	}{
		{"v1 with key_rotations", r, PredicateType},
		{"v2 without key_rotations", goldenRound(), PredicateTypeV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := statementWith(t, tc.r, func(st map[string]any) { st["predicateType"] = tc.pt })
			env := signStatement(t, b, PayloadType, payload)
			if _, _, err := Open(env, b.Public()); !errors.Is(err, ErrMalformed) {
				t.Errorf("Open = %v, want ErrMalformed", err)
			}
		})
	}
	if c := CarriedRotations(mustSign(t, b, goldenRound())); c != nil {
		t.Errorf("CarriedRotations(v1) = %d rotations, want none", len(c))
	}
}

// mustSigner is a signer made from seed, deterministically.
func mustSigner(tb testing.TB, seed string) *Signer {
	tb.Helper()
	s, err := GenerateSigner(seedReader(seed))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// mustSign is the envelope of r signed by s.
func mustSign(tb testing.TB, s *Signer, r Round) []byte {
	tb.Helper()
	env, _, err := Sign(s, r)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// TestCommitRotation stages and commits a rotation, including again after
// each step as if the process had crashed there, and checks the files.
func TestCommitRotation(t *testing.T) {
	for _, crashAfter := range []string{"stage", "retire", "manifest", "key", "public", "done"} {
		t.Run("crash after "+crashAfter, func(t *testing.T) {
			dir := t.TempDir()
			old, _, err := LoadOrCreateSigner(dir)
			if err != nil {
				t.Fatal(err)
			}
			next, err := GenerateSigner(nil)
			if err != nil {
				t.Fatal(err)
			}
			env, _, err := SignRotation(old, next, Rotation{Federation: "hospitals-eu", Seq: 1, AfterManifest: sum("m"), Rotated: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if err := StageRotation(dir, next, env); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadRotations(dir); !errors.Is(err, ErrPendingRotation) {
				t.Fatalf("LoadRotations with a rotation pending = %v, want ErrPendingRotation", err)
			}
			// Do part of the commit by hand, as a crashed commit would have.
			pending := filepath.Join(dir, PendingRotationDir)
			steps := map[string]func(){
				"retire":   func() { must(t, old.Save(filepath.Join(dir, RetiredDir, "000001"))) },
				"manifest": func() { must(t, os.MkdirAll(filepath.Join(dir, RotationsDir), 0o755)) },
				"key":      func() { must(t, os.Rename(filepath.Join(pending, KeyFile), filepath.Join(dir, KeyFile))) },
				"public":   func() { must(t, os.Rename(filepath.Join(pending, PublicFile), filepath.Join(dir, PublicFile))) },
				"done":     func() { must(t, CommitRotation(dir)) },
			}
			for _, s := range []string{"retire", "manifest", "key", "public", "done"} {
				if crashAfter == "stage" {
					break
				}
				steps[s]()
				if s == crashAfter {
					break
				}
			}
			if err := CommitRotation(dir); err != nil {
				t.Fatalf("CommitRotation = %v", err)
			}
			s, err := LoadSigner(dir)
			if err != nil || !s.Public().Equal(next.Public()) {
				t.Fatalf("LoadSigner after the rotation = %v, want the new key", err)
			}
			r, err := LoadSigner(filepath.Join(dir, RetiredDir, "000001"))
			if err != nil || !r.Public().Equal(old.Public()) {
				t.Fatalf("retired key = %v, want the old key kept", err)
			}
			if fi, err := os.Stat(filepath.Join(dir, RetiredDir, "000001", KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("retired signing.key: %v, mode %v, want 0600", err, fi.Mode().Perm())
			}
			chain, err := LoadRotations(dir)
			if err != nil || len(chain) != 1 || !chain[0].New.Equal(next.Public()) {
				t.Fatalf("LoadRotations = %d, %v; want the one rotation", len(chain), err)
			}
			if _, err := os.Stat(pending); !os.IsNotExist(err) {
				t.Errorf("the pending directory is still there: %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeyring(t *testing.T) {
	a, b := fixedSigner(t, "a"), fixedSigner(t, "b")
	_, vab := testRotation(t, a, b, 1, "", 3)
	k := NewKeyring(a.Public(), []VerifiedRotation{vab})
	if !k.Current().Equal(b.Public()) {
		t.Errorf("Current = %s, want the new keys", k.Current().Fingerprint())
	}
	for _, s := range []*Signer{a, b} {
		if _, _, err := k.Open(mustSign(t, s, goldenRound())); err != nil {
			t.Errorf("Keyring.Open(signed by %s) = %v", s.Public().Fingerprint(), err)
		}
	}
	if _, _, err := k.Open(mustSign(t, fixedSigner(t, "mallory"), goldenRound())); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Keyring.Open(signed by another key) = %v, want ErrBadSignature", err)
	}
}

// goldenRotation is testdata/rotation.golden: the coordinator's test keys
// rotate to "coordinator-2" after the golden round 3; and
// testdata/manifest-v2.golden is round 4, the new keys' first, carrying it.
func goldenRotation(t *testing.T) (old, new *Signer, rotation, v2 []byte) {
	t.Helper()
	old, new = testSigner(t), fixedSigner(t, "coordinator-2")
	_, round3, err := Sign(old, goldenRound())
	if err != nil {
		t.Fatal(err)
	}
	rotation, _, err = SignRotation(old, new, Rotation{
		Federation: "hospitals-eu", Seq: 1, AfterRound: 3, AfterManifest: hexDigest(round3),
		Rotated: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := goldenRound()
	r.Round, r.Parent, r.Closed = 4, hexDigest(round3), r.Closed.Add(time.Hour)
	r.KeyRotations = []json.RawMessage{rotation}
	v2, _, err = Sign(new, r)
	if err != nil {
		t.Fatal(err)
	}
	return old, new, rotation, v2
}

// TestRotationGolden pins the key rotation manifest and the v2 round
// manifest that carries it (deterministic ML-DSA-65, as TestGolden), and
// checks that the checked-in files follow from the checked-in old keys.
func TestRotationGolden(t *testing.T) {
	old, new, rotation, v2 := goldenRotation(t)
	files := map[string][]byte{
		"rotation.golden":    rotation,
		"manifest-v2.golden": v2,
		"signing-2.pub":      new.Public().MarshalPEM(),
	}
	for name, want := range files {
		path := filepath.Join("testdata", name)
		if got := golden.File(t, path, want); string(got) != string(want) {
			t.Errorf("%s differs from what this code writes:\n got %.200q\nwant %.200q", path, got, want)
		}
	}
	pinned, err := LoadPublicKeys(filepath.Join("testdata", PublicFile))
	if err != nil || !pinned.Equal(old.Public()) {
		t.Fatalf("testdata/signing.pub = %v, want the old keys", err)
	}
	golden, _ := os.ReadFile(filepath.Join("testdata", "manifest-v2.golden"))
	keys, applied, err := FollowRotations(pinned, "hospitals-eu", CarriedRotations(golden))
	if err != nil || len(applied) != 1 || !keys.Equal(new.Public()) {
		t.Fatalf("FollowRotations(golden) = %d applied, %v; want the new keys", len(applied), err)
	}
	if r, _, err := Open(golden, keys); err != nil || r.Round != 4 {
		t.Errorf("Open(manifest-v2.golden, new keys) = round %d, %v", r.Round, err)
	}
	if _, _, err := Open(golden, pinned); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Open(manifest-v2.golden, old keys) = %v, want ErrBadSignature", err)
	}
}

// TestLoadRotationsBounded: a rotation file is read up to its bound and
// no further, so one that never ends (here /dev/zero behind the file's
// name) is refused instead of read until memory runs out, as it was
// before LoadRotations read with strictjson.ReadFile.
func TestLoadRotationsBounded(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, RotationsDir), 0o755))
	endless.File(t, filepath.Join(dir, RotationsDir), RotationFile(1))
	_, err := LoadRotations(dir)
	if !errors.Is(err, strictjson.ErrTooLarge) {
		t.Fatalf("LoadRotations with an endless rotation file = %v, want a refusal wrapping strictjson.ErrTooLarge", err)
	}
}
