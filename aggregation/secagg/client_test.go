package secagg

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/google/go-cmp/cmp"
)

// runTo runs an honest session up to and including round last.
func runTo(t *testing.T, s *session, last Phase) {
	t.Helper()
	steps := []func() error{s.advertise, s.share, s.mask, s.consist}
	for i, step := range steps[:last] {
		if err := step(); err != nil {
			t.Fatalf("%v: %v", Phase(i+1), err)
		}
	}
}

// TestTamperedShare checks that a share ciphertext that fails
// authentication (or decrypts to a malformed share) makes its recipient
// abort with a ShareError naming the claimed sender, and that the session
// then completes with the recipient counted as dropped after ShareKeys.
func TestTamperedShare(t *testing.T) {
	const recipient = 2
	// index of the share from 'from' in route[recipient]
	indexFrom := func(s *session, from uint32) int {
		for i, es := range s.route[recipient] {
			if es.From == from {
				return i
			}
		}
		t.Fatalf("no share from %d", from)
		return -1
	}
	for _, tc := range []struct {
		name string
		f    func(s *session)
		from uint32 // the sender the error must name
	}{
		{"flipped ciphertext byte", func(s *session) {
			s.route[recipient][indexFrom(s, 4)].Ciphertext[0] ^= 1
		}, 4},
		{"flipped tag byte", func(s *session) {
			s.route[recipient][indexFrom(s, 4)].Ciphertext[ShareCiphertextSize-1] ^= 0x80
		}, 4},
		{"senders swapped", func(s *session) {
			a, b := s.route[recipient][indexFrom(s, 3)], s.route[recipient][indexFrom(s, 4)]
			a.From, b.From = b.From, a.From
		}, 4},
		{"share meant for another recipient", func(s *session) {
			for _, es := range s.route[3] {
				if es.From == 4 {
					s.route[recipient][indexFrom(s, 4)] = &EncryptedShare{From: 4, To: recipient, Ciphertext: es.Ciphertext}
				}
			}
		}, 4},
		{"authentic ciphertext of a malformed share", func(s *session) {
			// Sealed with the real key, as a malicious sender could.
			sender, recv := s.clients[4], s.clients[recipient]
			dh, err := agree(&sender.cPriv, &recv.cPub)
			if err != nil {
				t.Fatal(err)
			}
			key := shareKey(&dh, &sender.session, 4, recipient, &sender.cPub, &recv.cPub)
			plain := slices.Repeat([]byte{0xff}, 2*scalarSize) // not canonical scalars
			ct := newAEAD(&key).Seal(nil, zeroNonce[:], plain, shareAD(&sender.session, 4, recipient))
			s.route[recipient][indexFrom(s, 4)].Ciphertext = ct
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(5, 3, 0, 8)
			inputs := randomInputs(mrand.New(mrand.NewPCG(5, 5)), 5, cfg.Dim)
			s := newSession(t, cfg, inputs, 11)
			runTo(t, s, PhaseShareKeys)
			tc.f(s)
			s.drop = map[uint32]Phase{recipient: PhaseMaskedInput} // the harness must not call it again
			_, err := s.clients[recipient].MaskedInput(s.route[recipient], inputs[recipient])
			var se *ShareError
			if !errors.Is(err, ErrBadShare) || !errors.As(err, &se) || se.From != tc.from || se.To != recipient {
				t.Fatalf("MaskedInput = %v, want a ShareError from %d to %d", err, tc.from, recipient)
			}
			t.Logf("error: %v", err)
			if _, err := s.clients[recipient].ConsistencyCheck([]uint32{1, 2, 3}); !errors.Is(err, ErrAborted) {
				t.Errorf("after the bad share, ConsistencyCheck = %v, want ErrAborted", err)
			}
			if err := s.mask(); err != nil {
				t.Fatal(err)
			}
			if err := s.consist(); err != nil {
				t.Fatal(err)
			}
			sum, err := s.unmask()
			if err != nil {
				t.Fatal(err)
			}
			want := []uint32{1, 3, 4, 5}
			if !slices.Equal(s.survivors, want) {
				t.Fatalf("survivors = %v, want %v", s.survivors, want)
			}
			if !slices.Equal(sum, plainSum(inputs, want)) {
				t.Fatal("sum differs from the plain sum of the survivors")
			}
		})
	}
}

// lowOrderPoints are the encodings of the points of small order on
// Curve25519 (0, 1, the two points of order 8, p-1) and their
// non-canonical encodings (p, p+1, and each with the unused top bit set).
var lowOrderPoints = func() []x25519.Key {
	var out []x25519.Key
	for _, k := range hexKeys(
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	) {
		out = append(out, k)
		k[31] |= 0x80
		out = append(out, k)
	}
	return out
}()

// hexKeys decodes X25519 keys written in hex.
func hexKeys(hs ...string) []x25519.Key {
	out := make([]x25519.Key, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != x25519.Size {
			panic(fmt.Sprintf("bad test key %q", h))
		}
		out[i] = x25519.Key(b)
	}
	return out
}

// TestLowOrderPoints checks that a validly signed advertisement carrying
// a low-order point as either key is rejected by the server and, if the
// server relays it anyway, by the participant.
func TestLowOrderPoints(t *testing.T) {
	var valid x25519.Key
	x25519.KeyGen(&valid, &x25519.Key{1, 2, 3})
	if err := checkPublicKey(&valid); err != nil {
		t.Fatalf("checkPublicKey(valid key) = %v", err)
	}
	for i, p := range lowOrderPoints {
		for _, which := range []string{"c", "s"} {
			cfg := testConfig(4, 3, 0, 2)
			s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(1, 1)), 4, 2), uint64(i))
			const bad = 3
			advs := make([]*AdvertiseKeys, 0, 4)
			for id := uint32(1); id <= 4; id++ {
				m, err := s.clients[id].AdvertiseKeys()
				if err != nil {
					t.Fatal(err)
				}
				if id == bad {
					if which == "c" {
						m.CPub = p
					} else {
						m.SPub = p
					}
					m.Sig = signWith(t, bad, advertiseMessage(&s.server.session, bad, (*x25519.Key)(&m.CPub), (*x25519.Key)(&m.SPub)))
				}
				advs = append(advs, m)
			}
			_, rejected, err := s.server.CollectKeys(advs)
			if err != nil {
				t.Fatal(err)
			}
			if len(rejected) != 1 || rejected[0].ID != bad || !errors.Is(rejected[0].Err, ErrBadKey) {
				t.Errorf("point %x as %sPub: server rejected %v, want participant %d with ErrBadKey", p[:], which, rejected, bad)
			}
			// A server that relays it anyway: the participant refuses.
			relay := []*AdvertiseKeys{advs[0], advs[2], advs[3]}
			if _, err := s.clients[2].ShareKeys(relay); !errors.Is(err, ErrBadKey) {
				t.Errorf("point %x as %sPub: ShareKeys = %v, want ErrBadKey", p[:], which, err)
			}
		}
	}
}

// TestClientChecksAdvertisements checks that a participant refuses (and
// aborts on) relayed advertisements an honest server would never send.
func TestClientChecksAdvertisements(t *testing.T) {
	const u = 2
	for _, tc := range []struct {
		name string
		f    func(s *session) []*AdvertiseKeys
		want error
	}{
		{"key swapped after signing", func(s *session) []*AdvertiseKeys {
			r := cloneAdverts(s.relay[u])
			r[1].CPub[3] ^= 1
			return r
		}, ErrBadSignature},
		{"signature by another participant", func(s *session) []*AdvertiseKeys {
			r := cloneAdverts(s.relay[u])
			r[1].Sig = slices.Clone(r[2].Sig)
			return r
		}, ErrBadSignature},
		{"signed for another session", func(s *session) []*AdvertiseKeys {
			r := cloneAdverts(s.relay[u])
			other := testConfig(5, 3, 0, 5).sessionDigest() // differs only in Dim
			r[1].Sig = signWith(t, r[1].ID, advertiseMessage(&other, r[1].ID, (*x25519.Key)(&r[1].CPub), (*x25519.Key)(&r[1].SPub)))
			return r
		}, ErrBadSignature},
		{"own advertisement", func(s *session) []*AdvertiseKeys {
			return append(cloneAdverts(s.relay[u]), s.adverts[u-1])
		}, ErrMalformed},
		{"duplicate", func(s *session) []*AdvertiseKeys {
			r := cloneAdverts(s.relay[u])
			return append(r[:2], r[1])
		}, ErrMalformed},
		{"nil", func(s *session) []*AdvertiseKeys { return append(cloneAdverts(s.relay[u]), nil) }, ErrMalformed},
		{"too few", func(s *session) []*AdvertiseKeys { return cloneAdverts(s.relay[u])[:1] }, ErrTooFewParticipants},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(5, 3, 0, 4)
			s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(2, 2)), 5, 4), 12)
			runTo(t, s, PhaseAdvertiseKeys)
			if _, err := s.clients[u].ShareKeys(tc.f(s)); !errors.Is(err, tc.want) {
				t.Fatalf("ShareKeys = %v, want %v", err, tc.want)
			}
			if _, err := s.clients[u].MaskedInput(nil, s.inputs[u]); !errors.Is(err, ErrAborted) {
				t.Errorf("after refusing, MaskedInput = %v, want ErrAborted", err)
			}
		})
	}
	// In a k-regular graph, a non-neighbour's advertisement is refused.
	cfg := testConfig(6, 3, 3, 4)
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(2, 2)), 6, 4), 13)
	runTo(t, s, PhaseAdvertiseKeys)
	var stranger uint32
	for id := uint32(1); id <= 6; id++ {
		if id != u && !slices.Contains(cfg.Neighbours(u), id) {
			stranger = id
		}
	}
	relay := cloneAdverts(s.relay[u])
	relay[0] = s.adverts[stranger-1]
	if _, err := s.clients[u].ShareKeys(relay); !errors.Is(err, ErrMalformed) || !containsID(err, stranger) {
		t.Fatalf("ShareKeys with participant %d's advertisement = %v, want ErrMalformed naming it", stranger, err)
	}
}

func cloneAdverts(in []*AdvertiseKeys) []*AdvertiseKeys {
	out := make([]*AdvertiseKeys, len(in))
	for i, m := range in {
		c := *m
		c.Sig = slices.Clone(m.Sig)
		out[i] = &c
	}
	return out
}

func cloneRequest(r *UnmaskRequest) *UnmaskRequest {
	c := &UnmaskRequest{ID: r.ID, Survivors: slices.Clone(r.Survivors), Dropped: slices.Clone(r.Dropped)}
	for _, s := range r.Sigs {
		c.Sigs = append(c.Sigs, &ConsistencySig{ID: s.ID, Sig: slices.Clone(s.Sig)})
	}
	return c
}

// TestUnmaskRefusals crafts unmask requests a dishonest server could send
// and checks that the participant refuses each with the right error (and
// reveals nothing), and answers the honest one exactly once.
func TestUnmaskRefusals(t *testing.T) {
	// Complete graph of 5, Threshold 3; participant 5 drops after
	// ShareKeys, so participant 1 is asked for self-mask shares of 1..4
	// and a mask-key share of 5.
	const u = 1
	for _, tc := range []struct {
		name string
		f    func(s *session, r *UnmaskRequest)
		want error
	}{
		{"honest", func(*session, *UnmaskRequest) {}, nil},
		{"survivor also named dropped", func(_ *session, r *UnmaskRequest) { r.Dropped = []uint32{2, 5} }, ErrBothSecrets},
		{"itself named dropped", func(_ *session, r *UnmaskRequest) {
			r.Survivors = []uint32{2, 3, 4}
			r.Dropped = []uint32{1, 5}
		}, ErrBothSecrets},
		{"survivor reported dropped", func(_ *session, r *UnmaskRequest) {
			r.Survivors = []uint32{1, 3, 4}
			r.Dropped = []uint32{2, 5}
		}, ErrInconsistent},
		{"dropped reported surviving", func(_ *session, r *UnmaskRequest) {
			r.Survivors = []uint32{1, 2, 3, 4, 5}
			r.Dropped = nil
		}, ErrInconsistent},
		{"dropped neighbour left out", func(_ *session, r *UnmaskRequest) { r.Dropped = nil }, ErrInconsistent},
		{"addressed to another participant", func(_ *session, r *UnmaskRequest) { r.ID = 2 }, ErrInconsistent},
		{"too few signatures", func(_ *session, r *UnmaskRequest) { r.Sigs = r.Sigs[:2] }, ErrTooFewParticipants},
		{"forged signature", func(_ *session, r *UnmaskRequest) { r.Sigs[1].Sig[7] ^= 1 }, ErrBadSignature},
		{"signature of another survivor set", func(s *session, r *UnmaskRequest) {
			r.Sigs[1].Sig = signWith(t, r.Sigs[1].ID, consistencyMessage(&s.server.session, r.Sigs[1].ID, []uint32{1, 2, 3}))
		}, ErrBadSignature},
		{"signature by a non-survivor", func(s *session, r *UnmaskRequest) {
			r.Sigs = append(r.Sigs, &ConsistencySig{ID: 5, Sig: signWith(t, 5, consistencyMessage(&s.server.session, 5, r.Survivors))})
		}, ErrInconsistent},
		{"unsorted survivors", func(_ *session, r *UnmaskRequest) { r.Survivors[0], r.Survivors[1] = r.Survivors[1], r.Survivors[0] }, ErrMalformed},
		{"signer out of range", func(_ *session, r *UnmaskRequest) { r.Sigs[len(r.Sigs)-1].ID = 6 }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(5, 3, 0, 4)
			s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(6, 6)), 5, 4), 14)
			s.drop = map[uint32]Phase{5: PhaseMaskedInput}
			runTo(t, s, PhaseConsistencyCheck)
			honest := cloneRequest(s.requests[u])
			req := cloneRequest(honest)
			tc.f(s, req)
			resp, err := s.clients[u].Unmask(req)
			if !errorIs(err, tc.want) {
				t.Fatalf("Unmask = %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("refused: %v", err)
				if resp != nil {
					t.Fatalf("refused but revealed %+v", resp)
				}
				if _, err := s.clients[u].Unmask(honest); !errors.Is(err, ErrAborted) {
					t.Fatalf("after a refusal, the honest request = %v, want ErrAborted", err)
				}
				return
			}
			owners := func(sh []Share) (out []uint32) {
				for _, s := range sh {
					out = append(out, s.Owner)
				}
				return out
			}
			if got := owners(resp.SelfShares); !slices.Equal(got, []uint32{1, 2, 3, 4}) {
				t.Errorf("self-mask shares of %v, want [1 2 3 4]", got)
			}
			if got := owners(resp.KeyShares); !slices.Equal(got, []uint32{5}) {
				t.Errorf("mask-key shares of %v, want [5]", got)
			}
			// Sent twice: refused.
			if _, err := s.clients[u].Unmask(honest); !errors.Is(err, ErrReplay) {
				t.Errorf("second Unmask = %v, want ErrReplay", err)
			}
		})
	}
}

// TestUnmaskRefusesNonNeighbour checks, in a k-regular graph, that a
// request naming as dropped a participant that is not the recipient's
// neighbour is refused.
func TestUnmaskRefusesNonNeighbour(t *testing.T) {
	cfg := testConfig(6, 3, 3, 4)
	const dropped = 6
	var u uint32
	for id := uint32(1); id < dropped; id++ {
		if !slices.Contains(cfg.Neighbours(id), dropped) {
			u = id
			break
		}
	}
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(7, 7)), 6, 4), 15)
	s.drop = map[uint32]Phase{dropped: PhaseMaskedInput}
	runTo(t, s, PhaseConsistencyCheck)
	req := cloneRequest(s.requests[u])
	if len(req.Dropped) != 0 {
		t.Fatalf("participant %d, not a neighbour of %d, asked about dropped %v", u, dropped, req.Dropped)
	}
	req.Dropped = []uint32{dropped}
	_, err := s.clients[u].Unmask(req)
	if !errors.Is(err, ErrInconsistent) || !containsID(err, dropped) {
		t.Fatalf("Unmask naming non-neighbour %d dropped = %v, want ErrInconsistent naming it", dropped, err)
	}
}

// TestSplitView plays a server that wants participant 5's input: it has
// 5's masked input, and shows survivor set A (with 5) to participants 1,
// 2 and 5 to collect shares of 5's self-mask secret, and set B (without
// 5) to 3 and 4 to collect shares of 5's mask key. Each participant signs
// one set only, so B never gathers Threshold signatures and no share of
// 5's mask key is revealed.
func TestSplitView(t *testing.T) {
	cfg := testConfig(5, 3, 0, 4)
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(8, 8)), 5, 4), 16)
	runTo(t, s, PhaseMaskedInput)
	a, b := []uint32{1, 2, 3, 4, 5}, []uint32{1, 2, 3, 4}
	sigsOn := map[string][]*ConsistencySig{}
	for id, set := range map[uint32][]uint32{1: a, 2: a, 5: a, 3: b, 4: b} {
		sig, err := s.clients[id].ConsistencyCheck(set)
		if err != nil {
			t.Fatalf("ConsistencyCheck(%d, %v): %v", id, set, err)
		}
		key := formatIDs(set)
		sigsOn[key] = append(sigsOn[key], sig)
	}
	// Nobody signs a second set.
	if _, err := s.clients[1].ConsistencyCheck(b); !errors.Is(err, ErrReplay) {
		t.Fatalf("second ConsistencyCheck = %v, want ErrReplay", err)
	}
	sortSigs := func(sigs []*ConsistencySig) []*ConsistencySig {
		out := slices.Clone(sigs)
		slices.SortFunc(out, func(x, y *ConsistencySig) int { return int(x.ID) - int(y.ID) })
		return out
	}
	sigsA, sigsB := sortSigs(sigsOn[formatIDs(a)]), sortSigs(sigsOn[formatIDs(b)])
	// Participant 3 is shown B with B's two signatures, participant 4 B
	// with A's three: both refuse, so no share of 5's mask key comes out.
	for _, tc := range []struct {
		id   uint32
		sigs []*ConsistencySig
		want error
	}{
		{3, sigsB, ErrTooFewParticipants},
		{4, sigsA, ErrBadSignature},
	} {
		req := &UnmaskRequest{ID: tc.id, Survivors: b, Dropped: []uint32{5}, Sigs: tc.sigs}
		if resp, err := s.clients[tc.id].Unmask(req); !errors.Is(err, tc.want) {
			t.Errorf("participant %d: Unmask(%v) = %+v, %v; want %v", tc.id, b, resp, err, tc.want)
		}
	}
}

// TestClientChecksSurvivors checks what a participant refuses to sign.
func TestClientChecksSurvivors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		survivors []uint32
		want      error
	}{
		{"honest", []uint32{1, 2, 3, 4}, nil},
		{"without itself", []uint32{2, 3, 4}, ErrInconsistent},
		{"below threshold", []uint32{1, 2}, ErrTooFewParticipants},
		{"a neighbour that never shared keys", []uint32{1, 2, 3, 4, 5}, ErrInconsistent},
		{"unsorted", []uint32{2, 1, 3, 4}, ErrMalformed},
		{"duplicate", []uint32{1, 2, 2, 3}, ErrMalformed},
		{"out of range", []uint32{1, 2, 3, 9}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(5, 3, 0, 4)
			s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(9, 9)), 5, 4), 17)
			s.drop = map[uint32]Phase{5: PhaseShareKeys} // advertised, never shared
			runTo(t, s, PhaseShareKeys)
			c := s.clients[1]
			if _, err := c.MaskedInput(s.route[1], s.inputs[1]); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ConsistencyCheck(tc.survivors); !errorIs(err, tc.want) {
				t.Fatalf("ConsistencyCheck(%v) = %v, want %v", tc.survivors, err, tc.want)
			}
		})
	}
}

type rsaLikeSigner struct{}

func (rsaLikeSigner) Public() crypto.PublicKey { return "not a supported key" }
func (rsaLikeSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("unreachable")
}

// TestClientArguments checks NewClient's argument checks and the order of
// rounds.
func TestClientArguments(t *testing.T) {
	cfg := testConfig(3, 2, 0, 2)
	key := identities()[1]
	rnd := seededRand(1)
	for _, tc := range []struct {
		name   string
		cfg    Config
		id     uint32
		signer crypto.Signer
		verify Verify
		rand   io.Reader
	}{
		{"id 0", cfg, 0, key, verifyIdentities, rnd},
		{"id above N", cfg, 4, key, verifyIdentities, rnd},
		{"nil signer", cfg, 1, nil, verifyIdentities, rnd},
		{"nil verify", cfg, 1, key, nil, rnd},
		{"nil rand", cfg, 1, key, verifyIdentities, nil},
		{"unsupported key", cfg, 1, rsaLikeSigner{}, verifyIdentities, rnd},
		{"invalid config", testConfig(3, 1, 0, 2), 1, key, verifyIdentities, rnd},
	} {
		if _, err := NewClient(tc.cfg, tc.id, tc.signer, tc.verify, tc.rand); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewClient(%s) = %v, want ErrInvalidConfig", tc.name, err)
		}
	}

	c, err := NewClient(cfg, 1, key, verifyIdentities, rnd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ShareKeys(nil); !errors.Is(err, ErrPhase) {
		t.Errorf("ShareKeys before AdvertiseKeys = %v, want ErrPhase", err)
	}
	if _, err := c.AdvertiseKeys(); !errors.Is(err, ErrAborted) || !errors.Is(err, ErrPhase) {
		t.Errorf("AdvertiseKeys after the error = %v, want ErrAborted wrapping ErrPhase", err)
	}

	// An input of the wrong length aborts the participant.
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(1, 1)), 3, 2), 18)
	runTo(t, s, PhaseShareKeys)
	if _, err := s.clients[1].MaskedInput(s.route[1], make([]uint32, 3)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("MaskedInput with 3 words = %v, want ErrInvalidConfig", err)
	}
}

// FuzzUnmaskRequest builds unmask requests from arbitrary survivor,
// dropped and signer sets (bit masks over participants 1..5) and checks
// the property that matters: participant 1 either refuses, or gets exactly
// the honest request and gives exactly the honest answer. So no request
// obtains more from it, in particular not both secrets of anyone. The
// session: complete graph of 5, Threshold 3, participant 5 dropped after
// ShareKeys.
func FuzzUnmaskRequest(f *testing.F) {
	const honestSurvivors, honestDropped, allSigners = 0b01111, 0b10000, 0b01111
	f.Add(uint8(honestSurvivors), uint8(honestDropped), uint8(allSigners), uint8(1), false)
	f.Add(uint8(honestSurvivors), uint8(honestDropped|0b00010), uint8(allSigners), uint8(1), false)
	f.Add(uint8(0b00111), uint8(0b11000), uint8(0b00111), uint8(1), false)
	f.Add(uint8(0b11111), uint8(0), uint8(allSigners), uint8(1), false)
	f.Add(uint8(honestSurvivors), uint8(honestDropped), uint8(0b00011), uint8(1), false)
	f.Add(uint8(honestSurvivors), uint8(honestDropped), uint8(allSigners), uint8(1), true)
	f.Add(uint8(honestSurvivors), uint8(0b10001), uint8(allSigners), uint8(2), false)
	f.Fuzz(func(t *testing.T, survivors, dropped, signers, to uint8, forge bool) {
		cfg := testConfig(5, 3, 0, 4)
		s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(10, 10)), 5, 4), 19)
		s.drop = map[uint32]Phase{5: PhaseMaskedInput}
		runTo(t, s, PhaseConsistencyCheck)
		honest := s.requests[1]
		bits := func(m uint8) (ids []uint32) {
			for i := range 5 {
				if m&(1<<i) != 0 {
					ids = append(ids, uint32(i+1))
				}
			}
			return ids
		}
		req := &UnmaskRequest{ID: uint32(to % 7), Survivors: bits(survivors), Dropped: bits(dropped)}
		for _, id := range bits(signers) {
			for _, sig := range honest.Sigs {
				if sig.ID == id {
					sig := &ConsistencySig{ID: id, Sig: slices.Clone(sig.Sig)}
					if forge {
						sig.Sig = signWith(t, id, consistencyMessage(&s.server.session, id, req.Survivors))
					}
					req.Sigs = append(req.Sigs, sig)
				}
			}
		}
		// The honest answer: what participant 1 holds, read before it
		// answers (it forgets its shares afterwards).
		c := s.clients[1]
		want := &UnmaskResponse{ID: 1, SelfShares: []Share{{Owner: 1, Value: c.ownSelfShare}}, KeyShares: []Share{{Owner: 5, Value: c.peers[5].keyShare}}}
		for _, v := range []uint32{2, 3, 4} {
			want.SelfShares = append(want.SelfShares, Share{Owner: v, Value: c.peers[v].selfShare})
		}
		resp, err := c.Unmask(req)
		if err != nil {
			return
		}
		if req.ID != honest.ID || !slices.Equal(req.Survivors, honest.Survivors) || !slices.Equal(req.Dropped, honest.Dropped) {
			t.Fatalf("accepted request %v/%v/%v, honest is %v/%v/%v", req.ID, req.Survivors, req.Dropped, honest.ID, honest.Survivors, honest.Dropped)
		}
		if diff := cmp.Diff(want, resp); diff != "" {
			t.Fatalf("accepted request got another answer than the honest one (-want +got):\n%s", diff)
		}
	})
}
