//go:build cgo

package manifest

import (
	"bytes"
	stded25519 "crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/internal/softhsm"
	"github.com/fedguard/fedguard/keystore"
)

// tokenKey makes an Ed25519 key labelled label on a new SoftHSM2 token.
func tokenKey(t *testing.T, label string) (*keystore.Token, *keystore.Ed25519Key) {
	t.Helper()
	tok, err := keystore.Open(softhsm.New(t, "fedguard-test", label))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	k, err := tok.GenerateEd25519(label)
	if err != nil {
		t.Fatal(err)
	}
	return tok, k
}

// TestTokenSignerVerifies signs a manifest and a checkpoint with the
// Ed25519 key in SoftHSM2 and checks them the way hospitals, auditors and
// cosign do: Open with the pinned signing.pub, the DSSE Ed25519 signature
// with cosign.pub alone, the note with NoteVerifier.
func TestTokenSignerVerifies(t *testing.T) {
	tok, key := tokenKey(t, "coordinator")
	dir := filepath.Join(t.TempDir(), "data")
	s, created, err := LoadOrCreateTokenSigner(dir, key)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateTokenSigner = %v, created %v", err, created)
	}
	for name, mode := range map[string]os.FileMode{MLDSAKeyFile: 0o600, PublicFile: 0o644, CosignPublicFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("a token identity wrote signing.key")
	}
	env := mustSign(t, s, goldenRound())
	pinned, err := LoadPublicKeys(filepath.Join(dir, PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pinned.Ed25519, key.Public().(stded25519.PublicKey)) {
		t.Fatal("signing.pub does not hold the token's key")
	}
	if _, _, err := Open(env, pinned); err != nil {
		t.Fatalf("Open with the pinned keys: %v", err)
	}
	// cosign's check, independent of this package: the first DSSE
	// signature under cosign.pub over the PAE.
	if !softhsm.CosignVerifies(t, filepath.Join(dir, CosignPublicFile), env) {
		t.Fatal("cosign.pub does not verify the envelope's Ed25519 signature")
	}
	// A checkpoint note.
	const origin = "fedguard/hospitals-eu"
	ns, err := s.NoteSigner(origin)
	if err != nil {
		t.Fatal(err)
	}
	nv, err := pinned.NoteVerifier(origin)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: origin + "\n1\n3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(nv)); err != nil {
		t.Fatalf("checkpoint signed in the token: %v", err)
	}

	// Loading again gives the same identity; a closed token cannot sign.
	again, err := LoadTokenSigner(dir, key)
	if err != nil || !again.Public().Equal(s.Public()) {
		t.Fatalf("LoadTokenSigner = %v, same keys %v", err, err == nil && again.Public().Equal(s.Public()))
	}
	tok.Close()
	if _, _, err := Sign(s, goldenRound()); err == nil || !strings.Contains(err.Error(), "Ed25519 sign") {
		t.Fatalf("Sign with a closed token: err %v", err)
	}
}

// TestTokenSignerRefuses checks the states a token identity must not
// start from.
func TestTokenSignerRefuses(t *testing.T) {
	tok, key := tokenKey(t, "coordinator")
	other, err := tok.GenerateEd25519("other")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, _, err := LoadOrCreateTokenSigner(dir, key); err != nil {
		t.Fatal(err)
	}
	t.Run("another token key than the pinned one", func(t *testing.T) {
		_, err := LoadTokenSigner(dir, other)
		if err == nil || !strings.Contains(err.Error(), "does not hold the public key") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("ML-DSA-65 key readable by others", func(t *testing.T) {
		path := filepath.Join(dir, MLDSAKeyFile)
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := LoadTokenSigner(dir, key); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("missing ML-DSA-65 key", func(t *testing.T) {
		if _, err := LoadTokenSigner(t.TempDir(), key); err == nil || !strings.Contains(err.Error(), MLDSAKeyFile) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a file identity in the same directory", func(t *testing.T) {
		fileDir := t.TempDir()
		if _, _, err := LoadOrCreateSigner(fileDir); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateTokenSigner(fileDir, key); err == nil || !strings.Contains(err.Error(), "one identity only") {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(filepath.Join(fileDir, MLDSAKeyFile)); err == nil {
			t.Fatal("refused, yet wrote signing-mldsa.key")
		}
	})
}

// TestMoveFileIdentityToToken follows docs/keys.md's migration: the
// Ed25519 block of signing.key is imported into the token, the ML-DSA-65
// block becomes signing-mldsa.key, signing.key is removed. The identity,
// and so every hospital's pin, is unchanged.
func TestMoveFileIdentityToToken(t *testing.T) {
	dir := t.TempDir()
	fileSigner, _, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	edBlock, rest := pem.Decode(keyPEM)
	mlBlock, _ := pem.Decode(rest)
	if edBlock == nil || mlBlock == nil || mlBlock.Type != pemMLDSAPrivate {
		t.Fatal("signing.key is not the two blocks docs/keys.md describes")
	}
	cfg := softhsm.New(t, "fedguard-test", "coordinator")
	softhsm.Import(t, cfg, pem.EncodeToMemory(edBlock), cfg.KeyLabel)
	if err := os.WriteFile(filepath.Join(dir, MLDSAKeyFile), pem.EncodeToMemory(mlBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	tok, err := keystore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Ed25519(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadTokenSigner(dir, key)
	if err != nil {
		t.Fatalf("the moved identity does not load: %v", err)
	}
	if s.Public().Fingerprint() != fileSigner.Public().Fingerprint() {
		t.Fatalf("fingerprint changed from %s to %s", fileSigner.Public().Fingerprint(), s.Public().Fingerprint())
	}
	env := mustSign(t, s, goldenRound())
	if _, _, err := Open(env, fileSigner.Public()); err != nil {
		t.Fatalf("a manifest signed after the move does not verify with the keys pinned before: %v", err)
	}
	// Ed25519 is deterministic: the token's signature is the file key's.
	fileEnv := mustSign(t, fileSigner, goldenRound())
	if edSig(t, env) != edSig(t, fileEnv) {
		t.Error("the token's Ed25519 signature differs from the file key's")
	}
}

// edSig returns an envelope's first (Ed25519) signature.
func edSig(t *testing.T, env []byte) string {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(env, &e); err != nil || len(e.Signatures) == 0 {
		t.Fatalf("envelope: %v", err)
	}
	return e.Signatures[0].Sig
}
