package witness_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/witness"
)

// fixture is a federation CA with one enrolled hospital and a signed
// checkpoint of a real audit log.
type fixture struct {
	ca       *certs.Authority
	cert     []byte // hospital-a.crt PEM
	key      []byte // hospital-a.key PEM
	verifier note.Verifiers
	cp       audit.Checkpoint
}

func newFixture(t testing.TB, dir, federation string) fixture {
	t.Helper()
	ca, err := certs.Init(filepath.Join(dir, "ca"), federation, certs.DefaultCAValidity)
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := certs.NewParticipantRequest(federation, "hospital-a")
	if err != nil {
		t.Fatal(err)
	}
	crt, err := ca.Sign(csr, certs.DefaultCertValidity)
	if err != nil {
		t.Fatal(err)
	}
	origin := "fedguard.test/" + federation
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{Origin: origin, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(context.Background(), audit.Entry{Kind: "test", Actor: "coordinator"}); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{ca: ca, cert: crt, key: key, verifier: note.VerifierList(v), cp: cp}
}

func (f fixture) sign(t testing.TB) []byte {
	t.Helper()
	pair, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Sign(f.cp.Note, f.verifier, 3, pair.Leaf, pair.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return w
}

func TestVerify(t *testing.T) {
	f := newFixture(t, t.TempDir(), "clinic-net")
	other := newFixture(t, t.TempDir(), "clinic-net") // another CA, same federation name
	good := f.sign(t)
	// The fuzz seed testdata/witness.json is such a file:
	// WITNESS_WRITE_SEED=1 go test ./witness -run TestVerify rewrites it.
	if os.Getenv("WITNESS_WRITE_SEED") != "" {
		if err := os.WriteFile(filepath.Join("testdata", "witness.json"), good, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v, err := witness.Verify(good, witness.VerifyOptions{CA: f.ca.Certificate(), Log: f.verifier})
	if err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	if v.Witness.Name != "hospital-a" || v.Checkpoint.Size != f.cp.Size || v.Checkpoint.Root != f.cp.Root || v.Round != 3 {
		t.Fatalf("Verify(good) = %+v, want hospital-a's witness of checkpoint %d", v, f.cp.Size)
	}
	// A signature byte flipped in the hospital's line.
	lines := strings.Split(string(good), `\n`)
	var tampered string
	for i, l := range lines {
		if strings.HasPrefix(l, "— clinic-net/participant/hospital-a ") {
			b := []byte(l)
			j := len(b) - 4
			if b[j] == 'A' {
				b[j] = 'B'
			} else {
				b[j] = 'A'
			}
			lines[i] = string(b)
			tampered = strings.Join(lines, `\n`)
		}
	}
	if tampered == "" {
		t.Fatalf("no witness signature line in %s", good)
	}
	for _, tc := range []struct {
		name string
		data []byte
		opts witness.VerifyOptions
		want error
		text string
	}{
		{"bad witness signature", []byte(tampered), witness.VerifyOptions{CA: f.ca.Certificate(), Log: f.verifier}, witness.ErrSignature, "no valid signature by the key of hospital-a's certificate"},
		{"certificate of another CA", good, witness.VerifyOptions{CA: other.ca.Certificate(), Log: f.verifier}, witness.ErrCertificate, "not issued by the federation's CA"},
		{"checkpoint not the coordinator's", good, witness.VerifyOptions{CA: f.ca.Certificate(), Log: other.verifier}, witness.ErrSignature, "not the coordinator's"},
		{"renamed witness", []byte(strings.Replace(string(good), `"witness": "hospital-a"`, `"witness": "hospital-b"`, 1)), witness.VerifyOptions{CA: f.ca.Certificate(), Log: f.verifier}, witness.ErrCertificate, "its certificate is hospital-a's"},
		{"not JSON", []byte("— hospital-a"), witness.VerifyOptions{CA: f.ca.Certificate(), Log: f.verifier}, witness.ErrMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := witness.Verify(tc.data, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Verify = %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

// TestSignRefuses: a hospital never vouches for a checkpoint its pinned
// coordinator key did not sign, nor with a key that is not its
// certificate's.
func TestSignRefuses(t *testing.T) {
	f := newFixture(t, t.TempDir(), "clinic-net")
	other := newFixture(t, t.TempDir(), "clinic-net")
	pair, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	otherPair, err := tls.X509KeyPair(other.cert, other.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := witness.Sign(f.cp.Note, other.verifier, 1, pair.Leaf, pair.PrivateKey.(crypto.Signer)); err == nil || !strings.Contains(err.Error(), "does not verify under the coordinator's key") {
		t.Errorf("Sign(checkpoint of another key) = %v", err)
	}
	if _, err := witness.Sign(f.cp.Note, f.verifier, 1, pair.Leaf, otherPair.PrivateKey.(crypto.Signer)); err == nil || !strings.Contains(err.Error(), "not the certificate's") {
		t.Errorf("Sign(another key) = %v", err)
	}
}

// FuzzParse: Parse never panics, and what it accepts marshals to a file
// it parses to the same value.
func FuzzParse(f *testing.F) {
	if seed, err := os.ReadFile(filepath.Join("testdata", "witness.json")); err == nil {
		f.Add(seed)
	}
	f.Add([]byte(`{"format":"fedguard-witness/v1","witness":"a","round":1,"certificate":"","checkpoint":"o\n1\nx\n\n— o x\n"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := witness.Parse(data)
		if err != nil {
			return
		}
		b, err := w.Marshal()
		if err != nil {
			t.Fatalf("Marshal(parsed) = %v", err)
		}
		w2, err := witness.Parse(b)
		if err != nil || *w2 != *w {
			t.Fatalf("Parse(Marshal(w)) = %+v, %v; want %+v", w2, err, w)
		}
	})
}
