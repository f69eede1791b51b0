package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring; "" means valid
	}{
		{"st-mary", ""},
		{"a", ""},
		{"hospital.eu-1", ""},
		{strings.Repeat("a", 63), ""},
		{"", "empty"},
		{strings.Repeat("a", 64), "more than 63"},
		{"St-Mary", "character 'S'"},
		{"st mary", "character ' '"},
		{"st_mary", "character '_'"},
		{"st/mary", "character '/'"},
		{"-mary", "start and end"},
		{"mary.", "start and end"},
		{"..", "start and end"},
		{"a..b", `contains ".."`},
		{"café", "character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.name)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateName(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestParseIdentityURI(t *testing.T) {
	tests := []struct {
		in   string
		want Identity
		ok   bool
	}{
		{"spiffe://fed/participant/st-mary", Identity{"fed", RoleParticipant, "st-mary"}, true},
		{"spiffe://fed.eu/coordinator", Identity{"fed.eu", RoleCoordinator, ""}, true},
		{"spiffe://fed/coordinator/x", Identity{}, false},
		{"spiffe://fed/participant/", Identity{}, false},
		{"spiffe://fed/participant/a/b", Identity{}, false},
		{"spiffe://fed/participant", Identity{}, false},
		{"spiffe://fed/admin/x", Identity{}, false},
		{"spiffe://FED/coordinator", Identity{}, false},
		{"spiffe://fed:443/coordinator", Identity{}, false},
		{"spiffe://u@fed/coordinator", Identity{}, false},
		{"spiffe://fed/coordinator?x=1", Identity{}, false},
		{"spiffe://fed/coordinator#x", Identity{}, false},
		{"spiffe://fed/participant/st%2Dmary", Identity{}, false},
		{"https://fed/coordinator", Identity{}, false},
		{"SPIFFE://fed/coordinator", Identity{}, false},
		{"spiffe:///coordinator", Identity{}, false},
		{"", Identity{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseIdentityURI(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseIdentityURI(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok && got.URI() != tt.in {
				t.Errorf("URI() = %q, want %q", got.URI(), tt.in)
			}
			if tt.ok && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestParseIdentity(t *testing.T) {
	u := func(s string) []*url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{p}
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    Identity
		wantErr string
	}{
		{"participant", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: client}, Identity{"f", RoleParticipant, "p"}, ""},
		{"coordinator", &x509.Certificate{URIs: u("spiffe://f/coordinator"), ExtKeyUsage: server, DNSNames: []string{"c.example"}}, Identity{"f", RoleCoordinator, ""}, ""},
		{"nil", nil, Identity{}, "no certificate"},
		{"ca", &x509.Certificate{IsCA: true, URIs: u("spiffe://f/coordinator"), ExtKeyUsage: server}, Identity{}, "CA certificate"},
		{"no uri", &x509.Certificate{ExtKeyUsage: client}, Identity{}, "0 URI SANs"},
		{"two uris", &x509.Certificate{URIs: append(u("spiffe://f/participant/p"), u("spiffe://f/participant/q")...), ExtKeyUsage: client}, Identity{}, "2 URI SANs"},
		{"email", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: client, EmailAddresses: []string{"a@b"}}, Identity{}, "e-mail"},
		{"bad uri", &x509.Certificate{URIs: u("spiffe://f/nurse/p"), ExtKeyUsage: client}, Identity{}, "want spiffe://"},
		{"participant server eku", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: server}, Identity{}, "only the clientAuth"},
		{"participant both eku", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: append(client, x509.ExtKeyUsageServerAuth)}, Identity{}, "only the clientAuth"},
		{"participant no eku", &x509.Certificate{URIs: u("spiffe://f/participant/p")}, Identity{}, "only the clientAuth"},
		{"participant dns", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: client, DNSNames: []string{"x"}}, Identity{}, "DNS or IP"},
		{"participant ip", &x509.Certificate{URIs: u("spiffe://f/participant/p"), ExtKeyUsage: client, IPAddresses: []net.IP{net.IPv4(1, 2, 3, 4)}}, Identity{}, "DNS or IP"},
		{"coordinator client eku", &x509.Certificate{URIs: u("spiffe://f/coordinator"), ExtKeyUsage: client}, Identity{}, "only the serverAuth"},
		{"unknown eku", &x509.Certificate{URIs: u("spiffe://f/coordinator"), ExtKeyUsage: server, UnknownExtKeyUsage: []asn1OID{{1, 2, 3}}}, Identity{}, "unknown extended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIdentity(tt.cert)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("ParseIdentity = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseIdentity = %v, %v; want error containing %q", got, err, tt.wantErr)
			}
		})
	}
}

type asn1OID = asn1.ObjectIdentifier

// TestCheckOwn: a process's own certificate of the other role or of
// another federation is refused as a *WrongIdentityError naming it (before
// the key-usage check, whose "incompatible key usage" would hide the
// mix-up); one from another CA fails the chain check; the right one gives
// its identity.
func TestCheckOwn(t *testing.T) {
	a := newTestCA(t, "clinic-net")
	other := newTestCA(t, "clinic-net")
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	leaf := func(certFile string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCertificatePEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serverCert, _ := serverFiles(t, a)
	_, _, hospital := enrol(t, a, "westbrook")
	_, _, foreign := enrol(t, other, "westbrook")
	_, _, elsewhere := issueRaw(t, a, Identity{Federation: "other-net", Role: RoleParticipant, Name: "westbrook"}, nil, nil,
		time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	coordinator := Identity{Federation: "clinic-net", Role: RoleCoordinator}
	for _, tt := range []struct {
		name      string
		cert      *x509.Certificate
		role      string
		want      Identity
		wrong     Identity // a *WrongIdentityError with this Got
		wantChain bool     // an x509 chain error
	}{
		{"coordinator's own", leaf(serverCert), RoleCoordinator, coordinator, Identity{}, false},
		{"hospital's own", hospital, RoleParticipant, Identity{Federation: "clinic-net", Role: RoleParticipant, Name: "westbrook"}, Identity{}, false},
		{"hospital's as the coordinator's", hospital, RoleCoordinator, Identity{}, Identity{Federation: "clinic-net", Role: RoleParticipant, Name: "westbrook"}, false},
		{"coordinator's as a hospital's", leaf(serverCert), RoleParticipant, Identity{}, coordinator, false},
		{"another federation's", elsewhere, RoleParticipant, Identity{}, Identity{Federation: "other-net", Role: RoleParticipant, Name: "westbrook"}, false},
		{"another CA's", foreign, RoleParticipant, Identity{}, Identity{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := CheckOwn(tt.cert, roots, tt.role, "clinic-net")
			var wrong *WrongIdentityError
			var unknown x509.UnknownAuthorityError
			switch {
			case !tt.wrong.IsZero():
				if !errors.As(err, &wrong) || wrong.Got != tt.wrong {
					t.Errorf("CheckOwn = %v, want a *WrongIdentityError naming %s", err, tt.wrong)
				}
			case tt.wantChain:
				if !errors.As(err, &unknown) {
					t.Errorf("CheckOwn = %v, want x509.UnknownAuthorityError", err)
				}
			case err != nil || id != tt.want:
				t.Errorf("CheckOwn = %v, %v; want %v, nil", id, err, tt.want)
			}
		})
	}
}

// TestLeaf: a key pair's leaf is its Leaf when crypto/tls filled it in,
// else its first certificate parsed; a pair with none is an error.
func TestLeaf(t *testing.T) {
	a := newTestCA(t, "clinic-net")
	_, _, hospital := enrol(t, a, "westbrook")
	for _, tt := range []struct {
		name string
		pair tls.Certificate
		want *x509.Certificate
	}{
		{"filled in", tls.Certificate{Leaf: hospital}, hospital},
		{"parsed", tls.Certificate{Certificate: [][]byte{hospital.Raw}}, hospital},
		{"none", tls.Certificate{}, nil},
	} {
		got, err := Leaf(&tt.pair)
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%s: Leaf = %v, want an error", tt.name, got)
		case tt.want != nil && (err != nil || !got.Equal(tt.want)):
			t.Errorf("%s: Leaf = %v, %v; want the hospital's certificate", tt.name, got, err)
		}
	}
}
