package wire_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// addOverWire adds c to asm as the receiver gets it: marshalled and
// unmarshalled again.
func addOverWire(asm *wire.MaskedAssembler, c *fedguardv1.SecureMaskedChunk) error {
	b, err := proto.Marshal(c)
	if err != nil {
		return err
	}
	var got fedguardv1.SecureMaskedChunk
	if err := proto.Unmarshal(b, &got); err != nil {
		return err
	}
	return asm.Add(&got)
}

func TestMaskedRoundTrip(t *testing.T) {
	per := wire.ChunkBytes / 4
	for _, dim := range []int{1, 7, per, per + 1, 3*per - 1} {
		words := make([]uint32, dim)
		for i := range words {
			words[i] = uint32(i)*2654435761 + 1
		}
		asm := wire.NewMaskedAssembler(dim)
		chunks := 0
		err := wire.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
			chunks++
			if asm.Done() {
				t.Errorf("assembler done before chunk %d", chunks)
			}
			return addOverWire(asm, c)
		})
		if err != nil {
			t.Fatalf("dim %d: %v", dim, err)
		}
		if want := (dim + per - 1) / per; chunks != want {
			t.Errorf("dim %d: %d chunks, want %d", dim, chunks, want)
		}
		if !asm.Done() || !slices.Equal(asm.Words(), words) {
			t.Errorf("dim %d: assembled words differ", dim)
		}
	}
}

func TestMaskedAssemblerRefusals(t *testing.T) {
	chunk := func(off, words uint64, n int) *fedguardv1.SecureMaskedChunk {
		return &fedguardv1.SecureMaskedChunk{Offset: off, Words: words, Data: make([]byte, n)}
	}
	for _, tt := range []struct {
		name   string
		chunks []*fedguardv1.SecureMaskedChunk
		want   string
	}{
		{"wrong length", []*fedguardv1.SecureMaskedChunk{chunk(0, 9, 8)}, "9 words"},
		{"gap", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 8), chunk(3, 8, 8)}, "at word 3, expected 2"},
		{"overlap", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 8), chunk(1, 8, 8)}, "at word 1, expected 2"},
		{"ragged", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 7)}, "7 bytes"},
		{"empty", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 0)}, "0 bytes"},
		{"past the end", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 24), chunk(6, 8, 12)}, "runs past 8 words"},
		{"too large", []*fedguardv1.SecureMaskedChunk{chunk(0, 1<<20, wire.ChunkBytes+4)}, "at most"},
		{"short data version", []*fedguardv1.SecureMaskedChunk{withData(chunk(0, 8, 8), 31)}, "data_sha256 has 31 bytes, want 0 or 32"},
		{"long data version", []*fedguardv1.SecureMaskedChunk{withData(chunk(0, 8, 8), 33)}, "data_sha256 has 33 bytes, want 0 or 32"},
		{"data version on a later chunk", []*fedguardv1.SecureMaskedChunk{chunk(0, 8, 8), withData(chunk(2, 8, 8), 32)}, "data_sha256 on the masked chunk at word 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dim := int(tt.chunks[0].GetWords())
			if tt.name == "wrong length" {
				dim = 8
			}
			asm := wire.NewMaskedAssembler(dim)
			var err error
			for _, c := range tt.chunks {
				if err = asm.Add(c); err != nil {
					break
				}
			}
			if !errors.Is(err, wire.ErrMessage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Add = %v, want ErrMessage naming %q", err, tt.want)
			}
		})
	}
}

func TestFromProtoRefusals(t *testing.T) {
	good := &fedguardv1.SecureAdvertise{CPub: make([]byte, 32), SPub: make([]byte, 32), Signature: []byte{1}}
	share := func(n int) *fedguardv1.SecureShare {
		return &fedguardv1.SecureShare{From: 1, To: 2, Ciphertext: make([]byte, n)}
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"advertisement missing", second(wire.AdvertiseFromProto(1, nil)), "missing"},
		{"short key", second(wire.AdvertiseFromProto(1, &fedguardv1.SecureAdvertise{CPub: make([]byte, 31), SPub: make([]byte, 32), Signature: []byte{1}})), "31 and 32 bytes"},
		{"no signature", second(wire.AdvertiseFromProto(1, &fedguardv1.SecureAdvertise{CPub: make([]byte, 32), SPub: make([]byte, 32)})), "signature of 0 bytes"},
		{"huge signature", second(wire.AdvertiseFromProto(1, &fedguardv1.SecureAdvertise{CPub: make([]byte, 32), SPub: make([]byte, 32), Signature: make([]byte, secagg.MaxSignatureSize+1)})), "signature of"},
		{"too many peers", second(wire.KeysFromProto(&fedguardv1.SecureKeys{Peers: make([]*fedguardv1.SecurePeer, 3)}, 2)), "3 advertisements"},
		{"peer id zero", second(wire.KeysFromProto(&fedguardv1.SecureKeys{Peers: []*fedguardv1.SecurePeer{{Id: 0, Advertise: good, Certificate: []byte{1}}}}, 2)), "participant 0"},
		{"peer without certificate", second(wire.KeysFromProto(&fedguardv1.SecureKeys{Peers: []*fedguardv1.SecurePeer{{Id: 1, Advertise: good}}}, 2)), "0 bytes"},
		{"short commitment", second(wire.SharesFromProto(1, 3, &fedguardv1.SecureShares{SelfCommit: make([]byte, 3)})), "commitment of 3 bytes"},
		{"too many shares", second(wire.SharesFromProto(1, 3, &fedguardv1.SecureShares{SelfCommit: make([]byte, 32), Shares: []*fedguardv1.SecureShare{share(secagg.ShareCiphertextSize), share(secagg.ShareCiphertextSize), share(secagg.ShareCiphertextSize)}})), "3 shares"},
		{"short ciphertext", second(wire.RoutedFromProto(&fedguardv1.SecureRoutedShares{Shares: []*fedguardv1.SecureShare{share(5)}}, 3)), "5 bytes"},
		{"too many survivors", second(wire.SurvivorsFromProto(&fedguardv1.SecureSurvivors{Ids: []uint32{1, 2, 3}}, 2)), "3 survivors"},
		{"too many signatures", second(wire.UnmaskRequestFromProto(1, 2, &fedguardv1.SecureUnmaskRequest{Signatures: make([]*fedguardv1.SecureSignerSignature, 3)})), "3 signatures"},
		{"short revealed share", second(wire.UnmaskResponseFromProto(1, 2, &fedguardv1.SecureUnmaskResponse{KeyShares: []*fedguardv1.SecureRevealed{{Owner: 2, Value: []byte{1}}}})), "1 bytes"},
	} {
		if !errors.Is(tt.err, wire.ErrMessage) || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrMessage naming %q", tt.name, tt.err, tt.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestPeerKeys checks relayed certificates with real ones from a real CA:
// the right member's certificate passes, another member's (a coordinator
// swapping keys), another federation's and another CA's do not.
func TestPeerKeys(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.Init(filepath.Join(dir, "ca"), "demo", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.Init(filepath.Join(dir, "other"), "demo", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *certs.Authority, fed, name string) []byte {
		_, csr, err := certs.NewParticipantRequest(fed, name)
		if err != nil {
			t.Fatal(err)
		}
		if fed != a.Federation() {
			// The authority refuses foreign requests; use a second CA of
			// that federation instead.
			b, err := certs.Init(filepath.Join(t.TempDir(), "ca"), fed, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			a = b
		}
		pemCert, err := a.Sign(csr, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(pemCert)
		if block == nil {
			t.Fatal("no PEM block in the signed certificate")
		}
		return block.Bytes
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	members := []string{"hospital-a", "hospital-b"}
	adv := &secagg.AdvertiseKeys{ID: 2}
	for _, tt := range []struct {
		name string
		cert []byte
		want string // "" means accepted
	}{
		{"right member", issue(ca, "demo", "hospital-b"), ""},
		{"another member's certificate", issue(ca, "demo", "hospital-a"), "names"},
		{"another CA", issue(other, "demo", "hospital-b"), "certificate relayed for participant 2"},
		{"not a certificate", []byte("junk"), "certificate of participant 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := wire.PeerKeys([]wire.Peer{{Advertise: adv, Certificate: tt.cert}}, "demo", members, roots, time.Now())
			if tt.want == "" {
				if err != nil || keys[2] == nil {
					t.Fatalf("PeerKeys = %v, %v; want the key of participant 2", keys, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PeerKeys = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// FuzzRequest feeds arbitrary bytes as a participant's message through
// every reader the coordinator applies to it: none may panic, and what
// they accept must fit the bucket.
func FuzzRequest(f *testing.F) {
	f.Add([]byte{})
	protofuzz.Seed(f,
		&fedguardv1.SecureAggregateRequest{Round: 1, Body: &fedguardv1.SecureAggregateRequest_Shares{Shares: &fedguardv1.SecureShares{
			SelfCommit: make([]byte, 32), Shares: []*fedguardv1.SecureShare{{From: 1, To: 2, Ciphertext: make([]byte, secagg.ShareCiphertextSize)}},
		}}},
		&fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Masked{Masked: &fedguardv1.SecureMaskedChunk{Words: 3, Data: make([]byte, 12)}}},
	)
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.SecureAggregateRequest) {
		const n = 4
		if m, err := wire.AdvertiseFromProto(1, req.GetAdvertise()); err == nil && len(m.Sig) == 0 {
			t.Errorf("accepted an advertisement without a signature")
		}
		if m, err := wire.SharesFromProto(1, n, req.GetShares()); err == nil && len(m.Shares) > n-1 {
			t.Errorf("accepted %d shares in a bucket of %d", len(m.Shares), n)
		}
		asm := wire.NewMaskedAssembler(3)
		if asm.Add(req.GetMasked()) == nil && len(asm.Words()) != 3 {
			t.Errorf("assembler changed its length")
		}
		if r, err := wire.UnmaskResponseFromProto(1, n, req.GetUnmask()); err == nil && len(r.SelfShares)+len(r.KeyShares) > 2*n {
			t.Errorf("accepted %d revealed shares", len(r.SelfShares)+len(r.KeyShares))
		}
	})
}

// withData sets a data version of n bytes on c.
func withData(c *fedguardv1.SecureMaskedChunk, n int) *fedguardv1.SecureMaskedChunk {
	c.DataSha256 = make([]byte, n)
	return c
}

// TestMaskedDataVersion: the data version the first chunk carries is the
// assembler's; a masked input without one has none.
func TestMaskedDataVersion(t *testing.T) {
	per := wire.ChunkBytes / 4
	data := make([]byte, 32)
	for i := range data {
		data[i] = byte(i + 1)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{{"reported", data}, {"not reported", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			words := make([]uint32, 2*per+1)
			asm := wire.NewMaskedAssembler(len(words))
			err := wire.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
				if c.GetOffset() == 0 {
					c.DataSha256 = tt.data
				}
				return addOverWire(asm, c)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := asm.DataSHA256(); !slices.Equal(got, tt.data) {
				t.Errorf("DataSHA256() = %x, want %x", got, tt.data)
			}
		})
	}
}

// TestMaskedPrivacyLedger: the ledger the first chunk carries is the
// assembler's; a malformed one, or one on a later chunk, is refused.
func TestMaskedPrivacyLedger(t *testing.T) {
	per := wire.ChunkBytes / 4
	good := &fedguardv1.PrivacyLedger{Epsilon: 2.5, Delta: 1e-5, Budget: 8}
	for _, tt := range []struct {
		name   string
		ledger *fedguardv1.PrivacyLedger
		on     uint64 // the chunk offset it rides on
		ok     bool
	}{
		{"reported", good, 0, true},
		{"not reported", nil, 0, true},
		{"on a later chunk", good, uint64(per), false},
		{"NaN epsilon", &fedguardv1.PrivacyLedger{Epsilon: math.NaN(), Delta: 1e-5}, 0, false},
		{"delta 0", &fedguardv1.PrivacyLedger{Epsilon: 1}, 0, false},
		{"negative budget", &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5, Budget: -1}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			words := make([]uint32, 2*per+1)
			asm := wire.NewMaskedAssembler(len(words))
			err := wire.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
				if c.GetOffset() == tt.on {
					c.Privacy = tt.ledger
				}
				return asm.Add(c)
			})
			if tt.ok != (err == nil) {
				t.Fatalf("assembling = %v, want ok %v", err, tt.ok)
			}
			if tt.ok && !proto.Equal(asm.Privacy(), tt.ledger) {
				t.Errorf("Privacy() = %v, want %v", asm.Privacy(), tt.ledger)
			}
			if !tt.ok && !errors.Is(err, wire.ErrMessage) {
				t.Errorf("error %v, want ErrMessage", err)
			}
		})
	}
}

// TestMaskedDistributedPrivacyLedger: the federation-level ledger the
// first chunk carries is the assembler's, beside the record-level one; a
// malformed one (numbers, releases out of bounds), or one on a later
// chunk, is refused.
func TestMaskedDistributedPrivacyLedger(t *testing.T) {
	per := wire.ChunkBytes / 4
	good := &fedguardv1.DistributedPrivacyLedger{Epsilon: 3.5, Delta: 1e-5, Budget: 10, Releases: 4}
	for _, tt := range []struct {
		name   string
		ledger *fedguardv1.DistributedPrivacyLedger
		on     uint64 // the chunk offset it rides on
		ok     bool
	}{
		{"reported", good, 0, true},
		{"no budget", &fedguardv1.DistributedPrivacyLedger{Epsilon: 3.5, Delta: 1e-5, Releases: 1}, 0, true},
		{"most releases", &fedguardv1.DistributedPrivacyLedger{Epsilon: 3.5, Delta: 1e-5, Releases: wire.MaxDistributedReleases}, 0, true},
		{"not reported", nil, 0, true},
		{"on a later chunk", good, uint64(per), false},
		{"NaN epsilon", &fedguardv1.DistributedPrivacyLedger{Epsilon: math.NaN(), Delta: 1e-5, Releases: 1}, 0, false},
		{"infinite epsilon", &fedguardv1.DistributedPrivacyLedger{Epsilon: math.Inf(1), Delta: 1e-5, Releases: 1}, 0, false},
		{"negative epsilon", &fedguardv1.DistributedPrivacyLedger{Epsilon: -1, Delta: 1e-5, Releases: 1}, 0, false},
		{"delta 0", &fedguardv1.DistributedPrivacyLedger{Epsilon: 1, Releases: 1}, 0, false},
		{"delta 1", &fedguardv1.DistributedPrivacyLedger{Epsilon: 1, Delta: 1, Releases: 1}, 0, false},
		{"infinite budget", &fedguardv1.DistributedPrivacyLedger{Epsilon: 1, Delta: 1e-5, Budget: math.Inf(1), Releases: 1}, 0, false},
		{"no release", &fedguardv1.DistributedPrivacyLedger{Epsilon: 1, Delta: 1e-5}, 0, false},
		{"too many releases", &fedguardv1.DistributedPrivacyLedger{Epsilon: 1, Delta: 1e-5, Releases: wire.MaxDistributedReleases + 1}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			words := make([]uint32, 2*per+1)
			asm := wire.NewMaskedAssembler(len(words))
			record := &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5}
			err := wire.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
				if c.GetOffset() == 0 {
					c.Privacy = record
				}
				if c.GetOffset() == tt.on {
					c.DistributedPrivacy = tt.ledger
				}
				return addOverWire(asm, c)
			})
			if tt.ok != (err == nil) {
				t.Fatalf("assembling = %v, want ok %v", err, tt.ok)
			}
			if tt.ok && (!proto.Equal(asm.DistributedPrivacy(), tt.ledger) || !proto.Equal(asm.Privacy(), record)) {
				t.Errorf("DistributedPrivacy() = %v, Privacy() = %v; want %v, %v", asm.DistributedPrivacy(), asm.Privacy(), tt.ledger, record)
			}
			if !tt.ok && (!errors.Is(err, wire.ErrMessage) || !strings.Contains(err.Error(), "distributed_privacy")) {
				t.Errorf("error %v, want ErrMessage naming distributed_privacy", err)
			}
		})
	}
}
