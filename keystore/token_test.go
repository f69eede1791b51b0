//go:build cgo

package keystore_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedguard/fedguard/internal/softhsm"
	"github.com/fedguard/fedguard/keystore"
)

// open opens cfg or fails the test, closing the token at the end.
func open(tb testing.TB, cfg keystore.PKCS11) *keystore.Token {
	tb.Helper()
	tok, err := keystore.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tok.Close() })
	return tok
}

// ed25519OnToken makes a SoftHSM2 token labelled tokenLabel, opens it for
// the test and generates an Ed25519 key labelled keyLabel on it.
func ed25519OnToken(tb testing.TB, tokenLabel, keyLabel string) (keystore.PKCS11, *keystore.Token, *keystore.Ed25519Key) {
	tb.Helper()
	cfg := softhsm.New(tb, tokenLabel, keyLabel)
	tok := open(tb, cfg)
	k, err := tok.GenerateEd25519(cfg.KeyLabel)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, tok, k
}

func TestEd25519SignsInToken(t *testing.T) {
	cfg, tok, k := ed25519OnToken(t, "fedguard-test", "coordinator")
	pub := k.Public().(ed25519.PublicKey)
	msg := []byte("DSSEv1 a message")
	sig, err := k.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("token's Ed25519 signature does not verify with crypto/ed25519")
	}
	// Ed25519 is deterministic: signing again gives the same bytes.
	if again, err := k.Sign(nil, msg, &ed25519.Options{}); err != nil || string(again) != string(sig) {
		t.Fatalf("second signature differs (err %v)", err)
	}
	if _, err := k.Sign(nil, msg, crypto.SHA512); err == nil {
		t.Error("Ed25519ph accepted; only pure Ed25519 is offered")
	}
	if _, err := tok.GenerateEd25519(cfg.KeyLabel); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("second key with the same label: err %v, want a refusal", err)
	}
	// The key persists: a new session finds it by label.
	tok.Close()
	if _, err := k.Sign(nil, msg, nil); err == nil {
		t.Error("a closed token's key still signs")
	}
	tok = open(t, cfg)
	k2, err := tok.Ed25519(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(k2.Public()) {
		t.Fatal("reopened key has another public key")
	}
	sig2, err := k2.Sign(nil, msg, nil)
	if err != nil || string(sig2) != string(sig) {
		t.Fatalf("reopened key signs differently (err %v)", err)
	}
}

// TestImportedKeysSignAsFiles moves file keys into the token (as an
// operator would with softhsm2-util --import) and checks that the token
// signs exactly as the file key did: Ed25519 is deterministic, so the
// signatures are byte for byte those of crypto/ed25519, and the pinned
// public keys do not change.
func TestImportedKeysSignAsFiles(t *testing.T) {
	cfg := softhsm.New(t, "fedguard-test", "coordinator")
	seed := sha256.Sum256([]byte("fedguard keystore test key"))
	edFile := ed25519.NewKeyFromSeed(seed[:])
	ecFile, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for label, key := range map[string]any{"imported-ed25519": edFile, "imported-p256": ecFile} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		softhsm.Import(t, cfg, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), label)
	}
	tok := open(t, cfg)
	ed, err := tok.Ed25519("imported-ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if !edFile.Public().(ed25519.PublicKey).Equal(ed.Public()) {
		t.Fatal("imported Ed25519 key has another public key")
	}
	for _, msg := range []string{"", "DSSEv1 28 application/vnd.in-toto+json 2 {}", strings.Repeat("x", 4096)} {
		got, err := ed.Sign(nil, []byte(msg), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if want := ed25519.Sign(edFile, []byte(msg)); string(got) != string(want) {
			t.Errorf("token signature of a %d-byte message differs from crypto/ed25519's", len(msg))
		}
	}
	ec, err := tok.ECDSA("imported-p256")
	if err != nil {
		t.Fatal(err)
	}
	if !ecFile.PublicKey.Equal(ec.Public()) {
		t.Fatal("imported P-256 key has another public key")
	}
	digest := sha256.Sum256([]byte("tbs"))
	sig, err := ec.Sign(nil, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(&ecFile.PublicKey, digest[:], sig) {
		t.Fatalf("imported P-256 key: signature does not verify with the file's public key (%v)", err)
	}
}

func TestEd25519ConcurrentSigning(t *testing.T) {
	_, _, k := ed25519OnToken(t, "fedguard-test", "coordinator")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(i)}
			sig, err := k.Sign(nil, msg, nil)
			if err == nil && !ed25519.Verify(k.Public().(ed25519.PublicKey), msg, sig) {
				err = errors.New("bad signature")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestECDSASignsInToken(t *testing.T) {
	cfg := softhsm.New(t, "fedguard-ca", "ca")
	tok := open(t, cfg)
	k, err := tok.GenerateECDSA(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("tbsCertificate"))
	sig, err := k.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("token's ECDSA signature does not verify")
	}
	found, err := tok.ECDSA(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().(*ecdsa.PublicKey).Equal(found.Public()) {
		t.Fatal("found another key")
	}
	if _, err := tok.GenerateECDSA(cfg.KeyLabel); err == nil {
		t.Error("second key with the same label accepted")
	}
	// An Ed25519 lookup does not return the ECDSA key, and vice versa.
	if _, err := tok.Ed25519(cfg.KeyLabel); !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Errorf("Ed25519 lookup of an ECDSA key: err %v, want ErrKeyNotFound", err)
	}
}

func TestPINFromEnvironment(t *testing.T) {
	cfg := softhsm.New(t, "fedguard-test", "k")
	cfg.PINFile = ""
	t.Setenv(keystore.PINEnv, softhsm.PIN)
	open(t, cfg)
}

// TestOpenErrors checks that each misconfiguration is refused with an
// error that says which part is wrong.
func TestOpenErrors(t *testing.T) {
	cfg := softhsm.New(t, "fedguard-test", "coordinator")
	dir := t.TempDir()
	wrongPIN := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongPIN, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loosePIN := filepath.Join(dir, "loose")
	if err := os.WriteFile(loosePIN, []byte(softhsm.PIN), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(keystore.PINEnv, "")
	for _, tc := range []struct {
		name   string
		change func(*keystore.PKCS11)
		is     error
		says   string
	}{
		{"wrong PIN", func(c *keystore.PKCS11) { c.PINFile = wrongPIN }, keystore.ErrPIN, "refused the PIN"},
		{"PIN file readable by others", func(c *keystore.PKCS11) { c.PINFile = loosePIN }, keystore.ErrPIN, "chmod 600"},
		{"no PIN at all", func(c *keystore.PKCS11) { c.PINFile = "" }, keystore.ErrPIN, keystore.PINEnv},
		{"missing PIN file", func(c *keystore.PKCS11) { c.PINFile = filepath.Join(dir, "none") }, keystore.ErrPIN, "no such file"},
		{"missing module", func(c *keystore.PKCS11) { c.Module = filepath.Join(dir, "libnone.so") }, keystore.ErrModule, "libnone.so"},
		{"not a module", func(c *keystore.PKCS11) { c.Module = wrongPIN }, keystore.ErrModule, "does not load"},
		{"unknown token", func(c *keystore.PKCS11) { c.TokenLabel = "elsewhere" }, keystore.ErrToken, `"elsewhere"`},
		{"no key label", func(c *keystore.PKCS11) { c.KeyLabel = "" }, keystore.ErrConfig, "key_label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.change(&c)
			tok, err := keystore.Open(c)
			if err == nil {
				tok.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %q, want %v mentioning %q", err, tc.is, tc.says)
			}
			if strings.Contains(err.Error(), softhsm.PIN) {
				t.Fatalf("error shows the PIN: %q", err)
			}
		})
	}
	tok := open(t, cfg)
	for _, find := range []func(string) error{
		func(l string) error { _, err := tok.Ed25519(l); return err },
		func(l string) error { _, err := tok.ECDSA(l); return err },
	} {
		err := find("missing-label")
		if !errors.Is(err, keystore.ErrKeyNotFound) || !strings.Contains(err.Error(), `"missing-label"`) {
			t.Errorf("missing key label: err %v, want ErrKeyNotFound naming the label", err)
		}
	}
}

// BenchmarkEd25519Sign compares a signature in the token (CKM_EDDSA,
// through the PKCS #11 module, checked against the public key) with one
// by crypto/ed25519 from a file key, on a manifest-sized message.
func BenchmarkEd25519Sign(b *testing.B) {
	_, _, k := ed25519OnToken(b, "fedguard-bench", "k")
	_, file, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 2048)
	for _, s := range []struct {
		name string
		key  crypto.Signer
	}{{"file", file}, {"token", k}} {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.key.Sign(nil, msg, crypto.Hash(0)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
