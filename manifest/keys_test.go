package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"golang.org/x/mod/sumdb/note"
)

// TestGenerateSignerDeterministic checks that GenerateSigner reads its two
// seeds from rand, so a fixed reader gives a fixed identity, and that it
// reports a short reader.
func TestGenerateSignerDeterministic(t *testing.T) {
	a := mustSigner(t, "x")
	b, _ := GenerateSigner(seedReader("x"))
	c, _ := GenerateSigner(seedReader("y"))
	if !a.Public().Equal(b.Public()) {
		t.Error("same seed, different keys")
	}
	if a.Public().Equal(c.Public()) {
		t.Error("different seeds, same keys")
	}
	// The Ed25519 key comes from the first 32 bytes only.
	seed := seedReader("x")
	var buf [64]byte
	_, _ = seed.Read(buf[:])
	copy(buf[32:], bytes.Repeat([]byte{7}, 32))
	d, _ := GenerateSigner(bytes.NewReader(buf[:]))
	if !bytes.Equal(d.Public().Ed25519, a.Public().Ed25519) || d.Public().MLDSA65.Equal(a.Public().MLDSA65) {
		t.Error("GenerateSigner does not read the Ed25519 seed then the ML-DSA-65 seed")
	}
	for _, n := range []int{0, 31, 32, 63} {
		if _, err := GenerateSigner(bytes.NewReader(make([]byte, n))); err == nil {
			t.Errorf("GenerateSigner with %d bytes of randomness succeeded", n)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := testSigner(t).Public()
	b := fixedSigner(t, "other").Public()
	fp := a.Fingerprint()
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(fp) {
		t.Errorf("Fingerprint() = %q, want sha256:<64 hex>", fp)
	}
	parsed, err := ParsePublicKeys(a.MarshalPEM())
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Fingerprint() != fp {
		t.Errorf("fingerprint changed across MarshalPEM/ParsePublicKeys: %s, %s", fp, parsed.Fingerprint())
	}
	if b.Fingerprint() == fp {
		t.Error("two identities share a fingerprint")
	}
	// Either key alone changes the fingerprint.
	if (PublicKeys{Ed25519: a.Ed25519, MLDSA65: b.MLDSA65}).Fingerprint() == fp ||
		(PublicKeys{Ed25519: b.Ed25519, MLDSA65: a.MLDSA65}).Fingerprint() == fp {
		t.Error("fingerprint does not cover both keys")
	}
	if got := (PublicKeys{}).Fingerprint(); got != "" {
		t.Errorf("zero PublicKeys fingerprint = %q, want empty", got)
	}
}

// pemOf encodes blocks.
func pemOf(blocks ...*pem.Block) []byte {
	var b bytes.Buffer
	for _, blk := range blocks {
		_ = pem.Encode(&b, blk)
	}
	return b.Bytes()
}

func TestParsePublicKeys(t *testing.T) {
	k := testSigner(t).Public()
	edDER, _ := k.ed25519DER()
	ed := &pem.Block{Type: "PUBLIC KEY", Bytes: edDER}
	ml := &pem.Block{Type: "ML-DSA-65 PUBLIC KEY", Bytes: k.MLDSA65.Bytes()}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	good := k.MarshalPEM()
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" means success
	}{
		{"valid", good, ""},
		{"valid with surrounding blank lines", append(append([]byte("\n\n"), good...), "\n"...), ""},
		{"empty", nil, "no PUBLIC KEY block"},
		{"Ed25519 only", pemOf(ed), "no ML-DSA-65 PUBLIC KEY block"},
		{"ML-DSA-65 only", pemOf(ml), "no PUBLIC KEY block before the ML-DSA-65 PUBLIC KEY block"},
		{"reversed", pemOf(ml, ed), "no PUBLIC KEY block before the ML-DSA-65 PUBLIC KEY block"},
		{"Ed25519 twice", pemOf(ed, ed, ml), "more than one PUBLIC KEY block"},
		{"extra block", pemOf(ed, ml, &pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), `unexpected "CERTIFICATE" block after the ML-DSA-65 PUBLIC KEY block`},
		{"foreign block", pemOf(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte{1}}), `unexpected "RSA PUBLIC KEY" block, want PUBLIC KEY`},
		{"trailing garbage", append(append([]byte{}, good...), "garbage\n"...), "trailing garbage after the ML-DSA-65 PUBLIC KEY block"},
		{"leading garbage", append([]byte("key:\n"), good...), "not PEM"},
		{"truncated", good[:len(good)-30], "PEM block 2 is not well formed"},
		{"ML-DSA-65 key short", pemOf(ed, &pem.Block{Type: "ML-DSA-65 PUBLIC KEY", Bytes: k.MLDSA65.Bytes()[:100]}), "ML-DSA-65 PUBLIC KEY block is 100 bytes, want 1952"},
		{"ML-DSA-65 key long", pemOf(ed, &pem.Block{Type: "ML-DSA-65 PUBLIC KEY", Bytes: append(k.MLDSA65.Bytes(), 0)}), "is 1953 bytes, want 1952"},
		{"ECDSA instead of Ed25519", pemOf(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}, ml), "PUBLIC KEY block holds a *ecdsa.PublicKey key, want Ed25519"},
		{"bad DER", pemOf(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0}}, ml), "PUBLIC KEY block: asn1: syntax error"},
		{"PEM headers", pemOf(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: edDER}, ml), "PUBLIC KEY block has PEM headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublicKeys(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParsePublicKeys = %v", err)
				}
				if !got.Equal(k) {
					t.Errorf("ParsePublicKeys returned other keys")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePublicKeys(%.40q…) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestParsePrivateKeys(t *testing.T) {
	s := testSigner(t)
	good, err := s.marshalPrivateKeys()
	if err != nil {
		t.Fatal(err)
	}
	back, err := parsePrivateKeys(good)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Public().Equal(s.Public()) {
		t.Error("parsePrivateKeys(marshalPrivateKeys(s)) has other keys")
	}
	edDER, _ := x509.MarshalPKCS8PrivateKey(mustECDSA(t))
	blocks, _ := decodePEM(good, pemEd25519Private, pemMLDSAPrivate)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"seed short", pemOf(&pem.Block{Type: "PRIVATE KEY", Bytes: blocks[0]}, &pem.Block{Type: "ML-DSA-65 PRIVATE KEY", Bytes: blocks[1][:31]}), "ML-DSA-65 PRIVATE KEY block is 31 bytes, want the 32-byte seed"},
		{"packed key instead of seed", pemOf(&pem.Block{Type: "PRIVATE KEY", Bytes: blocks[0]}, &pem.Block{Type: "ML-DSA-65 PRIVATE KEY", Bytes: make([]byte, mldsa65.PrivateKeySize)}), "is 4032 bytes, want the 32-byte seed"},
		{"ECDSA key", pemOf(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}, &pem.Block{Type: "ML-DSA-65 PRIVATE KEY", Bytes: blocks[1]}), "holds a *ecdsa.PrivateKey key, want Ed25519"},
		{"no ML-DSA-65 block", pemOf(&pem.Block{Type: "PRIVATE KEY", Bytes: blocks[0]}), "no ML-DSA-65 PRIVATE KEY block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parsePrivateKeys(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parsePrivateKeys = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func mustECDSA(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLoadOrCreateSigner covers the life of the key files: creation with
// the right modes and contents, reloading the same identity, repair of a
// missing public file, and refusal (without overwriting) of files that
// hold other keys.
func TestLoadOrCreateSigner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing")
	s, created, err := LoadOrCreateSigner(dir)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateSigner(new) = %v, created %v", err, created)
	}
	keyPath := filepath.Join(dir, KeyFile)
	pubPath := filepath.Join(dir, PublicFile)
	cosignPath := filepath.Join(dir, CosignPublicFile)
	if runtime.GOOS != "windows" {
		for path, want := range map[string]fs.FileMode{dir: 0o700, keyPath: 0o600, pubPath: 0o644, cosignPath: 0o644} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode %04o, want %04o", filepath.Base(path), got, want)
			}
		}
	}
	keyBytes, _ := os.ReadFile(keyPath)
	pub, err := LoadPublicKeys(pubPath)
	if err != nil || !pub.Equal(s.Public()) {
		t.Fatalf("LoadPublicKeys(signing.pub) = %v, equal %v", err, pub.Equal(s.Public()))
	}
	cosignBytes, _ := os.ReadFile(cosignPath)
	if cosignEd, err := parseCosignPublic(cosignBytes); err != nil || !cosignEd.Equal(s.Public().Ed25519) {
		t.Fatalf("cosign.pub = %v, holds the Ed25519 key: %v", err, cosignEd.Equal(s.Public().Ed25519))
	}
	if !bytes.Equal(cosignBytes, s.Public().cosignPEM()) {
		t.Error("cosign.pub is not the PKIX Ed25519 key alone")
	}

	// Reloading gives the same identity and changes nothing.
	for _, load := range []struct {
		name string
		fn   func() (*Signer, error)
	}{
		{"LoadOrCreateSigner", func() (*Signer, error) {
			s, created, err := LoadOrCreateSigner(dir)
			if created {
				t.Error("LoadOrCreateSigner(existing) reports created")
			}
			return s, err
		}},
		{"LoadSigner", func() (*Signer, error) { return LoadSigner(dir) }},
	} {
		again, err := load.fn()
		if err != nil {
			t.Fatalf("%s(existing) = %v", load.name, err)
		}
		if !again.Public().Equal(s.Public()) {
			t.Errorf("%s(existing) returned another identity", load.name)
		}
		env := mustSign(t, again, goldenRound())
		if _, _, err := Open(env, pub); err != nil {
			t.Errorf("manifest signed by the reloaded %s does not open: %v", load.name, err)
		}
	}
	if now, _ := os.ReadFile(keyPath); !bytes.Equal(now, keyBytes) {
		t.Error("signing.key changed on reload")
	}

	// A missing public file: LoadSigner refuses, LoadOrCreateSigner
	// re-creates it from the key.
	for _, name := range []string{PublicFile, CosignPublicFile} {
		path := filepath.Join(dir, name)
		want, _ := os.ReadFile(path)
		os.Remove(path)
		if _, err := LoadSigner(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadSigner without %s = %v, want fs.ErrNotExist", name, err)
		}
		if _, created, err := LoadOrCreateSigner(dir); err != nil || created {
			t.Errorf("LoadOrCreateSigner without %s = %v, created %v", name, err, created)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Errorf("%s was not re-created as it was", name)
		}
	}

	// Public files holding other keys are reported and left alone.
	other := fixedSigner(t, "other").Public()
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{PublicFile, other.MarshalPEM(), "does not hold the public key of signing.key"},
		{PublicFile, []byte("junk"), "not PEM"},
		{CosignPublicFile, other.cosignPEM(), "does not hold the public key of signing.key"},
		// Right Ed25519 key, wrong ML-DSA-65 key: both halves are compared.
		{PublicFile, PublicKeys{Ed25519: s.Public().Ed25519, MLDSA65: other.MLDSA65}.MarshalPEM(), "does not hold the public key"},
	} {
		t.Run("mismatch "+tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			orig, _ := os.ReadFile(path)
			t.Cleanup(func() { _ = os.WriteFile(path, orig, 0o644) })
			if err := os.WriteFile(path, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			for name, fn := range map[string]func() error{
				"LoadOrCreateSigner": func() error { _, _, err := LoadOrCreateSigner(dir); return err },
				"LoadSigner":         func() error { _, err := LoadSigner(dir); return err },
			} {
				if err := fn(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s = %v, want an error containing %q", name, err, tc.want)
				}
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tc.content) {
				t.Errorf("%s was overwritten", tc.name)
			}
		})
	}
	if now, _ := os.ReadFile(keyPath); !bytes.Equal(now, keyBytes) {
		t.Error("signing.key changed")
	}
}

// TestSigningKeyMode checks that a key file others can read is refused,
// by both loaders, and left as it is.
func TestSigningKeyMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes")
	}
	dir := t.TempDir()
	if _, _, err := LoadOrCreateSigner(dir); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o620, 0o644} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateSigner(dir); err == nil || !strings.Contains(err.Error(), "must not be accessible by group or others") {
			t.Errorf("LoadOrCreateSigner with key mode %04o = %v, want a mode error", mode, err)
		}
		if _, err := LoadSigner(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("LoadSigner with key mode %04o = %v, want a mode error", mode, err)
		}
	}
	if err := os.Chmod(keyPath, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(dir); err != nil {
		t.Errorf("LoadSigner with key mode 0400 = %v", err)
	}
}

// TestKeyNeverOverwritten checks that creation refuses to replace a key
// that appears concurrently, and that a directory entry that is not a
// regular file is not taken for a key.
func TestKeyNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, KeyFile)
	if err := os.Mkdir(keyPath, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSigner(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadOrCreateSigner with a directory as signing.key = %v", err)
	}
	if fi, err := os.Stat(keyPath); err != nil || !fi.IsDir() {
		t.Error("signing.key directory was replaced")
	}
}

// TestSigningKeySymlink checks that a key reached through a symbolic link
// (as secret volumes mount them) loads, and that the mode checked is the
// target's.
func TestSigningKeySymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges")
	}
	src := t.TempDir()
	s, _, err := LoadOrCreateSigner(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{KeyFile, PublicFile, CosignPublicFile} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadSigner(dir)
	if err != nil || !got.Public().Equal(s.Public()) {
		t.Fatalf("LoadSigner(symlinks) = %v", err)
	}
	if err := os.Chmod(filepath.Join(src, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(dir); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("LoadSigner(symlink to a 0644 key) = %v, want a mode error", err)
	}
}

func TestLoadSignerMissing(t *testing.T) {
	if _, err := LoadSigner(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadSigner(empty dir) = %v, want fs.ErrNotExist", err)
	}
	if _, err := LoadPublicKeys(filepath.Join(t.TempDir(), "none.pub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPublicKeys(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadPublicKeysNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), PublicFile)
	k := testSigner(t).Public()
	der, _ := k.ed25519DER()
	if err := os.WriteFile(path, pemOf(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPublicKeys(path)
	if err == nil || !strings.Contains(err.Error(), "signing.pub: no ML-DSA-65 PUBLIC KEY block") {
		t.Errorf("LoadPublicKeys = %v, want it to name the file and the missing block", err)
	}
	big := filepath.Join(t.TempDir(), "big.pub")
	if err := os.WriteFile(big, make([]byte, maxKeyFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublicKeys(big); err == nil || !strings.Contains(err.Error(), "not a key file") {
		t.Errorf("LoadPublicKeys(huge file) = %v", err)
	}
}

// TestNoteSigner checks that checkpoints signed with NoteSigner open with
// NoteVerifier, and only with it.
func TestNoteSigner(t *testing.T) {
	s := testSigner(t)
	const name = "fedguard/hospitals-eu"
	signer, err := s.NoteSigner(name)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := s.Public().NoteVerifier(name)
	if err != nil {
		t.Fatal(err)
	}
	if signer.Name() != name || signer.KeyHash() != verifier.KeyHash() {
		t.Fatalf("signer %s/%08x, verifier %s/%08x", signer.Name(), signer.KeyHash(), verifier.Name(), verifier.KeyHash())
	}
	text := "fedguard/hospitals-eu\n42\n3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("note.Open = %v", err)
	}
	if n.Text != text || len(n.Sigs) != 1 {
		t.Errorf("note.Open = %q with %d signatures", n.Text, len(n.Sigs))
	}

	// Another key under the same name: note cannot find a verifier.
	otherV, _ := fixedSigner(t, "other").Public().NoteVerifier(name)
	if _, err := note.Open(msg, note.VerifierList(otherV)); err == nil {
		t.Error("note signed by one key opens with another")
	}
	// A forged verifier with the right name and hash but another key.
	forged := &forgedVerifier{Verifier: verifier, other: otherV}
	var ise *note.InvalidSignatureError
	if _, err := note.Open(msg, note.VerifierList(forged)); !errors.As(err, &ise) {
		t.Errorf("note.Open with the wrong key = %v, want InvalidSignatureError", err)
	}
	// A tampered note does not open.
	bad := bytes.Replace(msg, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := note.Open(bad, note.VerifierList(verifier)); err == nil {
		t.Error("tampered note opens")
	}

	for _, badName := range []string{"", "a+b", "with space"} {
		if _, err := s.NoteSigner(badName); err == nil {
			t.Errorf("NoteSigner(%q) succeeded", badName)
		}
		if _, err := s.Public().NoteVerifier(badName); err == nil {
			t.Errorf("NoteVerifier(%q) succeeded", badName)
		}
	}
	if _, err := (PublicKeys{}).NoteVerifier(name); err == nil {
		t.Error("NoteVerifier of zero PublicKeys succeeded")
	}
}

// forgedVerifier has the name and key hash of Verifier but checks with
// other's key.
type forgedVerifier struct {
	note.Verifier
	other note.Verifier
}

func (f *forgedVerifier) Verify(msg, sig []byte) bool { return f.other.Verify(msg, sig) }
