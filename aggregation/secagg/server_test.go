package secagg

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
)

// TestSum checks the unmasked sum against the plain sum of random inputs,
// with no dropout, for complete and k-regular graphs.
func TestSum(t *testing.T) {
	for _, tc := range []struct{ n, threshold, degree, dim int }{
		{2, 2, 0, 1},
		{3, 2, 0, 17},
		{5, 3, 0, 100},
		{7, 5, 0, 64},
		{10, 6, 0, 1000},
		{4, 3, 0, maskChunk/4 + 3}, // masks span two keystream chunks
		{10, 3, 4, 333},
		{12, 3, 3, 50},
		{9, 4, 6, 10},
		{16, 4, 6, 257},
		{20, 6, 10, 100},
	} {
		t.Run(fmt.Sprintf("n=%d/t=%d/k=%d/d=%d", tc.n, tc.threshold, tc.degree, tc.dim), func(t *testing.T) {
			cfg := testConfig(tc.n, tc.threshold, tc.degree, tc.dim)
			inputs := randomInputs(mrand.New(mrand.NewPCG(uint64(tc.n), uint64(tc.dim))), tc.n, tc.dim)
			s := newSession(t, cfg, inputs, 1)
			sum, phase, err := s.run()
			if err != nil {
				t.Fatalf("session failed at %v: %v", phase, err)
			}
			all := make([]uint32, tc.n)
			for i := range all {
				all[i] = uint32(i + 1)
			}
			if !slices.Equal(s.survivors, all) {
				t.Errorf("survivors = %v, want %v", s.survivors, all)
			}
			if want := plainSum(inputs, all); !slices.Equal(sum, want) {
				t.Errorf("sum differs from the plain sum at %d words", countDiff(sum, want))
			}
		})
	}
}

func countDiff(a, b []uint32) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// expectation is what the reference model predicts for a dropout
// pattern: the survivors and the sum over them, or the round at which the
// session fails and the error.
type expectation struct {
	survivors []uint32
	failAt    Phase
	err       error
}

// reference predicts the outcome of a session in which participant id
// sends nothing from round drop[id] on. It is written from the protocol's
// rules, naively, with Config.Neighbours and maps, independently of the
// server's code:
//   - U1 = those that advertise, U2 = those of U1 that share keys, each
//     pruned of members with fewer than Threshold of their closed
//     neighbourhood left (their secrets could never be reconstructed);
//   - U3 = those of U2 that send their masked input, U4 = those of U3
//     that sign, U5 = those of U4 that answer; at U3, U4 and U5 every
//     survivor needs Threshold holders of its self-mask shares in its
//     closed neighbourhood, and every dropped member of U2 with a
//     surviving neighbour Threshold holders of its key shares;
//   - U3 must be connected in the graph;
//   - every U must have at least Threshold members.
func reference(cfg Config, drop map[uint32]Phase) expectation {
	t := cfg.Threshold
	nb := map[uint32][]uint32{}
	for id := uint32(1); id <= uint32(cfg.N); id++ {
		nb[id] = cfg.Neighbours(id)
	}
	closed := func(id uint32, set map[uint32]bool) int {
		c := 0
		if set[id] {
			c++
		}
		for _, v := range nb[id] {
			if set[v] {
				c++
			}
		}
		return c
	}
	sends := func(id uint32, p Phase) bool { d, ok := drop[id]; return !ok || d > p }
	next := func(prev map[uint32]bool, p Phase) map[uint32]bool {
		out := map[uint32]bool{}
		for id := uint32(1); id <= uint32(cfg.N); id++ {
			if (prev == nil || prev[id]) && sends(id, p) {
				out[id] = true
			}
		}
		return out
	}
	prune := func(set map[uint32]bool) {
		for changed := true; changed; {
			changed = false
			for id := range set {
				if closed(id, set) < t {
					delete(set, id)
					changed = true
				}
			}
		}
	}
	tooFew := func(p Phase) expectation { return expectation{failAt: p, err: ErrTooFewParticipants} }

	u1 := next(nil, PhaseAdvertiseKeys)
	if len(u1) < t {
		return tooFew(PhaseAdvertiseKeys)
	}
	if prune(u1); len(u1) < t {
		return tooFew(PhaseAdvertiseKeys)
	}
	u2 := next(u1, PhaseShareKeys)
	if len(u2) < t {
		return tooFew(PhaseShareKeys)
	}
	if prune(u2); len(u2) < t {
		return tooFew(PhaseShareKeys)
	}
	u3 := next(u2, PhaseMaskedInput)
	recoverable := func(holders map[uint32]bool) bool {
		for w := range u2 {
			needed := u3[w]
			for _, v := range nb[w] {
				needed = needed || u3[v]
			}
			if needed && closed(w, holders) < t {
				return false
			}
		}
		return true
	}
	if len(u3) < t || !recoverable(u3) {
		return tooFew(PhaseMaskedInput)
	}
	// Connectivity by flood fill from the smallest survivor.
	var survivors []uint32
	for id := range u3 {
		survivors = append(survivors, id)
	}
	slices.Sort(survivors)
	reached := map[uint32]bool{survivors[0]: true}
	for frontier := []uint32{survivors[0]}; len(frontier) > 0; {
		u := frontier[0]
		frontier = frontier[1:]
		for _, v := range nb[u] {
			if u3[v] && !reached[v] {
				reached[v] = true
				frontier = append(frontier, v)
			}
		}
	}
	if len(reached) != len(u3) {
		return expectation{failAt: PhaseMaskedInput, err: ErrDisconnected}
	}
	u4 := next(u3, PhaseConsistencyCheck)
	if len(u4) < t || !recoverable(u4) {
		return tooFew(PhaseConsistencyCheck)
	}
	u5 := next(u4, PhaseUnmasking)
	if len(u5) < t || !recoverable(u5) {
		return tooFew(PhaseUnmasking)
	}
	return expectation{survivors: survivors}
}

// checkOutcome runs a session with the dropout pattern drop and checks it
// against the reference model.
func checkOutcome(t *testing.T, cfg Config, inputs [][]uint32, drop map[uint32]Phase, seed uint64) {
	t.Helper()
	want := reference(cfg, drop)
	s := newSession(t, cfg, inputs, seed)
	s.drop = drop
	sum, phase, err := s.run()
	if want.err != nil {
		if !errors.Is(err, want.err) || phase != want.failAt {
			t.Fatalf("drops %v: failed at %v with %v, want %v at %v", drop, phase, err, want.err, want.failAt)
		}
		var tf *TooFewError
		if errors.Is(want.err, ErrTooFewParticipants) && (!errors.As(err, &tf) || tf.Phase != phase || tf.Have >= tf.Need) {
			t.Fatalf("drops %v: error %#v does not report the phase %v and a count below the threshold", drop, err, phase)
		}
		return
	}
	if err != nil {
		t.Fatalf("drops %v: failed at %v: %v; want survivors %v", drop, phase, err, want.survivors)
	}
	if !slices.Equal(s.survivors, want.survivors) {
		t.Fatalf("drops %v: survivors %v, want %v", drop, s.survivors, want.survivors)
	}
	if wantSum := plainSum(inputs, want.survivors); !slices.Equal(sum, wantSum) {
		t.Fatalf("drops %v: sum differs from the plain sum of survivors %v at %d words", drop, want.survivors, countDiff(sum, wantSum))
	}
}

// TestDropoutsPerPhase drops every subset of the participants at each
// round, down to the threshold and below, and compares the outcome with the
// reference model: the sum over the survivors, or ErrTooFewParticipants
// (ErrDisconnected) at the right round.
func TestDropoutsPerPhase(t *testing.T) {
	logSampling(t)
	phases := []Phase{PhaseAdvertiseKeys, PhaseShareKeys, PhaseMaskedInput, PhaseConsistencyCheck, PhaseUnmasking}
	for _, tc := range []struct{ n, threshold, degree int }{
		{5, 3, 0},
		{5, 4, 0},
		{6, 3, 3}, // closed neighbourhoods of 4
		{6, 3, 4}, // closed neighbourhoods of 5
	} {
		cfg := testConfig(tc.n, tc.threshold, tc.degree, 9)
		inputs := randomInputs(mrand.New(mrand.NewPCG(7, uint64(tc.n))), tc.n, cfg.Dim)
		outcomes := map[string]int{}
		for _, p := range phases {
			t.Run(fmt.Sprintf("n=%d/t=%d/k=%d/%v", tc.n, tc.threshold, tc.degree, p), func(t *testing.T) {
				for set := range 1 << tc.n {
					drop := map[uint32]Phase{}
					for i := range tc.n {
						if set&(1<<i) != 0 {
							drop[uint32(i+1)] = p
						}
					}
					outcomes[outcomeKind(reference(cfg, drop))]++
					if sampled(set + int(p)) {
						checkOutcome(t, cfg, inputs, drop, uint64(set))
					}
				}
			})
		}
		// The table must exercise success, failure at every round, and
		// (for k-regular graphs) disconnection.
		t.Logf("n=%d t=%d k=%d: outcomes %v", tc.n, tc.threshold, tc.degree, outcomes)
		for _, p := range phases {
			if outcomes["fail at "+p.String()] == 0 {
				t.Errorf("n=%d t=%d k=%d: no pattern fails at %v", tc.n, tc.threshold, tc.degree, p)
			}
		}
		if outcomes["ok"] == 0 {
			t.Errorf("n=%d t=%d k=%d: no pattern succeeds", tc.n, tc.threshold, tc.degree)
		}
	}
}

func outcomeKind(e expectation) string {
	switch {
	case e.err == nil:
		return "ok"
	case errors.Is(e.err, ErrDisconnected):
		return "disconnected"
	}
	return "fail at " + e.failAt.String()
}

// TestDropoutsMixed tries every assignment of a dropout round (or none) to
// each of 4 participants (6^4 patterns): dropouts at several rounds in one
// session.
func TestDropoutsMixed(t *testing.T) {
	logSampling(t)
	cfg := testConfig(4, 3, 0, 5)
	inputs := randomInputs(mrand.New(mrand.NewPCG(8, 4)), 4, cfg.Dim)
	total := 1
	for range cfg.N {
		total *= 6
	}
	for pattern := range total {
		drop := map[uint32]Phase{}
		for i, p := 0, pattern; i < cfg.N; i, p = i+1, p/6 {
			if p%6 > 0 {
				drop[uint32(i+1)] = Phase(p % 6)
			}
		}
		if sampled(pattern) {
			checkOutcome(t, cfg, inputs, drop, uint64(pattern))
		}
	}
}

// sampled says whether the exhaustive dropout tests run pattern i: all of
// them, but only one in raceStride under the race detector (see
// raceEnabled) and in short mode (`make test-short`), where running every
// pattern takes most of a minute.
func sampled(i int) bool { return !sampling() || i%raceStride == 0 }

func sampling() bool { return raceEnabled || testing.Short() }

// logSampling says in the test log when only some patterns run.
func logSampling(t *testing.T) {
	t.Helper()
	if sampling() {
		t.Logf("runs one dropout pattern in %d (-race, as in `make test`, or -short, as in `make test-short`); all of them run without either: go test -count=1 -run '^%s$' ./aggregation/secagg", raceStride, t.Name())
	}
}

const raceStride = 16

// TestDisconnected checks that survivors who would split the graph into
// parts fail the session with ErrDisconnected, before anyone reveals a
// share: the server would otherwise learn the sum of each part.
func TestDisconnected(t *testing.T) {
	// In a 2-regular graph (a ring) of 8 with Threshold 2, dropping two
	// participants opposite each other after ShareKeys splits the ring.
	cfg := testConfig(8, 2, 2, 4)
	g := newGraph(cfg)
	a := uint32(1)
	b := g.at[(g.pos[a]+4)%8]
	drop := map[uint32]Phase{a: PhaseMaskedInput, b: PhaseMaskedInput}
	if want := reference(cfg, drop); !errors.Is(want.err, ErrDisconnected) {
		t.Fatalf("reference model: %v, want ErrDisconnected", want.err)
	}
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(1, 1)), 8, 4), 1)
	s.drop = drop
	if _, phase, err := s.run(); !errors.Is(err, ErrDisconnected) || phase != PhaseMaskedInput {
		t.Fatalf("session failed at %v with %v, want ErrDisconnected at MaskedInput", phase, err)
	}
	// A client refuses to sign such a survivor set too.
	s = newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(1, 1)), 8, 4), 2)
	for _, step := range []func() error{s.advertise, s.share} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var survivors []uint32
	for id := uint32(1); id <= 8; id++ {
		if id != a && id != b {
			survivors = append(survivors, id)
		}
	}
	c := s.clients[survivors[0]]
	if _, err := c.MaskedInput(s.route[c.ID()], s.inputs[c.ID()]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConsistencyCheck(survivors); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("ConsistencyCheck(%v) = %v, want ErrDisconnected", survivors, err)
	}
}

// TestServerRejects sends the server malformed or misplaced messages from
// one participant: each is rejected with the right error, the participant
// counts as dropped out, and the sum over the others is right.
func TestServerRejects(t *testing.T) {
	const n = 5
	type tamper struct {
		name string
		// at is the round whose messages f alters before the server
		// sees them.
		at   Phase
		f    func(s *session)
		id   uint32 // the participant rejected (0: a nil message)
		want error
	}
	victim := uint32(2)
	find := func(s *session, id uint32) int {
		for i, m := range s.adverts {
			if m.ID == id {
				return i
			}
		}
		return -1
	}
	for _, tc := range []tamper{
		{"advertisement/bad signature", PhaseAdvertiseKeys, func(s *session) { s.adverts[find(s, victim)].Sig[10] ^= 1 }, victim, ErrBadSignature},
		{"advertisement/key swapped after signing", PhaseAdvertiseKeys, func(s *session) { s.adverts[find(s, victim)].SPub[0] ^= 1 }, victim, ErrBadSignature},
		{"advertisement/signed by another participant", PhaseAdvertiseKeys, func(s *session) {
			m := s.adverts[find(s, victim)]
			m.Sig = signWith(s.t, 3, advertiseMessage(&s.server.session, victim, (*x25519.Key)(&m.CPub), (*x25519.Key)(&m.SPub)))
		}, victim, ErrBadSignature},
		{"advertisement/empty signature", PhaseAdvertiseKeys, func(s *session) { s.adverts[find(s, victim)].Sig = nil }, victim, ErrMalformed},
		{"advertisement/id out of range", PhaseAdvertiseKeys, func(s *session) { s.adverts[find(s, victim)].ID = n + 1 }, n + 1, ErrMalformed},
		{"advertisement/duplicate", PhaseAdvertiseKeys, func(s *session) {
			m := *s.adverts[find(s, victim)]
			s.adverts = append(s.adverts, &m)
		}, victim, ErrMalformed},
		{"advertisement/nil", PhaseAdvertiseKeys, func(s *session) { s.adverts = append(s.adverts, nil) }, 0, ErrMalformed},
		{"shares/missing a recipient", PhaseShareKeys, func(s *session) {
			m := s.shares[victim-1]
			m.Shares = m.Shares[1:]
		}, victim, ErrInconsistent},
		{"shares/short ciphertext", PhaseShareKeys, func(s *session) {
			es := s.shares[victim-1].Shares[0]
			es.Ciphertext = es.Ciphertext[:ShareCiphertextSize-1]
		}, victim, ErrMalformed},
		{"shares/unsorted", PhaseShareKeys, func(s *session) {
			sh := s.shares[victim-1].Shares
			sh[0], sh[1] = sh[1], sh[0]
		}, victim, ErrMalformed},
		{"shares/share claims another sender", PhaseShareKeys, func(s *session) { s.shares[victim-1].Shares[0].From = 4 }, victim, ErrMalformed},
		{"masked input/short", PhaseMaskedInput, func(s *session) {
			s.masked[victim-1].Masked = s.masked[victim-1].Masked[1:]
		}, victim, ErrMalformed},
		{"masked input/duplicate", PhaseMaskedInput, func(s *session) {
			s.masked = append(s.masked, &MaskedInput{ID: victim, Masked: make([]uint32, s.cfg.Dim)})
		}, victim, ErrMalformed},
		{"consistency/bad signature", PhaseConsistencyCheck, func(s *session) { s.sigs[victim-1].Sig[5] ^= 1 }, victim, ErrBadSignature},
		{"consistency/signature of another set", PhaseConsistencyCheck, func(s *session) {
			s.sigs[victim-1].Sig = signWith(s.t, victim, consistencyMessage(&s.server.session, victim, s.survivors[1:]))
		}, victim, ErrBadSignature},
		{"unmask/missing a self-mask share", PhaseUnmasking, func(s *session) {
			r := s.responses[victim-1]
			r.SelfShares = r.SelfShares[1:]
		}, victim, ErrInconsistent},
		{"unmask/non-canonical scalar", PhaseUnmasking, func(s *session) {
			s.responses[victim-1].SelfShares[0].Value = [32]byte{31: 0xff}
		}, victim, ErrMalformed},
		{"unmask/extra key share", PhaseUnmasking, func(s *session) {
			r := s.responses[victim-1]
			r.KeyShares = append(r.KeyShares, Share{Owner: 1})
		}, victim, ErrInconsistent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(n, 3, 0, 6)
			inputs := randomInputs(mrand.New(mrand.NewPCG(3, 3)), n, cfg.Dim)
			s := newSession(t, cfg, inputs, 5)
			var rejected []Rejection
			steps := []func() error{s.advertise, s.share, s.mask, s.consist}
			for i, step := range steps {
				p := Phase(i + 1)
				if p == tc.at {
					step = s.tamperedStep(p, tc.f)
				}
				if err := step(); err != nil {
					t.Fatalf("%v: %v", p, err)
				}
				if p == tc.at {
					rejected = s.rejected
				}
			}
			s.answer()
			if tc.at == PhaseUnmasking {
				tc.f(s)
			}
			sum, rejected2, err := s.server.Unmask(s.responses)
			if err != nil {
				t.Fatalf("Unmask: %v", err)
			}
			if tc.at == PhaseUnmasking {
				rejected = rejected2
			}
			if len(rejected) != 1 || rejected[0].ID != tc.id || !errors.Is(rejected[0].Err, tc.want) {
				t.Fatalf("rejected = %v, want participant %d rejected with %v", rejected, tc.id, tc.want)
			}
			t.Logf("rejected: %v", rejected[0])
			want := s.survivors
			if tc.at <= PhaseMaskedInput && tc.id != 0 {
				want = slices.DeleteFunc(slices.Clone(want), func(id uint32) bool { return id == victim })
				if slices.Contains(s.survivors, victim) {
					t.Fatalf("survivors %v include rejected participant %d", s.survivors, victim)
				}
			}
			if wantSum := plainSum(inputs, want); !slices.Equal(sum, wantSum) {
				t.Fatalf("sum differs from the plain sum over %v", want)
			}
		})
	}
}

// signWith signs msg with participant id's identity key.
func signWith(t testing.TB, id uint32, msg []byte) []byte {
	t.Helper()
	sig, err := sign(identities()[id], nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestReconstructMismatch checks that a wrong share in an unmask response
// makes Unmask fail with ErrReconstruct naming the participant whose
// secret came out wrong, rather than return a wrong sum.
func TestReconstructMismatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner uint32
		f     func(r *UnmaskResponse)
	}{
		{"self-mask share", 2, func(r *UnmaskResponse) { r.SelfShares[1].Value = encodeScalar(idScalar(12345)) }},
		{"mask-key share", 5, func(r *UnmaskResponse) { r.KeyShares[0].Value = encodeScalar(idScalar(12345)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(5, 3, 0, 4)
			s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(4, 4)), 5, 4), 9)
			s.drop = map[uint32]Phase{5: PhaseMaskedInput}
			for _, step := range []func() error{s.advertise, s.share, s.mask, s.consist} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			s.answer()
			tc.f(s.responses[0]) // participant 1's: the first holder of every share
			_, _, err := s.server.Unmask(s.responses)
			if !errors.Is(err, ErrReconstruct) || !containsID(err, tc.owner) {
				t.Fatalf("Unmask = %v, want ErrReconstruct naming participant %d", err, tc.owner)
			}
		})
	}
}

func containsID(err error, id uint32) bool {
	return err != nil && slices.Contains(splitWords(err.Error()), fmt.Sprintf("%d", id))
}

func splitWords(s string) []string {
	var out []string
	word := []rune{}
	for _, r := range s + " " {
		if r >= '0' && r <= '9' {
			word = append(word, r)
			continue
		}
		if len(word) > 0 {
			out = append(out, string(word))
			word = word[:0]
		}
	}
	return out
}

// TestServerPhaseOrder checks that rounds out of order are refused and
// that a failed session stays failed.
func TestServerPhaseOrder(t *testing.T) {
	cfg := testConfig(3, 2, 0, 2)
	server, err := NewServer(cfg, verifyIdentities)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.CollectShares(nil); !errors.Is(err, ErrPhase) {
		t.Errorf("CollectShares first = %v, want ErrPhase", err)
	}
	if _, _, err := server.CollectKeys(nil); !errors.Is(err, ErrTooFewParticipants) {
		t.Errorf("CollectKeys(nil) = %v, want ErrTooFewParticipants", err)
	}
	if _, _, err := server.CollectKeys(nil); !errors.Is(err, ErrAborted) {
		t.Errorf("CollectKeys after failure = %v, want ErrAborted", err)
	}
	if _, err := NewServer(cfg, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewServer(nil verify) = %v, want ErrInvalidConfig", err)
	}
	// A finished session answers nothing more.
	s := newSession(t, cfg, randomInputs(mrand.New(mrand.NewPCG(1, 2)), 3, 2), 3)
	if _, _, err := s.run(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.server.Unmask(s.responses); !errors.Is(err, ErrPhase) {
		t.Errorf("Unmask after the end = %v, want ErrPhase", err)
	}
}

// TestServerChecksManyAtOnce checks the checks the server runs on all
// cores (advertisements, consistency signatures, reconstruction) with
// several bad messages in one round: each bad one is rejected with its
// own error, the rest accepted, the rejections sorted, and a failed
// reconstruction names the first participant in order whatever the
// schedule. Run it with -race.
func TestServerChecksManyAtOnce(t *testing.T) {
	const n = 24
	cfg := testConfig(n, 7, 12, 8)
	inputs := randomInputs(mrand.New(mrand.NewPCG(7, 7)), n, cfg.Dim)
	s := newSession(t, cfg, inputs, 11)
	badSig, lowC, lowS := []uint32{3, 17}, uint32(8), uint32(21)
	step := s.tamperedStep(PhaseAdvertiseKeys, func(s *session) {
		for _, m := range s.adverts {
			switch {
			case slices.Contains(badSig, m.ID):
				m.Sig[8] ^= 1
			case m.ID == lowC || m.ID == lowS:
				if m.ID == lowC {
					m.CPub = lowOrderPoints[1]
				} else {
					m.SPub = lowOrderPoints[2]
				}
				m.Sig = signWith(s.t, m.ID, advertiseMessage(&s.server.session, m.ID, (*x25519.Key)(&m.CPub), (*x25519.Key)(&m.SPub)))
			}
		}
	})
	if err := step(); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id  uint32
		err error
	}{{3, ErrBadSignature}, {lowC, ErrBadKey}, {17, ErrBadSignature}, {lowS, ErrBadKey}}
	if len(s.rejected) != len(want) {
		t.Fatalf("CollectKeys rejected %v, want %v", s.rejected, want)
	}
	for i, w := range want {
		if r := s.rejected[i]; r.ID != w.id || !errors.Is(r.Err, w.err) {
			t.Fatalf("rejection %d = %v, want participant %d with %v", i, r, w.id, w.err)
		}
	}
	for _, id := range []uint32{3, 17, lowC, lowS} {
		s.drop[id] = PhaseAdvertiseKeys
	}
	s.drop[5] = PhaseMaskedInput // a dropped member: its mask key is reconstructed
	for _, f := range []func() error{s.share, s.mask} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	badConsist := []uint32{2, 14, 23}
	if err := s.tamperedStep(PhaseConsistencyCheck, func(s *session) {
		for _, m := range s.sigs {
			if slices.Contains(badConsist, m.ID) {
				m.Sig[6] ^= 1
			}
		}
	})(); err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, r := range s.rejected {
		if !errors.Is(r.Err, ErrBadSignature) {
			t.Errorf("CollectConsistency rejected %v, want ErrBadSignature", r)
		}
		got = append(got, r.ID)
	}
	if !slices.Equal(got, badConsist) {
		t.Fatalf("CollectConsistency rejected %v, want %v", got, badConsist)
	}
	for _, id := range badConsist {
		s.drop[id] = PhaseConsistencyCheck
	}
	s.answer()
	// Corrupt every share participant 1 holds, of several secrets: the
	// error names the first secret in the server's order (the survivors'
	// self masks, by id).
	var r1 *UnmaskResponse
	for _, r := range s.responses {
		if r.ID == 1 {
			r1 = r
		}
	}
	if r1 == nil || len(r1.SelfShares) < 2 {
		t.Fatalf("participant 1 answered %v", r1)
	}
	for i := range r1.SelfShares {
		r1.SelfShares[i].Value = encodeScalar(idScalar(777 + uint32(i)))
	}
	for i := range r1.KeyShares {
		r1.KeyShares[i].Value = encodeScalar(idScalar(999))
	}
	first := r1.SelfShares[0].Owner
	_, _, err := s.server.Unmask(s.responses)
	if !errors.Is(err, ErrReconstruct) || !containsID(err, first) || len(splitWords(err.Error())) != 1 {
		t.Fatalf("Unmask = %v, want ErrReconstruct naming participant %d only", err, first)
	}
}

// TestServerChecksSharesAndResponsesAtOnce checks that CollectShares and
// Unmask, which check their messages on all cores, reject exactly the
// bad ones, each with its own error, in order of id, and still unmask the
// right sum, whatever GOMAXPROCS is.
func TestServerChecksSharesAndResponsesAtOnce(t *testing.T) {
	const n = 16
	for _, procs := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			cfg := testConfig(n, 9, 0, 8)
			inputs := randomInputs(mrand.New(mrand.NewPCG(8, 8)), n, cfg.Dim)
			s := newSession(t, cfg, inputs, 12)
			if err := s.advertise(); err != nil {
				t.Fatal(err)
			}
			// Participants 4 and 10 leave out a share each.
			err := s.tamperedStep(PhaseShareKeys, func(s *session) {
				for _, m := range s.shares {
					switch m.ID {
					case 4:
						m.Shares = slices.Delete(m.Shares, 2, 3)
					case 10:
						m.Shares = m.Shares[:len(m.Shares)-1]
					}
				}
			})()
			if err != nil {
				t.Fatal(err)
			}
			checkRejections(t, "CollectShares", s.rejected, []uint32{4, 10}, []error{ErrInconsistent, ErrInconsistent})
			s.drop[4], s.drop[10] = PhaseShareKeys, PhaseShareKeys
			s.drop[8] = PhaseMaskedInput // its mask key is reconstructed
			for _, f := range []func() error{s.mask, s.consist} {
				if err := f(); err != nil {
					t.Fatal(err)
				}
			}
			s.answer()
			// Participant 2 sends a non-canonical share, participant 6
			// leaves out a self-mask share, participant 11 a mask-key share.
			for _, r := range s.responses {
				switch r.ID {
				case 2:
					for i := range r.SelfShares[1].Value {
						r.SelfShares[1].Value[i] = 0xff
					}
				case 6:
					r.SelfShares = r.SelfShares[1:]
				case 11:
					r.KeyShares = nil
				}
			}
			sum, rejected, err := s.server.Unmask(s.responses)
			if err != nil {
				t.Fatalf("Unmask: %v", err)
			}
			checkRejections(t, "Unmask", rejected, []uint32{2, 6, 11}, []error{ErrMalformed, ErrInconsistent, ErrInconsistent})
			if want := plainSum(inputs, s.survivors); !slices.Equal(sum, want) {
				t.Fatalf("Unmask = %v, want %v", sum, want)
			}
		})
	}
}

// checkRejections checks that rejected names ids, in order, with errors
// matching want.
func checkRejections(t *testing.T, round string, rejected []Rejection, ids []uint32, want []error) {
	t.Helper()
	if len(rejected) != len(ids) {
		t.Fatalf("%s rejected %v, want participants %v", round, rejected, ids)
	}
	for i, r := range rejected {
		if r.ID != ids[i] || !errors.Is(r.Err, want[i]) {
			t.Fatalf("%s rejection %d = %v, want participant %d with %v", round, i, r, ids[i], want[i])
		}
	}
}
