package secagg

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// identities are the participants' identity keys, ECDSA P-256 as in
// fedguard, made once for all tests: identity[id] for id in 1..len-1
// (enough for BenchmarkServerSecAggPlus's 1,000).
var identities = sync.OnceValue(func() []*ecdsa.PrivateKey {
	keys := make([]*ecdsa.PrivateKey, 1001)
	for i := 1; i < len(keys); i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// verifyIdentities checks signatures against identities.
var verifyIdentities = PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
	keys := identities()
	if id == 0 || int(id) >= len(keys) {
		return nil, fmt.Errorf("no identity for participant %d", id)
	}
	return &keys[id].PublicKey, nil
})

// testConfig returns a valid configuration.
func testConfig(n, threshold, degree, dim int) Config {
	return Config{
		Session:   fmt.Appendf(nil, "test|n=%d|t=%d|k=%d|d=%d", n, threshold, degree, dim),
		N:         n,
		Threshold: threshold,
		Degree:    degree,
		GraphSeed: [32]byte{1, 2, 3, byte(n), byte(degree)},
		Dim:       dim,
	}
}

// seededRand returns a deterministic io.Reader for the clients'
// randomness.
func seededRand(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return mrand.NewChaCha8(s)
}

// randomInputs returns one random input per participant: inputs[id] for
// id in 1..n.
func randomInputs(r *mrand.Rand, n, dim int) [][]uint32 {
	inputs := make([][]uint32, n+1)
	for id := 1; id <= n; id++ {
		inputs[id] = make([]uint32, dim)
		for i := range inputs[id] {
			inputs[id][i] = r.Uint32()
		}
	}
	return inputs
}

// plainSum is the reference: the sum of the inputs of ids, computed
// naively.
func plainSum(inputs [][]uint32, ids []uint32) []uint32 {
	var sum []uint32
	for _, id := range ids {
		if sum == nil {
			sum = make([]uint32, len(inputs[id]))
		}
		for i, x := range inputs[id] {
			sum[i] += x
		}
	}
	return sum
}

// session drives one honest session step by step. Each step delivers the
// previous step's output of the server to the clients and collects their
// answers; between steps a test may tamper with anything. drop[id] is the
// round from which participant id sends nothing.
type session struct {
	t       testing.TB
	cfg     Config
	server  *Server
	clients map[uint32]*Client
	inputs  [][]uint32
	drop    map[uint32]Phase

	adverts   []*AdvertiseKeys
	relay     map[uint32][]*AdvertiseKeys
	shares    []*ShareKeys
	route     map[uint32][]*EncryptedShare
	masked    []*MaskedInput
	survivors []uint32
	sigs      []*ConsistencySig
	requests  map[uint32]*UnmaskRequest
	responses []*UnmaskResponse
	rejected  []Rejection // of the last server step
}

func newSession(t testing.TB, cfg Config, inputs [][]uint32, seed uint64) *session {
	t.Helper()
	server, err := NewServer(cfg, verifyIdentities)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	s := &session{t: t, cfg: cfg, server: server, clients: map[uint32]*Client{}, inputs: inputs, drop: map[uint32]Phase{}}
	for id := uint32(1); id <= uint32(cfg.N); id++ {
		c, err := NewClient(cfg, id, identities()[id], verifyIdentities, seededRand(seed*1000+uint64(id)))
		if err != nil {
			t.Fatalf("NewClient(%d): %v", id, err)
		}
		s.clients[id] = c
	}
	return s
}

// sends reports whether participant id still sends at round p.
func (s *session) sends(id uint32, p Phase) bool {
	d, ok := s.drop[id]
	return !ok || d > p
}

// clientErr fails the test: honest clients of an honest server never fail.
func (s *session) clientErr(round string, id uint32, err error) {
	s.t.Helper()
	s.t.Fatalf("%s of participant %d: %v", round, id, err)
}

// gather has each participant of ids that still sends at round p make
// its message of that round with msg, in the order of ids.
func gather[M any](s *session, p Phase, ids []uint32, msg func(c *Client, id uint32) (M, error)) []M {
	s.t.Helper()
	var ms []M
	for _, id := range ids {
		if !s.sends(id, p) {
			continue
		}
		m, err := msg(s.clients[id], id)
		if err != nil {
			s.clientErr(p.String(), id, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// tamperedStep returns round p of s (AdvertiseKeys to ConsistencyCheck):
// the clients' messages, f applied to them (when not nil), then the
// server's collection of them.
func (s *session) tamperedStep(p Phase, f func(*session)) func() error {
	return func() error {
		s.t.Helper()
		var err error
		switch p {
		case PhaseAdvertiseKeys:
			everyone := make([]uint32, s.cfg.N)
			for i := range everyone {
				everyone[i] = uint32(i + 1)
			}
			s.adverts = gather(s, p, everyone, func(c *Client, _ uint32) (*AdvertiseKeys, error) { return c.AdvertiseKeys() })
			s.tamper(f)
			s.relay, s.rejected, err = s.server.CollectKeys(s.adverts)
		case PhaseShareKeys:
			s.shares = gather(s, p, slices.Sorted(maps.Keys(s.relay)), func(c *Client, id uint32) (*ShareKeys, error) { return c.ShareKeys(s.relay[id]) })
			s.tamper(f)
			s.route, s.rejected, err = s.server.CollectShares(s.shares)
		case PhaseMaskedInput:
			s.masked = gather(s, p, slices.Sorted(maps.Keys(s.route)), func(c *Client, id uint32) (*MaskedInput, error) {
				return c.MaskedInput(s.route[id], s.inputs[id])
			})
			s.tamper(f)
			s.survivors, s.rejected, err = s.server.CollectMasked(s.masked)
		case PhaseConsistencyCheck:
			s.sigs = gather(s, p, s.survivors, func(c *Client, _ uint32) (*ConsistencySig, error) { return c.ConsistencyCheck(s.survivors) })
			s.tamper(f)
			s.requests, s.rejected, err = s.server.CollectConsistency(s.sigs)
		default:
			s.t.Fatalf("tamperedStep(%v): not a step the server collects", p)
		}
		return err
	}
}

// tamper applies f, when not nil, to the messages s holds.
func (s *session) tamper(f func(*session)) {
	if f != nil {
		f(s)
	}
}

func (s *session) advertise() error { return s.tamperedStep(PhaseAdvertiseKeys, nil)() }
func (s *session) share() error     { return s.tamperedStep(PhaseShareKeys, nil)() }
func (s *session) mask() error      { return s.tamperedStep(PhaseMaskedInput, nil)() }
func (s *session) consist() error   { return s.tamperedStep(PhaseConsistencyCheck, nil)() }

// answer collects the unmask responses without giving them to the server.
func (s *session) answer() {
	s.t.Helper()
	s.responses = gather(s, PhaseUnmasking, slices.Sorted(maps.Keys(s.requests)), func(c *Client, id uint32) (*UnmaskResponse, error) {
		return c.Unmask(s.requests[id])
	})
}

func (s *session) unmask() ([]uint32, error) {
	s.t.Helper()
	s.answer()
	checkNeverBoth(s.t, s.responses)
	sum, rejected, err := s.server.Unmask(s.responses)
	s.rejected = rejected
	return sum, err
}

// run runs every step, returning the sum or the first server error and
// the round it happened at.
func (s *session) run() ([]uint32, Phase, error) {
	s.t.Helper()
	steps := []func() error{s.advertise, s.share, s.mask, s.consist}
	for i, step := range steps {
		if err := step(); err != nil {
			return nil, Phase(i + 1), err
		}
		if len(s.rejected) > 0 {
			s.t.Fatalf("round %v of an honest session rejected %v", Phase(i+1), s.rejected)
		}
	}
	sum, err := s.unmask()
	if err == nil && len(s.rejected) > 0 {
		s.t.Fatalf("unmasking of an honest session rejected %v", s.rejected)
	}
	return sum, PhaseUnmasking, err
}

// checkNeverBoth checks the protocol's central invariant over all the
// responses of a session: no participant's self-mask secret and mask key
// are both revealed, by anyone.
func checkNeverBoth(t testing.TB, resps []*UnmaskResponse) {
	t.Helper()
	self, key := map[uint32]bool{}, map[uint32]bool{}
	for _, r := range resps {
		for _, s := range r.SelfShares {
			self[s.Owner] = true
		}
		for _, s := range r.KeyShares {
			key[s.Owner] = true
		}
	}
	for id := range self {
		if key[id] {
			t.Fatalf("shares of both secrets of participant %d were revealed", id)
		}
	}
}

// errorIs reports a mismatch between err and want (nil meaning success).
func errorIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}
