package certs

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bundle writes the PEM certificates of cas into one file, as an operator
// does with cat, and returns its path.
func bundle(t *testing.T, cas ...*Authority) string {
	t.Helper()
	var b bytes.Buffer
	for _, a := range cas {
		b.Write(pemEncode(pemCertificate, a.Certificate().Raw))
	}
	path := filepath.Join(t.TempDir(), "ca-bundle.crt")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCAOverlap runs the overlap period of a CA rotation: both sides trust
// the old and the new CA, and every combination of certificates from
// either connects, while a CA outside the bundle stays refused. Before the
// overlap (old CA only) a certificate of the new CA is refused.
func TestCAOverlap(t *testing.T) {
	old, next, other := newTestCA(t, "fed"), newTestCA(t, "fed"), newTestCA(t, "fed")
	cas, err := LoadCABundle(bundle(t, old, next))
	if err != nil || len(cas) != 2 {
		t.Fatalf("LoadCABundle = %d certificates, %v; want 2", len(cas), err)
	}
	type party struct{ cert, key string }
	srv := map[string]party{}
	cli := map[string]party{}
	for name, a := range map[string]*Authority{"old": old, "next": next, "other": other} {
		c, k := serverFiles(t, a)
		srv[name] = party{c, k}
		c, k, _ = enrol(t, a, "st-mary")
		cli[name] = party{c, k}
	}
	for _, tc := range []struct {
		server, client string
		roots          []*Authority // both sides' roots
		ok             bool
	}{
		{"old", "old", []*Authority{old, next}, true},
		{"old", "next", []*Authority{old, next}, true},
		{"next", "old", []*Authority{old, next}, true},
		{"next", "next", []*Authority{old, next}, true},
		{"old", "other", []*Authority{old, next}, false},
		{"other", "old", []*Authority{old, next}, false},
		{"old", "next", []*Authority{old}, false},
		{"next", "old", []*Authority{old}, false},
	} {
		t.Run(tc.server+" server, "+tc.client+" client, "+map[bool]string{true: "overlap", false: "outside"}[len(tc.roots) == 2], func(t *testing.T) {
			var more []*x509.Certificate
			for _, a := range tc.roots[1:] {
				more = append(more, a.Certificate())
			}
			s := mustServer(t, ServerOptions{CA: tc.roots[0].Certificate(), MoreCAs: more, CertFile: srv[tc.server].cert, KeyFile: srv[tc.server].key, Federation: "fed"})
			c := mustClient(t, ClientOptions{CA: tc.roots[0].Certificate(), MoreCAs: more, CertFile: cli[tc.client].cert, KeyFile: cli[tc.client].key, Federation: "fed", ServerName: "127.0.0.1"})
			sErr, cErr := handshake(t, s, c)
			if ok := sErr == nil && cErr == nil; ok != tc.ok {
				t.Errorf("handshake: server %v, client %v; want success %v", sErr, cErr, tc.ok)
			}
		})
	}

	// The CRL may come from either CA of the bundle, not from another.
	for name, a := range map[string]*Authority{"old": old, "next": next} {
		if _, err := NewRevocationList(filepath.Join(a.dir, crlFile), cas[0], cas[1:]...); err != nil {
			t.Errorf("NewRevocationList(%s CA's CRL) = %v", name, err)
		}
	}
	if _, err := NewRevocationList(filepath.Join(other.dir, crlFile), cas[0], cas[1:]...); err == nil {
		t.Errorf("NewRevocationList accepted the CRL of a CA outside the bundle")
	}
}

func TestLoadCABundleRefuses(t *testing.T) {
	a, b, c := newTestCA(t, "fed"), newTestCA(t, "fed"), newTestCA(t, "fed")
	elsewhere := newTestCA(t, "elsewhere")
	_, _, leaf := enrol(t, a, "st-mary")
	write := func(data []byte) string {
		path := filepath.Join(t.TempDir(), "ca.crt")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"three CAs", bundle(t, a, b, c), "more than 2"},
		{"two federations", bundle(t, a, elsewhere), "federation"},
		{"a leaf certificate", write(append(pemEncode(pemCertificate, a.Certificate().Raw), pemEncode(pemCertificate, leaf.Raw)...)), "not a CA"},
		{"a key", write(append(pemEncode(pemCertificate, a.Certificate().Raw), pemEncode(pemPrivateKey, []byte("x"))...)), "PRIVATE KEY"},
		{"empty", write(nil), "no CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCABundle(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadCABundle = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if cas, err := LoadCABundle(bundle(t, a)); err != nil || len(cas) != 1 {
		t.Errorf("LoadCABundle(one CA) = %d, %v; want it", len(cas), err)
	}
}

// FuzzParseCABundle feeds arbitrary files to the ca.crt parser: it must
// never panic, and whatever it accepts is one or two CA certificates of
// one federation that encode back to the blocks they came from.
func FuzzParseCABundle(f *testing.F) {
	a, b := newTestCA(f, "fed"), newTestCA(f, "fed")
	one := pemEncode(pemCertificate, a.Certificate().Raw)
	f.Add(one)
	f.Add(append(append([]byte{}, one...), pemEncode(pemCertificate, b.Certificate().Raw)...))
	f.Add(append(append([]byte{}, one...), one...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cas, err := parseCABundle(data)
		if err != nil {
			return
		}
		if len(cas) == 0 || len(cas) > MaxCABundle {
			t.Fatalf("parseCABundle accepted %d certificates", len(cas))
		}
		for _, c := range cas {
			if !c.IsCA {
				t.Fatalf("parseCABundle accepted a certificate that is not a CA")
			}
			again, err := x509.ParseCertificate(c.Raw)
			if err != nil || !again.Equal(c) {
				t.Fatalf("accepted certificate does not parse back: %v", err)
			}
		}
	})
}
