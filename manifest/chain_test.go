package manifest

import (
	"crypto/sha256"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// chain builds verified manifests of rounds 0..n-1 of fed, each linked to
// the one before. Extends looks only at rounds, federations, parents and
// digests, so the digests are made up rather than signed.
func chain(fed, label string, n int) []Verified {
	var out []Verified
	for i := range n {
		r := Round{Federation: fed, Round: uint64(i)}
		if i > 0 {
			r.Parent = hexDigest(out[i-1].Digest)
		}
		out = append(out, Verified{Round: r, Digest: sha256.Sum256([]byte(fed + label + string(rune('0'+i))))})
	}
	return out
}

// fork returns main's history up to round at-1 followed by a different
// manifest for round at and its own successors: a fork at round at.
func fork(main []Verified, at int) []Verified {
	alt := append([]Verified{}, main[:at]...)
	for i := at; i < len(main); i++ {
		v := main[i]
		v.Digest = sha256.Sum256(append(v.Digest[:], 'x'))
		v.Round.Parent = hexDigest(alt[i-1].Digest)
		alt = append(alt, v)
	}
	return alt
}

func TestExtends(t *testing.T) {
	main := chain("fed", "main", 6)
	alt := fork(main, 2)
	acc := func(v Verified) *Accepted { a := v.Accepted(); return &a }
	cat := func(parts ...[]Verified) []Verified {
		var out []Verified
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	other := chain("other-fed", "main", 6)
	// The last two round numbers, to catch overflow in round arithmetic.
	top := chain("fed", "top", 2)
	top[0].Round.Round, top[1].Round.Round = math.MaxUint64-1, math.MaxUint64
	top[0].Round.Parent = sum("before")
	for _, tc := range []struct {
		name   string
		last   *Accepted
		path   []Verified
		reason Reason // "" means accepted
		round  uint64
	}{
		{"genesis, first contact", nil, main[:1], "", 0},
		{"genesis and more, first contact", nil, main[:4], "", 0},
		{"first contact without genesis", nil, main[1:4], ReasonGap, 1},
		{"first contact, broken link", nil, cat(main[:3], alt[3:4]), ReasonFork, 3},
		{"next", acc(main[2]), main[3:4], "", 0},
		{"next several", acc(main[2]), main[3:6], "", 0},
		{"re-fetch of the same", acc(main[2]), main[2:3], "", 0},
		{"re-fetch then next", acc(main[2]), main[2:5], "", 0},
		{"whole history resent", acc(main[2]), main, "", 0},
		{"re-fetch of genesis", acc(main[0]), main[:1], "", 0},
		{"rollback by one", acc(main[2]), main[1:2], ReasonRollback, 1},
		{"rollback to genesis", acc(main[4]), main[:1], ReasonRollback, 0},
		{"rollback, consistent history", acc(main[4]), main[:3], ReasonRollback, 2},
		{"fork at the same round", acc(main[2]), alt[2:3], ReasonFork, 2},
		{"fork in resent history", acc(main[3]), alt[1:5], ReasonFork, 3},
		{"fork, next round on another parent", acc(main[2]), alt[3:4], ReasonFork, 3},
		{"parent mismatch inside the path", acc(main[2]), cat(main[3:4], alt[4:5]), ReasonFork, 4},
		{"gap after the accepted round", acc(main[2]), main[4:5], ReasonGap, 4},
		{"gap inside the path", acc(main[2]), cat(main[3:4], main[5:6]), ReasonGap, 5},
		{"not ordered", acc(main[2]), cat(main[4:5], main[3:4]), ReasonMalformed, 3},
		{"repeated round", acc(main[2]), cat(main[3:4], main[3:4]), ReasonMalformed, 3},
		{"mixed federations", nil, cat(main[:1], other[1:2]), ReasonWrongFederation, 1},
		{"at the last round number", &Accepted{Round: math.MaxUint64, Digest: hexDigest(top[1].Digest)}, top, "", 0},
		{"gap below the last round number", &Accepted{Round: math.MaxUint64 - 3, Digest: hexDigest(top[0].Digest)}, top, ReasonGap, math.MaxUint64 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Extends(tc.last, tc.path)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Extends = %v, want nil", err)
				}
				return
			}
			var re *RefusalError
			if !errors.As(err, &re) {
				t.Fatalf("Extends = %v, want a *RefusalError", err)
			}
			if re.Reason != tc.reason || re.Round != tc.round {
				t.Errorf("Extends = %v (reason %q, round %d), want reason %q, round %d", err, re.Reason, re.Round, tc.reason, tc.round)
			}
		})
	}
}

func TestExtendsCallerErrors(t *testing.T) {
	main := chain("fed", "main", 2)
	var re *RefusalError
	if err := Extends(nil, nil); err == nil || errors.As(err, &re) {
		t.Errorf("Extends(nil, nil) = %v, want a plain error", err)
	}
	if err := Extends(&Accepted{Round: 0, Digest: "xyz"}, main[1:]); err == nil || errors.As(err, &re) {
		t.Errorf("Extends with a bad accepted digest = %v, want a plain error", err)
	}
}

// TestVerifyAndExtend runs a participant's checks on real signed
// manifests: genesis on first contact, then each next round, and refuses a
// manifest of another federation signed by the same keys.
func TestVerifyAndExtend(t *testing.T) {
	s := testSigner(t)
	keys := s.Public()
	var last *Accepted
	parent := ""
	for round := range uint64(4) {
		r := goldenRound()
		r.Round, r.Parent = round, parent
		if round == 0 {
			r = genesisRound()
		}
		env, digest, err := Sign(s, r)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify(env, keys, "hospitals-eu")
		if err != nil {
			t.Fatalf("Verify(round %d) = %v", round, err)
		}
		if v.Digest != digest {
			t.Fatalf("Verify digest %x, Sign digest %x", v.Digest, digest)
		}
		if err := Extends(last, []Verified{v}); err != nil {
			t.Fatalf("Extends(round %d) = %v", round, err)
		}
		a := v.Accepted()
		last, parent = &a, hexDigest(digest)
	}
	if last.Round != 3 {
		t.Errorf("accepted round %d, want 3", last.Round)
	}

	other := goldenRound()
	other.Federation = "hospitals-us"
	env := mustSign(t, s, other)
	_, err := Verify(env, keys, "hospitals-eu")
	var re *RefusalError
	if !errors.As(err, &re) || re.Reason != ReasonWrongFederation || re.Round != 3 {
		t.Errorf("Verify(other federation) = %v, want wrong_federation for round 3", err)
	}
	if _, err := Verify(env, keys, ""); err == nil || errors.As(err, &re) {
		t.Errorf("Verify with no federation = %v, want a plain error", err)
	}
}

// TestRefusalRound checks that a refusal of an unverifiable manifest still
// names the round it claims, for the log, and nothing when it cannot be
// read.
func TestRefusalRound(t *testing.T) {
	s := testSigner(t)
	env, _, _ := Sign(fixedSigner(t, "impostor"), goldenRound())
	_, err := Verify(env, s.Public(), "hospitals-eu")
	var re *RefusalError
	if !errors.As(err, &re) || re.Reason != ReasonBadSignature || re.Round != 3 {
		t.Fatalf("Verify(impostor) = %v, want bad_signature for round 3", err)
	}
	want := "manifest: refused manifest of round 3 (bad_signature): no Ed25519 signature verifies under the pinned key"
	if !strings.HasPrefix(re.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", re.Error(), want)
	}
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify error does not wrap ErrBadSignature")
	}
	_, err = Verify([]byte("garbage"), s.Public(), "hospitals-eu")
	if !errors.As(err, &re) || re.Reason != ReasonMalformed || re.Round != 0 {
		t.Errorf("Verify(garbage) = %v, want malformed with round 0", err)
	}
}

func TestCheckModel(t *testing.T) {
	model := []byte("model bytes")
	v := Verified{Round: Round{Round: 7, ModelSHA256: hexDigest(sha256.Sum256(model))}}
	if err := v.CheckModel(sha256.Sum256(model)); err != nil {
		t.Errorf("CheckModel(right model) = %v", err)
	}
	err := v.CheckModel(sha256.Sum256([]byte("other bytes")))
	var re *RefusalError
	if !errors.As(err, &re) || re.Reason != ReasonModelMismatch || re.Round != 7 || !errors.Is(err, ErrModelMismatch) {
		t.Errorf("CheckModel(wrong model) = %v, want model_mismatch for round 7", err)
	}
}

func TestAcceptedStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "accepted.json")
	got, err := LoadAccepted(path)
	if got != nil || err != nil {
		t.Fatalf("LoadAccepted(absent) = %v, %v; want nil, nil", got, err)
	}
	for _, a := range []Accepted{{Round: 0, Digest: sum("genesis")}, {Round: 12, Digest: sum("round 12")}} {
		if err := SaveAccepted(path, a); err != nil {
			t.Fatal(err)
		}
		got, err := LoadAccepted(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&a, got); diff != "" {
			t.Errorf("LoadAccepted after SaveAccepted (-want +got):\n%s", diff)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != `{"round":12,"digest":"`+sum("round 12")+"\"}\n" {
		t.Errorf("accepted file = %q", data)
	}
	if err := SaveAccepted(path, Accepted{Round: 13, Digest: "nope"}); err == nil {
		t.Error("SaveAccepted with a bad digest succeeded")
	}
	if got, _ := LoadAccepted(path); got == nil || got.Round != 12 {
		t.Errorf("a refused save changed the file: %v", got)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"torn", `{"round":12,"dig`, "unexpected EOF"},
		{"bad digest", `{"round":12,"digest":"abc"}`, `digest "abc" is not 64`},
		{"unknown field", `{"round":12,"digest":"` + sum("x") + `","extra":1}`, `unknown field "extra"`},
		{"empty", ``, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadAccepted(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadAccepted(%q) = %v, want an error containing %q", tc.content, err, tc.want)
			}
		})
	}
}
