package manifest

import (
	stded25519 "crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestPublicKeyFile: both forms of an auditor's key file load, each
// checks what it can (a checkpoint signed under any name by the
// coordinator's key; a manifest only with signing.pub), and a key of
// another coordinator or a malformed file is refused.
func TestPublicKeyFile(t *testing.T) {
	s := testSigner(t)
	other := fixedSigner(t, "impostor")
	dir := t.TempDir()
	pemFile := filepath.Join(dir, PublicFile)
	if err := os.WriteFile(pemFile, s.Public().MarshalPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := s.Public().NoteVerifier("fedguard/fed")
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey("fedguard/fed", stded25519.PublicKey(s.Public().Ed25519))
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() == 0 {
		t.Fatal("zero key hash")
	}
	lineFile := filepath.Join(dir, "verifier.txt")
	if err := os.WriteFile(lineFile, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envelope := mustSign(t, s, goldenRound())
	forged := mustSign(t, other, goldenRound())

	tests := []struct {
		name         string
		path         string
		wantManifest bool
	}{
		{"signing.pub", pemFile, true},
		{"verifier key line", lineFile, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadPublicKeyFile(tt.path)
			if err != nil {
				t.Fatalf("LoadPublicKeyFile(%q) = %v", tt.path, err)
			}
			for _, origin := range []string{"fedguard/fed"} {
				ns, err := s.NoteSigner(origin)
				if err != nil {
					t.Fatal(err)
				}
				msg, err := note.Sign(&note.Note{Text: "a checkpoint\n"}, ns)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := note.Open(msg, k.Verifiers); err != nil {
					t.Errorf("checkpoint signed as %q does not open: %v", origin, err)
				}
				ons, _ := other.NoteSigner(origin)
				bad, _ := note.Sign(&note.Note{Text: "a checkpoint\n"}, ons)
				if _, err := note.Open(bad, k.Verifiers); err == nil {
					t.Errorf("checkpoint of another key opens")
				}
			}
			err = k.VerifyManifest(envelope)
			switch {
			case tt.wantManifest && err != nil:
				t.Errorf("VerifyManifest = %v, want nil", err)
			case !tt.wantManifest && !errors.Is(err, ErrNoManifestKeys):
				t.Errorf("VerifyManifest = %v, want ErrNoManifestKeys", err)
			}
			if err := k.VerifyManifest(forged); err == nil {
				t.Error("VerifyManifest accepts a manifest of another key")
			}
		})
	}

	// The PEM form checks checkpoints under any name, as the coordinator's
	// log origin is not known in advance.
	k, _ := LoadPublicKeyFile(pemFile)
	ns, _ := s.NoteSigner("fedguard/another-origin")
	msg, _ := note.Sign(&note.Note{Text: "x\n"}, ns)
	if _, err := note.Open(msg, k.Verifiers); err != nil {
		t.Errorf("signing.pub does not check a checkpoint of origin fedguard/another-origin: %v", err)
	}

	bad := []struct {
		name, content, want string
	}{
		{"missing", "", "key: open "},
		{"garbage", "not a key", "neither a PEM signing.pub nor a note verifier key"},
		{"bad PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "manifest: parse public keys"},
		{"too large", strings.Repeat("x", maxKeyFileSize+1), "not a key file"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad-"+strings.ReplaceAll(tt.name, " ", "-"))
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := LoadPublicKeyFile(path); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadPublicKeyFile(%s) = %v, want an error saying %q", tt.name, err, tt.want)
			}
		})
	}
}

// FuzzParsePublicKeyFile: no input panics, and a file that parses as
// signing.pub carries manifest keys and checkpoint verifiers.
func FuzzParsePublicKeyFile(f *testing.F) {
	f.Add(testSigner(f).Public().MarshalPEM())
	vkey, err := note.NewEd25519VerifierKey("fedguard/fed", stded25519.PublicKey(testSigner(f).Public().Ed25519))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(vkey))
	f.Add([]byte("-----BEGIN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePublicKeyFile(data)
		if err != nil {
			return
		}
		if k.Verifiers == nil {
			t.Fatal("parsed key file without verifiers")
		}
		if k.Keys != nil {
			if _, err := ParsePublicKeys(k.Keys.MarshalPEM()); err != nil {
				t.Fatalf("parsed signing.pub does not round-trip: %v", err)
			}
		}
	})
}
