package secagg

import (
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
	"github.com/google/go-cmp/cmp"
)

func TestConfigValidate(t *testing.T) {
	valid := testConfig(10, 6, 0, 5)
	for _, tc := range []struct {
		name string
		f    func(*Config)
		want string // a substring of the error; "" for valid
	}{
		{"valid complete", func(*Config) {}, ""},
		{"valid k-regular", func(c *Config) { c.Degree, c.Threshold = 4, 3 }, ""},
		{"valid odd degree, even N", func(c *Config) { c.Degree, c.Threshold = 3, 3 }, ""},
		{"complete graph as Degree N-1", func(c *Config) { c.Degree = 9 }, ""},
		{"threshold = neighbourhood", func(c *Config) { c.Threshold = 10 }, ""},
		{"smallest: N=2", func(c *Config) { c.N, c.Threshold = 2, 2 }, ""},
		{"empty session", func(c *Config) { c.Session = nil }, "empty Session"},
		{"long session", func(c *Config) { c.Session = make([]byte, MaxSessionSize+1) }, "Session of 1025 bytes"},
		{"N=1", func(c *Config) { c.N = 1 }, "N = 1"},
		{"N too large", func(c *Config) { c.N = MaxParticipants + 1 }, "N = 10001"},
		{"threshold half the neighbourhood", func(c *Config) { c.Threshold = 5 }, "more than half the neighbourhood size 10"},
		{"threshold 1", func(c *Config) { c.Threshold = 1 }, "more than half"},
		{"threshold above the neighbourhood", func(c *Config) { c.Threshold = 11 }, "exceeds the neighbourhood size 10"},
		{"k-regular threshold half", func(c *Config) { c.Degree, c.Threshold = 5, 3 }, "more than half the neighbourhood size 6"},
		{"k-regular threshold above", func(c *Config) { c.Degree, c.Threshold = 4, 6 }, "exceeds the neighbourhood size 5"},
		{"negative degree", func(c *Config) { c.Degree = -1 }, "Degree = -1"},
		{"degree N", func(c *Config) { c.Degree = 10 }, "Degree = 10"},
		{"odd degree, odd N", func(c *Config) { c.N, c.Degree, c.Threshold = 9, 3, 3 }, "Degree·N must be even"},
		{"zero graph seed", func(c *Config) { c.Degree, c.Threshold, c.GraphSeed = 4, 3, [32]byte{} }, "GraphSeed is all zero"},
		{"zero graph seed, complete graph", func(c *Config) { c.GraphSeed = [32]byte{} }, ""},
		{"Dim 0", func(c *Config) { c.Dim = 0 }, "Dim = 0"},
		{"Dim too large", func(c *Config) { c.Dim = MaxDim + 1 }, "Dim = 134217729"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.f(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
		})
	}
}

// TestSessionBinding checks that every field of the Config changes the
// session digest, so that participants given different configurations
// cannot interoperate.
func TestSessionBinding(t *testing.T) {
	base := testConfig(10, 6, 4, 5)
	seen := map[[32]byte]string{base.sessionDigest(): "base"}
	for name, f := range map[string]func(*Config){
		"Session":   func(c *Config) { c.Session = append(c.Session, 'x') },
		"N":         func(c *Config) { c.N++ },
		"Threshold": func(c *Config) { c.Threshold++ },
		"Degree":    func(c *Config) { c.Degree++ },
		"GraphSeed": func(c *Config) { c.GraphSeed[31] ^= 1 },
		"Dim":       func(c *Config) { c.Dim++ },
	} {
		c := base
		c.Session = append([]byte(nil), base.Session...)
		f(&c)
		d := c.sessionDigest()
		if prev, dup := seen[d]; dup {
			t.Errorf("changing %s gives the digest of %s", name, prev)
		}
		seen[d] = name
	}
}

func TestMessageValidate(t *testing.T) {
	cfg := testConfig(5, 3, 0, 4)
	share := func(from, to uint32) *EncryptedShare {
		return &EncryptedShare{From: from, To: to, Ciphertext: make([]byte, ShareCiphertextSize)}
	}
	sig := []byte{1}
	for _, tc := range []struct {
		name string
		m    interface{ Validate(Config) error }
		want string // substring of the ErrMalformed error; "" for valid
	}{
		{"advertise ok", &AdvertiseKeys{ID: 1, Sig: sig}, ""},
		{"advertise id 0", &AdvertiseKeys{ID: 0, Sig: sig}, "participant 0 not in 1..5"},
		{"advertise id 6", &AdvertiseKeys{ID: 6, Sig: sig}, "participant 6 not in 1..5"},
		{"advertise no sig", &AdvertiseKeys{ID: 1}, "signature of 0 bytes"},
		{"advertise huge sig", &AdvertiseKeys{ID: 1, Sig: make([]byte, MaxSignatureSize+1)}, "signature of 513 bytes"},
		{"share ok", share(1, 2), ""},
		{"share to itself", share(2, 2), "to itself"},
		{"share short", &EncryptedShare{From: 1, To: 2, Ciphertext: make([]byte, 79)}, "ciphertext of 79 bytes"},
		{"share recipient 0", share(1, 0), "share recipient 0"},
		{"shares ok", &ShareKeys{ID: 1, Shares: []*EncryptedShare{share(1, 2), share(1, 5)}}, ""},
		{"shares nil share", &ShareKeys{ID: 1, Shares: []*EncryptedShare{nil}}, "nil share"},
		{"shares other sender", &ShareKeys{ID: 1, Shares: []*EncryptedShare{share(3, 2)}}, "share from participant 3"},
		{"shares duplicate recipient", &ShareKeys{ID: 1, Shares: []*EncryptedShare{share(1, 2), share(1, 2)}}, "not sorted"},
		{"shares too many", &ShareKeys{ID: 1, Shares: []*EncryptedShare{share(1, 2), share(1, 3), share(1, 4), share(1, 5), share(1, 5)}}, "5 shares, at most N-1 = 4"},
		{"masked ok", &MaskedInput{ID: 5, Masked: make([]uint32, 4)}, ""},
		{"masked long", &MaskedInput{ID: 5, Masked: make([]uint32, 5)}, "5 words, want Dim = 4"},
		{"consistency ok", &ConsistencySig{ID: 2, Sig: sig}, ""},
		{"consistency no sig", &ConsistencySig{ID: 2}, "0 bytes"},
		{"request ok", &UnmaskRequest{ID: 1, Survivors: []uint32{1, 2, 3}, Dropped: []uint32{4}, Sigs: []*ConsistencySig{{ID: 1, Sig: sig}, {ID: 3, Sig: sig}}}, ""},
		{"request unsorted survivors", &UnmaskRequest{ID: 1, Survivors: []uint32{2, 1}}, "survivors not strictly increasing"},
		{"request duplicate dropped", &UnmaskRequest{ID: 1, Dropped: []uint32{4, 4}}, "dropped participants not strictly increasing"},
		{"request too many survivors", &UnmaskRequest{ID: 1, Survivors: []uint32{1, 2, 3, 4, 5, 6}}, "6 survivors, at most N = 5"},
		{"request duplicate signer", &UnmaskRequest{ID: 1, Sigs: []*ConsistencySig{{ID: 1, Sig: sig}, {ID: 1, Sig: sig}}}, "distinct signers"},
		{"request nil sig", &UnmaskRequest{ID: 1, Sigs: []*ConsistencySig{nil}}, "nil consistency signature"},
		{"response ok", &UnmaskResponse{ID: 1, SelfShares: []Share{{Owner: 1}, {Owner: 2}}, KeyShares: []Share{{Owner: 4}}}, ""},
		{"response unsorted", &UnmaskResponse{ID: 1, SelfShares: []Share{{Owner: 2}, {Owner: 1}}}, "self-mask shares not sorted"},
		{"response owner 0", &UnmaskResponse{ID: 1, KeyShares: []Share{{Owner: 0}}}, "owner of mask-key shares 0"},
		{"response non-canonical", &UnmaskResponse{ID: 1, KeyShares: []Share{{Owner: 2, Value: [32]byte{31: 0x20}}}}, "not a canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

func TestPublicKeyVerifier(t *testing.T) {
	edPub, edPriv, err := ed25519.GenerateKey(seededRand(3))
	if err != nil {
		t.Fatal(err)
	}
	ec := identities()[1]
	keys := map[uint32]crypto.PublicKey{1: &ec.PublicKey, 2: edPub, 3: "unsupported"}
	verify := PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := keys[id]; ok {
			return k, nil
		}
		return nil, errors.New("unknown")
	})
	msg := []byte("message")
	ecSig, err := sign(ec, nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	edSig, err := sign(edPriv, nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   uint32
		msg  []byte
		sig  []byte
		ok   bool
	}{
		{"ECDSA", 1, msg, ecSig, true},
		{"Ed25519", 2, msg, edSig, true},
		{"ECDSA other message", 1, []byte("other"), ecSig, false},
		{"Ed25519 other message", 2, []byte("other"), edSig, false},
		{"ECDSA signature, Ed25519 key", 2, msg, ecSig, false},
		{"unsupported key", 3, msg, ecSig, false},
		{"unknown participant", 4, msg, ecSig, false},
	} {
		if err := verify(tc.id, tc.msg, tc.sig); (err == nil) != tc.ok {
			t.Errorf("%s: verify = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/protocol_v1.json (only for a deliberate, versioned change of the protocol)")

// vectors are known answers for everything two implementations (or two
// versions) must agree on: the session digest, the graph, the signed
// messages, the key derivations and a whole masked input. A change here
// breaks interoperability between coordinator and participants, so it
// needs a new protocol version (the domain string), not just
// -update-vectors.
type vectors struct {
	Config             vectorConfig        `json:"config"`
	SessionDigest      string              `json:"session_digest"`
	Neighbours         map[string][]uint32 `json:"neighbours"`
	AdvertiseMessage   string              `json:"advertise_message"`
	ConsistencyMessage string              `json:"consistency_message"`
	PairSeed           string              `json:"pair_seed"`
	SelfSeed           string              `json:"self_seed"`
	SelfCommit         string              `json:"self_commit"`
	ShareKey           string              `json:"share_key"`
	ShareAD            string              `json:"share_ad"`
	// MaskedInput is participant 1's masked input in a session of 3 whose
	// clients draw their randomness from seededRand(1000+id), with input
	// 0, 1, 2, ...
	MaskedInput []uint32 `json:"masked_input_participant_1"`
}

type vectorConfig struct {
	Session   string `json:"session"`
	N         int    `json:"n"`
	Threshold int    `json:"threshold"`
	Degree    int    `json:"degree"`
	GraphSeed string `json:"graph_seed"`
	Dim       int    `json:"dim"`
}

func computeVectors(t *testing.T) vectors {
	cfg := testConfig(10, 3, 4, 8)
	d := cfg.sessionDigest()
	v := vectors{
		Config:        vectorConfig{string(cfg.Session), cfg.N, cfg.Threshold, cfg.Degree, hex.EncodeToString(cfg.GraphSeed[:]), cfg.Dim},
		SessionDigest: hex.EncodeToString(d[:]),
		Neighbours:    map[string][]uint32{},
	}
	for id := uint32(1); id <= uint32(cfg.N); id++ {
		v.Neighbours[fmt.Sprint(id)] = cfg.Neighbours(id)
	}
	k1, k2, k3 := x25519.Key{1}, x25519.Key{2}, x25519.Key{3}
	v.AdvertiseMessage = hex.EncodeToString(advertiseMessage(&d, 7, &k1, &k2))
	v.ConsistencyMessage = hex.EncodeToString(consistencyMessage(&d, 7, []uint32{1, 2, 7}))
	ps := pairSeed(&k3, &d, 9, 2, &k1, &k2)
	v.PairSeed = hex.EncodeToString(ps[:])
	ss := selfSeed(k3[:], &d, 4)
	v.SelfSeed = hex.EncodeToString(ss[:])
	sc := selfCommit(k3[:], &d, 4)
	v.SelfCommit = hex.EncodeToString(sc[:])
	sk := shareKey(&k3, &d, 2, 9, &k1, &k2)
	v.ShareKey = hex.EncodeToString(sk[:])
	v.ShareAD = hex.EncodeToString(shareAD(&d, 2, 9))

	small := testConfig(3, 2, 0, 8)
	inputs := make([][]uint32, 4)
	for id := 1; id <= 3; id++ {
		inputs[id] = make([]uint32, small.Dim)
		for i := range inputs[id] {
			inputs[id][i] = uint32(i)
		}
	}
	s := newSession(t, small, inputs, 1)
	if _, _, err := s.run(); err != nil {
		t.Fatal(err)
	}
	v.MaskedInput = s.masked[0].Masked
	return v
}

// TestVectors compares everything derived deterministically with
// testdata/protocol_v1.json.
func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "protocol_v1.json")
	got := computeVectors(t)
	if *updateVectors {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want vectors
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("derived values differ from %s (-want +got):\n%s", path, diff)
	}
}

// TestRecoverAll compares the server's batched reconstruction with
// circl's secretsharing.Recover and with the secret itself, for holder
// sets that repeat (one basis serves several secrets) and that differ,
// with more shares than needed, and with too few (an error for that
// secret only).
func TestRecoverAll(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	for _, threshold := range []int{2, 3, 5, 51} {
		var held [][]heldShare
		var want []group.Scalar
		for trial := range 20 {
			secret, err := randomScalar(seededRand(uint64(trial)))
			if err != nil {
				t.Fatal(err)
			}
			holders := []uint32{}
			for _, i := range r.Perm(100)[:threshold+r.IntN(3)] {
				holders = append(holders, uint32(i+1))
			}
			if trial%2 == 1 { // repeat a holder set: a shared basis
				holders = nil
				for i := range threshold {
					holders = append(holders, uint32(i+1))
				}
			}
			shares := splitSecret(seededRand(uint64(trial)), threshold, secret, holders)
			var h []heldShare
			var circl []secretsharing.Share
			for _, id := range holders {
				v := shares[id]
				s, err := decodeScalar(&v)
				if err != nil {
					t.Fatal(err)
				}
				h = append(h, heldShare{holder: id, value: s})
				circl = append(circl, secretsharing.Share{ID: idScalar(id), Value: s})
			}
			c, err := secretsharing.Recover(uint(threshold-1), circl)
			if err != nil {
				t.Fatal(err)
			}
			if !c.IsEqual(secret) {
				t.Fatalf("threshold %d: circl recovered %v, secret %v", threshold, c, secret)
			}
			if trial%5 == 4 { // one share short
				h, secret = h[:threshold-1], nil
			}
			held = append(held, h)
			want = append(want, secret)
		}
		got, errs := recoverAll(threshold, held)
		for i := range held {
			switch {
			case want[i] == nil && errs[i] == nil:
				t.Fatalf("threshold %d, secret %d: recovered from %d shares", threshold, i, len(held[i]))
			case want[i] != nil && errs[i] != nil:
				t.Fatalf("threshold %d, secret %d: %v", threshold, i, errs[i])
			case want[i] != nil && !got[i].IsEqual(want[i]):
				t.Fatalf("threshold %d, secret %d: recovered %v, want %v", threshold, i, got[i], want[i])
			}
		}
	}
}

// probeShared reports whether circl's x25519.Shared accepts pub (as
// checkPublicKey did before issue 16): it refuses a low-order point
// whatever the secret.
func probeShared(pub *x25519.Key) bool {
	var probe, out x25519.Key
	probe[0] = 1
	return x25519.Shared(&out, &probe, pub)
}

// nearMisses are encodings next to the low-order ones that are not of
// small order: p−2, p+2 (= 2), 2, 2^255−1 (= 18), the order-8 points
// with their lowest byte changed, and a public key made by KeyGen.
var nearMisses = func() []x25519.Key {
	out := hexKeys(
		"ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0200000000000000000000000000000000000000000000000000000000000000",
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e1eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5e9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	)
	var pub x25519.Key
	x25519.KeyGen(&pub, &x25519.Key{1, 2, 3})
	out = append(out, pub)
	for _, k := range slices.Clone(out) {
		k[31] |= 0x80
		out = append(out, k)
	}
	return out
}()

// TestCheckPublicKey checks the blocklist against the encodings of the
// low-order points written out independently (lowOrderPoints, each with
// and without bit 255), so that dropping an entry of smallOrder fails
// here, and that circl's Shared refuses exactly the same keys among them
// and the near misses.
func TestCheckPublicKey(t *testing.T) {
	for _, k := range lowOrderPoints {
		if err := checkPublicKey(&k); !errors.Is(err, ErrBadKey) {
			t.Errorf("checkPublicKey(%x) = %v, want ErrBadKey", k[:], err)
		}
		if probeShared(&k) {
			t.Errorf("x25519.Shared accepts the low-order point %x", k[:])
		}
	}
	for _, k := range nearMisses {
		if err := checkPublicKey(&k); err != nil {
			t.Errorf("checkPublicKey(%x) = %v, want nil", k[:], err)
		}
		if !probeShared(&k) {
			t.Errorf("x25519.Shared refuses %x, not of small order", k[:])
		}
	}
	// The error names the key as received, bit 255 included.
	k := lowOrderPoints[1]
	k[31] |= 0x80
	want := "secagg: invalid X25519 public key: " + hex.EncodeToString(k[:]) + " is a point of small order"
	if err := checkPublicKey(&k); err == nil || err.Error() != want {
		t.Errorf("checkPublicKey(%x) = %v, want %q", k[:], err, want)
	}
}

// FuzzCheckPublicKey checks that checkPublicKey rejects a key exactly
// when circl's x25519.Shared (which the agreements use) refuses it.
func FuzzCheckPublicKey(f *testing.F) {
	for _, k := range slices.Concat(lowOrderPoints, nearMisses) {
		f.Add(k[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var k x25519.Key // the first 32 bytes, zero-padded
		copy(k[:], b)
		err := checkPublicKey(&k)
		if err != nil && !errors.Is(err, ErrBadKey) {
			t.Fatalf("checkPublicKey(%x) = %v, want nil or ErrBadKey", k[:], err)
		}
		if shared := probeShared(&k); shared != (err == nil) {
			t.Fatalf("checkPublicKey(%x) = %v, but x25519.Shared returns %v", k[:], err, shared)
		}
	})
}
