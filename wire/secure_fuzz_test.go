package wire_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// FuzzResponse feeds arbitrary bytes as the coordinator's answer in a
// secure session through every reader the participant applies to it (see
// participant's secureSession.accept): none may panic, each structural
// refusal wraps ErrMessage, and what they accept fits the bucket. Relayed
// certificates that KeysFromProto lets through go on to PeerKeys with a
// real CA: what it accepts must be that CA's certificate for the bucket
// member the session id stands for. (FuzzRequest is the coordinator's
// side.)
func FuzzResponse(f *testing.F) {
	const n = 3
	members := []string{"hospital-a", "hospital-b", "hospital-c"}
	ca, err := certs.Init(filepath.Join(f.TempDir(), "ca"), "demo", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	_, csr, err := certs.NewParticipantRequest("demo", "hospital-b")
	if err != nil {
		f.Fatal(err)
	}
	pemCert, err := ca.Sign(csr, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	block, _ := pem.Decode(pemCert)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	adv := &fedguardv1.SecureAdvertise{CPub: make([]byte, 32), SPub: make([]byte, 32), Signature: []byte{1}}
	share := &fedguardv1.SecureShare{From: 1, To: 2, Ciphertext: make([]byte, secagg.ShareCiphertextSize)}
	f.Add([]byte{})
	protofuzz.Seed(f,
		&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Keys{Keys: &fedguardv1.SecureKeys{
			Peers: []*fedguardv1.SecurePeer{{Id: 2, Advertise: adv, Certificate: block.Bytes}},
		}}},
		&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Shares{Shares: &fedguardv1.SecureRoutedShares{
			Shares: []*fedguardv1.SecureShare{share, share},
		}}},
		&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Survivors{Survivors: &fedguardv1.SecureSurvivors{Ids: []uint32{1, 2, 3}}}},
		&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Unmask{Unmask: &fedguardv1.SecureUnmaskRequest{
			Survivors: []uint32{1, 2}, Dropped: []uint32{3},
			Signatures: []*fedguardv1.SecureSignerSignature{{Id: 1, Signature: []byte{1}}, {Id: 2, Signature: []byte{2}}},
		}}},
	)
	protofuzz.Fuzz(f, func(t *testing.T, resp *fedguardv1.SecureAggregateResponse) {
		refused := func(what string, err error) bool {
			t.Helper()
			if err != nil && !errors.Is(err, wire.ErrMessage) {
				t.Fatalf("%s refused with %v, which does not wrap ErrMessage", what, err)
			}
			return err != nil
		}
		peers, err := wire.KeysFromProto(resp.GetKeys(), n)
		if !refused("KeysFromProto", err) {
			if len(peers) > n {
				t.Fatalf("accepted %d advertisements in a bucket of %d", len(peers), n)
			}
			for _, p := range peers {
				if p.Advertise.ID < 1 || p.Advertise.ID > n || len(p.Certificate) == 0 || len(p.Certificate) > wire.MaxCertificateSize || len(p.Advertise.Sig) == 0 {
					t.Fatalf("accepted advertisement of participant %d with a certificate of %d bytes and a signature of %d", p.Advertise.ID, len(p.Certificate), len(p.Advertise.Sig))
				}
			}
			keys, err := wire.PeerKeys(peers, "demo", members, roots, time.Now())
			if err == nil {
				if len(keys) != len(peers) {
					t.Fatalf("PeerKeys returned %d keys for %d peers", len(keys), len(peers))
				}
				for _, p := range peers {
					c, err := x509.ParseCertificate(p.Certificate)
					if err != nil {
						t.Fatalf("PeerKeys accepted a certificate that does not parse: %v", err)
					}
					who, err := certs.ParseIdentity(c)
					if err != nil || who.Name != members[p.Advertise.ID-1] || who.Federation != "demo" || who.Role != certs.RoleParticipant {
						t.Fatalf("PeerKeys accepted %v (%v) for member %d, %s", who, err, p.Advertise.ID, members[p.Advertise.ID-1])
					}
				}
			}
		}
		if routed, err := wire.RoutedFromProto(resp.GetShares(), n); !refused("RoutedFromProto", err) {
			if len(routed) > n-1 {
				t.Fatalf("accepted %d routed shares in a bucket of %d", len(routed), n)
			}
			for _, s := range routed {
				if len(s.Ciphertext) != secagg.ShareCiphertextSize {
					t.Fatalf("accepted a share of %d bytes", len(s.Ciphertext))
				}
			}
		}
		if ids, err := wire.SurvivorsFromProto(resp.GetSurvivors(), n); !refused("SurvivorsFromProto", err) && len(ids) > n {
			t.Fatalf("accepted %d survivors in a bucket of %d", len(ids), n)
		}
		if r, err := wire.UnmaskRequestFromProto(2, n, resp.GetUnmask()); !refused("UnmaskRequestFromProto", err) {
			if r.ID != 2 || len(r.Survivors) > n || len(r.Dropped) > n || len(r.Sigs) > n {
				t.Fatalf("accepted unmask request for %d with %d survivors, %d dropped, %d signatures", r.ID, len(r.Survivors), len(r.Dropped), len(r.Sigs))
			}
		}
	})
}
