package secagg

import (
	"cmp"
	"crypto/subtle"
	"fmt"
	"math/big"
	"math/bits"
	"runtime"
	"slices"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"

	"github.com/fedguard/fedguard/internal/workers"
)

// Server is the aggregating side of one session: it checks and routes the
// participants' messages and computes the sum. Its methods are the
// rounds, called in order, each once, with every message received for
// that round. A participant whose message is missing or rejected has
// dropped out at that round. Any error is final: the session failed and
// the caller retries with a new Session. The server keeps the running sum
// of the masked inputs, never an individual one. A Server is not safe for
// concurrent use; it uses up to GOMAXPROCS goroutines internally.
type Server struct {
	cfg     Config
	session [32]byte
	g       *graph
	verify  Verify

	next Phase // the round expected next; 0 when finished
	err  error // why the session failed

	cPub, sPub []x25519.Key // by id, for U1
	commits    [][32]byte   // by id, for U2
	u1, u2, u3 *idSet
	u4         *idSet
	survivors  []uint32          // U3, sorted
	signed     survivorsEncoding // U3, as the consistency messages end
	sum        []uint32          // Σ_{U3} masked inputs
}

// NewServer returns the server of session cfg; verify checks the
// participants' identity signatures.
func NewServer(cfg Config, verify Verify) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if verify == nil {
		return nil, fmt.Errorf("%w: nil verify", ErrInvalidConfig)
	}
	cfg.Session = slices.Clone(cfg.Session)
	return &Server{
		cfg:     cfg,
		session: cfg.sessionDigest(),
		g:       newGraph(cfg),
		verify:  verify,
		next:    PhaseAdvertiseKeys,
		cPub:    make([]x25519.Key, cfg.N+1),
		sPub:    make([]x25519.Key, cfg.N+1),
		commits: make([][32]byte, cfg.N+1),
	}, nil
}

func (s *Server) begin(p Phase) error {
	switch {
	case s.err != nil:
		return fmt.Errorf("%w: at %v: %w", ErrAborted, p, s.err)
	case s.next == 0:
		return fmt.Errorf("%w: %v called after the session finished", ErrPhase, p)
	case p != s.next:
		return fmt.Errorf("%w: %v called, expected %v", ErrPhase, p, s.next)
	}
	return nil
}

// fail ends the session: the sum of masked inputs is erased.
func (s *Server) fail(err error) error {
	s.err = err
	clear(s.sum)
	s.sum = nil
	return err
}

// distinct drops nil messages and every message of a participant that
// sent more than one (the server cannot tell which is genuine), and sorts
// the rest by sender.
func distinct[M any](msgs []*M, id func(*M) uint32) ([]*M, []Rejection) {
	count := make(map[uint32]int, len(msgs))
	for _, m := range msgs {
		if m != nil {
			count[id(m)]++
		}
	}
	var out []*M
	var rejected []Rejection
	for _, m := range msgs {
		switch {
		case m == nil:
			rejected = append(rejected, Rejection{Err: fmt.Errorf("%w: nil message", ErrMalformed)})
		case count[id(m)] > 1:
			rejected = append(rejected, Rejection{ID: id(m), Err: fmt.Errorf("%w: %d messages from participant %d in one round", ErrMalformed, count[id(m)], id(m))})
			count[id(m)] = -1 // report once
		case count[id(m)] == 1:
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *M) int { return cmp.Compare(id(a), id(b)) })
	return out, rejected
}

func sortRejections(r []Rejection) []Rejection {
	slices.SortStableFunc(r, func(a, b Rejection) int { return cmp.Compare(a.ID, b.ID) })
	return r
}

// prune removes from set the participants whose secrets could never be
// reconstructed because fewer than Threshold of their closed
// neighbourhood are in set (always none, or everyone, in the complete
// graph), rejecting them, and fails if fewer than Threshold are left.
func (s *Server) prune(p Phase, set *idSet, rejected *[]Rejection) error {
	t := s.cfg.Threshold
	if set.len() < t {
		return &TooFewError{Phase: p, Have: set.len(), Need: t}
	}
	for changed := true; changed; {
		changed = false
		for _, id := range set.list() {
			if have := s.g.closedCount(id, set); have < t {
				set.remove(id)
				*rejected = append(*rejected, Rejection{ID: id, Err: &TooFewError{Phase: p, ID: id, Have: have, Need: t}})
				changed = true
			}
		}
	}
	if set.len() < t {
		return &TooFewError{Phase: p, Have: set.len(), Need: t}
	}
	return nil
}

// CollectKeys ends round 0. It checks each advertisement (well formed,
// validly signed, no low-order key), keeps the participants with at least
// Threshold of their closed neighbourhood advertised (U1), and returns for
// each of them the advertisements of its neighbours in U1, sorted by id.
func (s *Server) CollectKeys(msgs []*AdvertiseKeys) (relay map[uint32][]*AdvertiseKeys, rejected []Rejection, err error) {
	if err := s.begin(PhaseAdvertiseKeys); err != nil {
		return nil, nil, err
	}
	msgs, rejected = distinct(msgs, func(m *AdvertiseKeys) uint32 { return m.ID })
	// The checks (a signature and two low-order checks each) are
	// independent, and at n = 1,000 they were the server's largest serial
	// cost: they run on all cores, the results kept by position so that
	// the outcome does not depend on the schedule.
	errs := make([]error, len(msgs))
	forEach(len(msgs), func(_, i int) { errs[i] = s.checkAdvertisement(msgs[i]) })
	u1 := newIDSet(s.cfg.N)
	byID := make(map[uint32]*AdvertiseKeys, len(msgs))
	for i, m := range msgs {
		if err := errs[i]; err != nil {
			rejected = append(rejected, Rejection{ID: m.ID, Err: err})
			continue
		}
		u1.add(m.ID)
		byID[m.ID] = m
		s.cPub[m.ID], s.sPub[m.ID] = m.CPub, m.SPub
	}
	if err := s.prune(PhaseAdvertiseKeys, u1, &rejected); err != nil {
		return nil, sortRejections(rejected), s.fail(err)
	}
	s.u1 = u1
	relay = make(map[uint32][]*AdvertiseKeys, u1.len())
	for _, u := range u1.list() {
		list := []*AdvertiseKeys{}
		for _, v := range s.g.neighbours(u) {
			if u1.has(v) {
				list = append(list, byID[v])
			}
		}
		relay[u] = list
	}
	s.next = PhaseShareKeys
	return relay, sortRejections(rejected), nil
}

// forEach calls f(w, i) for every i in [0, n) on up to GOMAXPROCS
// goroutines, w naming the goroutine (no two concurrent calls share it),
// and returns when all calls have (workers.Indexed).
func forEach(n int, f func(w, i int)) { workers.Indexed(runtime.GOMAXPROCS(0), n, f) }

// checkAdvertisement checks m; it reads only m and the server's fixed
// configuration, so checks of distinct messages may run concurrently
// (s.verify must allow that, see Verify).
func (s *Server) checkAdvertisement(m *AdvertiseKeys) error {
	if err := m.Validate(s.cfg); err != nil {
		return err
	}
	cPub, sPub := m.keys()
	if err := s.verify(m.ID, advertiseMessage(&s.session, m.ID, cPub, sPub), m.Sig); err != nil {
		return fmt.Errorf("%w: advertisement of participant %d: %v", ErrBadSignature, m.ID, err)
	}
	for _, k := range []*x25519.Key{cPub, sPub} {
		if err := checkPublicKey(k); err != nil {
			return fmt.Errorf("advertisement of participant %d: %w", m.ID, err)
		}
	}
	return nil
}

// CollectShares ends round 1. It accepts the ShareKeys of participants in
// U1 that carry exactly one share for each of their neighbours in U1,
// keeps those with at least Threshold of their closed neighbourhood
// accepted (U2), and returns for each member of U2 the shares addressed to
// it by other members of U2, sorted by sender.
func (s *Server) CollectShares(msgs []*ShareKeys) (route map[uint32][]*EncryptedShare, rejected []Rejection, err error) {
	if err := s.begin(PhaseShareKeys); err != nil {
		return nil, nil, err
	}
	msgs, rejected = distinct(msgs, func(m *ShareKeys) uint32 { return m.ID })
	u2 := newIDSet(s.cfg.N)
	byID := make(map[uint32]*ShareKeys, len(msgs))
	// The checks read only the message and U1, so they run on all cores
	// (with the complete graph each compares n−1 recipients), the results
	// kept by position.
	errs := make([]error, len(msgs))
	forEach(len(msgs), func(_, i int) { errs[i] = s.checkShares(msgs[i]) })
	for i, m := range msgs {
		if err := errs[i]; err != nil {
			rejected = append(rejected, Rejection{ID: m.ID, Err: err})
			continue
		}
		u2.add(m.ID)
		byID[m.ID] = m
	}
	if err := s.prune(PhaseShareKeys, u2, &rejected); err != nil {
		return nil, sortRejections(rejected), s.fail(err)
	}
	s.u2 = u2
	route = make(map[uint32][]*EncryptedShare, u2.len())
	for _, u := range u2.list() {
		route[u] = make([]*EncryptedShare, 0, min(u2.len(), s.g.degree()))
	}
	for _, u := range u2.list() {
		s.commits[u] = byID[u].SelfCommit
		for _, es := range byID[u].Shares {
			if u2.has(es.To) {
				route[es.To] = append(route[es.To], es)
			}
		}
	}
	s.next = PhaseMaskedInput
	return route, sortRejections(rejected), nil
}

func (s *Server) checkShares(m *ShareKeys) error {
	if !s.u1.has(m.ID) {
		return fmt.Errorf("%w: shares from participant %d, which did not advertise keys", ErrInconsistent, m.ID)
	}
	if err := m.Validate(s.cfg); err != nil {
		return err
	}
	var want, got []uint32
	for _, v := range s.g.neighbours(m.ID) {
		if s.u1.has(v) {
			want = append(want, v)
		}
	}
	for _, es := range m.Shares {
		got = append(got, es.To)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("%w: participant %d sent shares to %s, want its neighbours that advertised keys %s",
			ErrInconsistent, m.ID, formatIDs(got), formatIDs(want))
	}
	return nil
}

// CollectMasked ends round 2. It accepts the masked inputs of members of
// U2 (they form U3), adds them up, and returns U3, sorted. It fails if
// some secret needed to unmask could not be reconstructed from the
// members of U3 (each survivor needs Threshold of its closed
// neighbourhood in U3, each dropped participant with a surviving
// neighbour Threshold of its neighbours), or if the neighbour graph on U3
// is disconnected.
func (s *Server) CollectMasked(msgs []*MaskedInput) (survivors []uint32, rejected []Rejection, err error) {
	if err := s.begin(PhaseMaskedInput); err != nil {
		return nil, nil, err
	}
	msgs, rejected = distinct(msgs, func(m *MaskedInput) uint32 { return m.ID })
	u3 := newIDSet(s.cfg.N)
	var vecs [][]uint32
	for _, m := range msgs {
		if !s.u2.has(m.ID) {
			rejected = append(rejected, Rejection{ID: m.ID, Err: fmt.Errorf("%w: masked input from participant %d, which is not in U2", ErrInconsistent, m.ID)})
			continue
		}
		if err := m.Validate(s.cfg); err != nil {
			rejected = append(rejected, Rejection{ID: m.ID, Err: err})
			continue
		}
		u3.add(m.ID)
		vecs = append(vecs, m.Masked)
	}
	rejected = sortRejections(rejected)
	s.u3 = u3
	if u3.len() < s.cfg.Threshold {
		return nil, rejected, s.fail(&TooFewError{Phase: PhaseMaskedInput, Have: u3.len(), Need: s.cfg.Threshold})
	}
	if err := s.checkRecoverable(PhaseMaskedInput, u3); err != nil {
		return nil, rejected, s.fail(err)
	}
	if parts := s.g.components(u3); len(parts) > 1 {
		return nil, rejected, s.fail(fmt.Errorf("%w: survivors %s split into parts of sizes %v", ErrDisconnected, formatIDs(u3.list()), parts))
	}
	s.sum = make([]uint32, s.cfg.Dim)
	sumVectors(s.sum, vecs)
	s.survivors = u3.list()
	s.signed = encodeSurvivors(s.survivors)
	s.next = PhaseConsistencyCheck
	return slices.Clone(s.survivors), rejected, nil
}

// checkRecoverable checks that every secret the server will need can be
// reconstructed from the shares of holders: the self-mask secret of each
// survivor (held by its closed neighbourhood) and the mask key of each
// dropped member of U2 with a surviving neighbour (held by its
// neighbours).
func (s *Server) checkRecoverable(p Phase, holders *idSet) error {
	t := s.cfg.Threshold
	for _, w := range s.u2.list() {
		if !s.u3.has(w) && !s.g.hasNeighbourIn(w, s.u3) {
			continue // dropped, and no survivor masked against it
		}
		if have := s.g.closedCount(w, holders); have < t {
			return &TooFewError{Phase: p, ID: w, Have: have, Need: t}
		}
	}
	return nil
}

// CollectConsistency ends round 3. It accepts the valid signatures of U3
// by members of U3 (their signers form U4), requires at least Threshold of
// them overall and enough in every neighbourhood to reconstruct each
// needed secret, and returns one UnmaskRequest for each member of U4.
func (s *Server) CollectConsistency(sigs []*ConsistencySig) (requests map[uint32]*UnmaskRequest, rejected []Rejection, err error) {
	if err := s.begin(PhaseConsistencyCheck); err != nil {
		return nil, nil, err
	}
	sigs, rejected = distinct(sigs, func(m *ConsistencySig) uint32 { return m.ID })
	u4 := newIDSet(s.cfg.N)
	var valid []*ConsistencySig
	errs := make([]error, len(sigs))
	forEach(len(sigs), func(_, i int) { errs[i] = s.checkConsistency(sigs[i]) })
	for i, m := range sigs {
		if err := errs[i]; err != nil {
			rejected = append(rejected, Rejection{ID: m.ID, Err: err})
			continue
		}
		u4.add(m.ID)
		valid = append(valid, m)
	}
	rejected = sortRejections(rejected)
	if u4.len() < s.cfg.Threshold {
		return nil, rejected, s.fail(&TooFewError{Phase: PhaseConsistencyCheck, Have: u4.len(), Need: s.cfg.Threshold})
	}
	if err := s.checkRecoverable(PhaseConsistencyCheck, u4); err != nil {
		return nil, rejected, s.fail(err)
	}
	s.u4 = u4
	requests = make(map[uint32]*UnmaskRequest, u4.len())
	for _, u := range u4.list() {
		requests[u] = &UnmaskRequest{
			ID:        u,
			Survivors: slices.Clone(s.survivors),
			Dropped:   s.dropped(u),
			Sigs:      slices.Clone(valid),
		}
	}
	s.next = PhaseUnmasking
	return requests, rejected, nil
}

// checkConsistency checks m; like checkAdvertisement, it may run
// concurrently for distinct messages.
func (s *Server) checkConsistency(m *ConsistencySig) error {
	if !s.u3.has(m.ID) {
		return fmt.Errorf("%w: consistency signature from participant %d, which is not a survivor", ErrInconsistent, m.ID)
	}
	if err := m.Validate(s.cfg); err != nil {
		return err
	}
	if err := s.verify(m.ID, s.signed.message(&s.session, m.ID), m.Sig); err != nil {
		return fmt.Errorf("%w: consistency signature of participant %d: %v", ErrBadSignature, m.ID, err)
	}
	return nil
}

// dropped returns u's neighbours in U2 that are not in U3, sorted.
func (s *Server) dropped(u uint32) []uint32 {
	var out []uint32
	for _, v := range s.g.neighbours(u) {
		if s.u2.has(v) && !s.u3.has(v) {
			out = append(out, v)
		}
	}
	return out
}

// selfOwners returns u and its neighbours in U3, sorted: whose self-mask
// shares u reveals.
func (s *Server) selfOwners(u uint32) []uint32 {
	out := []uint32{u}
	for _, v := range s.g.neighbours(u) {
		if s.u3.has(v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// Unmask ends round 4. It accepts the responses of members of U4 that
// carry exactly the shares their request asked for, reconstructs each
// survivor's self-mask secret and each needed dropped participant's mask
// key (checking them against the self-mask commitment and the advertised
// mask key), removes the masks from the sum of U3's masked inputs, and
// returns Σ_{u in U3} input_u modulo 2^32.
func (s *Server) Unmask(resps []*UnmaskResponse) (sum []uint32, rejected []Rejection, err error) {
	if err := s.begin(PhaseUnmasking); err != nil {
		return nil, nil, err
	}
	resps, rejected = distinct(resps, func(m *UnmaskResponse) uint32 { return m.ID })
	// Checking the responses and decoding their shares (each scalar twice,
	// by Validate and here) was the server's largest serial step before
	// the masks at n = 500 with the complete graph (225,000 shares, about
	// 4 % of its wall time): it runs on all cores, the results kept by
	// position so that the held shares are in the same order as before.
	checked := make([]checkedResponse, len(resps))
	forEach(len(resps), func(_, i int) { checked[i] = s.checkAndDecode(resps[i]) })
	u5 := newIDSet(s.cfg.N)
	selfHeld := make(map[uint32][]heldShare)
	keyHeld := make(map[uint32][]heldShare)
	// Each secret has at most one share per member of its owner's closed
	// neighbourhood.
	holders := min(len(resps), s.g.degree()+1)
	hold := func(held map[uint32][]heldShare, holder uint32, shares []Share, values []group.Scalar) {
		for j := range shares {
			owner := shares[j].Owner
			if held[owner] == nil {
				held[owner] = make([]heldShare, 0, holders)
			}
			held[owner] = append(held[owner], heldShare{holder: holder, value: values[j]})
		}
	}
	for i, r := range resps {
		c := &checked[i]
		if c.err != nil {
			rejected = append(rejected, Rejection{ID: r.ID, Err: c.err})
			continue
		}
		u5.add(r.ID)
		hold(selfHeld, r.ID, r.SelfShares, c.self)
		hold(keyHeld, r.ID, r.KeyShares, c.key)
	}
	rejected = sortRejections(rejected)
	if u5.len() < s.cfg.Threshold {
		return nil, rejected, s.fail(&TooFewError{Phase: PhaseUnmasking, Have: u5.len(), Need: s.cfg.Threshold})
	}
	if err := s.checkRecoverable(PhaseUnmasking, u5); err != nil {
		return nil, rejected, s.fail(err)
	}
	masks, err := s.reconstruct(selfHeld, keyHeld)
	if err != nil {
		return nil, rejected, s.fail(err)
	}
	if err := masks.apply(s.sum); err != nil {
		return nil, rejected, s.fail(err)
	}
	sum, s.sum = s.sum, nil
	s.next = 0
	return sum, rejected, nil
}

// checkedResponse is a response checked by checkAndDecode: the values of
// its self-mask and mask-key shares, in order, or why it was rejected.
type checkedResponse struct {
	self, key []group.Scalar
	err       error
}

// checkAndDecode checks r and decodes its shares; like checkAdvertisement,
// it reads only r and the server's state of earlier rounds, so distinct
// responses may be checked concurrently.
func (s *Server) checkAndDecode(r *UnmaskResponse) checkedResponse {
	if err := s.checkResponse(r); err != nil {
		return checkedResponse{err: err}
	}
	decode := func(shares []Share) []group.Scalar {
		out := make([]group.Scalar, len(shares))
		for j := range shares {
			out[j], _ = decodeScalar(&shares[j].Value) // checked by Validate
		}
		return out
	}
	return checkedResponse{self: decode(r.SelfShares), key: decode(r.KeyShares)}
}

func (s *Server) checkResponse(r *UnmaskResponse) error {
	if !s.u4.has(r.ID) {
		return fmt.Errorf("%w: unmask response from participant %d, which was not asked", ErrInconsistent, r.ID)
	}
	if err := r.Validate(s.cfg); err != nil {
		return err
	}
	owners := func(shares []Share) []uint32 {
		out := make([]uint32, len(shares))
		for i := range shares {
			out[i] = shares[i].Owner
		}
		return out
	}
	if got, want := owners(r.SelfShares), s.selfOwners(r.ID); !slices.Equal(got, want) {
		return fmt.Errorf("%w: participant %d sent self-mask shares of %s, want %s", ErrInconsistent, r.ID, formatIDs(got), formatIDs(want))
	}
	if got, want := owners(r.KeyShares), s.dropped(r.ID); !slices.Equal(got, want) {
		return fmt.Errorf("%w: participant %d sent mask-key shares of %s, want %s", ErrInconsistent, r.ID, formatIDs(got), formatIDs(want))
	}
	return nil
}

// reconstruct recovers the secrets and returns the masks to take off the
// sum: each survivor's self mask, and each dangling pairwise mask between
// a survivor u and a dropped neighbour v (which u added with sign + when
// u < v, so it is removed with −). A pairwise mask's seed is left for
// serverMasks.seed to derive, on the goroutine that expands it: the
// X25519 agreements are as many as the dangling masks, and deriving them
// here, one after the other, once cost as much as expanding the masks on
// two cores (issue 16's profile).
func (s *Server) reconstruct(selfHeld, keyHeld map[uint32][]heldShare) (*serverMasks, error) {
	// The secrets are interpolated together (recoverAll: one field
	// inversion for all their Lagrange bases) and checked on all cores.
	// The results are kept by position, and the first error in the serial
	// order is the one reported, so nothing depends on the schedule.
	var dropped []uint32
	for _, v := range s.u2.list() {
		if !s.u3.has(v) && s.g.hasNeighbourIn(v, s.u3) {
			dropped = append(dropped, v)
		}
	}
	nSelf := len(s.survivors)
	held := make([][]heldShare, 0, nSelf+len(dropped))
	for _, w := range s.survivors {
		held = append(held, selfHeld[w])
	}
	for _, v := range dropped {
		held = append(held, keyHeld[v])
	}
	secrets, errs := recoverAll(s.cfg.Threshold, held)
	selfSeeds := make([][SeedSize]byte, nSelf)
	privs := make([]x25519.Key, len(dropped))
	forEach(len(errs), func(_, i int) {
		if i < nSelf {
			w := s.survivors[i]
			if errs[i] != nil {
				errs[i] = fmt.Errorf("secagg: reconstruct self-mask secret of participant %d: %w", w, errs[i])
				return
			}
			errs[i] = s.checkSelf(secrets[i], w, &selfSeeds[i])
		} else {
			v := dropped[i-nSelf]
			if errs[i] != nil {
				errs[i] = fmt.Errorf("secagg: reconstruct mask key of participant %d: %w", v, errs[i])
				return
			}
			errs[i] = s.checkKey(secrets[i], v, &privs[i-nSelf])
		}
	})
	m := &serverMasks{s: s, priv: map[uint32]*x25519.Key{}}
	wipe := func() {
		for i := range selfSeeds {
			clear(selfSeeds[i][:])
		}
		for i := range privs {
			clear(privs[i][:])
		}
	}
	for _, err := range errs {
		if err != nil {
			wipe()
			return nil, err
		}
	}
	for i := range selfSeeds {
		m.jobs = append(m.jobs, maskJob{seed: selfSeeds[i], negate: true})
		clear(selfSeeds[i][:])
	}
	for i, v := range dropped {
		m.priv[v] = &privs[i]
		s.g.eachNeighbour(v, func(u uint32) {
			if s.u3.has(u) {
				m.jobs = append(m.jobs, maskJob{dropped: v, survivor: u, negate: u < v})
			}
		})
	}
	return m, nil
}

// checkSelf checks survivor w's reconstructed self-mask secret b against
// w's commitment, and sets *seed to its self-mask seed.
func (s *Server) checkSelf(b group.Scalar, w uint32, seed *[SeedSize]byte) error {
	enc := encodeScalar(b)
	defer clear(enc[:])
	commit := selfCommit(enc[:], &s.session, w)
	if subtle.ConstantTimeCompare(commit[:], s.commits[w][:]) != 1 {
		return fmt.Errorf("%w: self-mask secret of participant %d", ErrReconstruct, w)
	}
	*seed = selfSeed(enc[:], &s.session, w)
	return nil
}

// checkKey checks dropped participant v's reconstructed mask key sv
// against v's advertised public key, and sets *priv to its encoding.
func (s *Server) checkKey(sv group.Scalar, v uint32, priv *x25519.Key) error {
	*priv = x25519.Key(encodeScalar(sv))
	var pub x25519.Key
	x25519.KeyGen(&pub, priv)
	if subtle.ConstantTimeCompare(pub[:], s.sPub[v][:]) != 1 {
		clear(priv[:])
		return fmt.Errorf("%w: mask key of participant %d does not match its advertised public key", ErrReconstruct, v)
	}
	return nil
}

// serverMasks are the masks Unmask takes off the sum.
type serverMasks struct {
	s    *Server
	jobs []maskJob
	// priv holds the reconstructed mask key of each dropped participant
	// whose pairwise masks are in jobs, until apply wipes it.
	priv map[uint32]*x25519.Key
}

// maskJob is one mask: a self mask with its seed, or the pairwise mask
// between a dropped participant and a survivor, whose seed is derived
// when it is expanded.
type maskJob struct {
	seed              [SeedSize]byte // when dropped is 0
	dropped, survivor uint32
	negate            bool
}

// seed is job i's seed and sign.
func (m *serverMasks) seed(i int) ([SeedSize]byte, bool, error) {
	j := &m.jobs[i]
	if j.dropped == 0 {
		return j.seed, j.negate, nil
	}
	s := m.s
	u, v := j.survivor, j.dropped
	dh, err := agree(m.priv[v], &s.sPub[u])
	if err != nil {
		return [SeedSize]byte{}, false, err // cannot happen: keys were checked in CollectKeys
	}
	seed := pairSeed(&dh, &s.session, u, v, &s.sPub[u], &s.sPub[v])
	clear(dh[:])
	return seed, j.negate, nil
}

// apply takes every mask off dst and wipes the secrets.
func (m *serverMasks) apply(dst []uint32) error {
	defer m.wipe()
	return addMasks(dst, len(m.jobs), m.seed)
}

func (m *serverMasks) wipe() {
	for _, k := range m.priv {
		clear(k[:])
	}
	for i := range m.jobs {
		clear(m.jobs[i].seed[:])
	}
}

// groupOrder is ℓ, the order of ristretto255's scalar field.
var groupOrder, _ = new(big.Int).SetString("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed", 16)

// scalarOfInt returns the scalar x mod ℓ for x ≥ 0 (circl's SetBigInt
// parses ℓ from a string on every call, a fifth of the Lagrange bases' time).
func scalarOfInt(x *big.Int) group.Scalar {
	var r big.Int
	var le [scalarSize]byte
	r.Mod(x, groupOrder).FillBytes(le[:])
	slices.Reverse(le[:])
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(le[:]); err != nil {
		panic("secagg: a reduced scalar is not canonical") // r < ℓ
	}
	return s
}

// lagrangeBases returns, for each set of distinct, non-zero points ids
// (as scalars, idScalar), its Lagrange basis coefficients at 0: λ_j =
// Π_{m≠j} x_m / (x_m − x_j), the values of circl's
// polynomial.LagrangeBase(j, xs, 0). LagrangeBase inverts one field
// element per coefficient; with a SecAgg+ graph every secret has its own
// holders, and those inversions were 45 % of the server's time at n =
// 1,000, degree 30 (issue 16's profile), and one inversion per set still
// 3 % of it. Here the denominators x_j·Π_{m≠j}(x_m − x_j) of every set
// are inverted at once (Montgomery's trick, twice: within each set and
// across the sets' products, one inversion in all and about 3 field
// multiplications per denominator and per set) and multiplied by Π x_m.
// The sets run on all cores.
func lagrangeBases(sets [][]uint32) [][]group.Scalar {
	g := group.Ristretto255
	dens := make([][]group.Scalar, len(sets))
	nums := make([]group.Scalar, len(sets))
	prods := make([]group.Scalar, len(sets))
	forEach(len(sets), func(_, k int) {
		dens[k], nums[k] = lagrangeDenominators(sets[k])
		p := g.NewScalar().SetUint64(1)
		for _, d := range dens[k] {
			p.Mul(p, d)
		}
		prods[k] = p
	})
	total := g.NewScalar().SetUint64(1)
	for _, p := range prods {
		total.Mul(total, p)
	}
	invProds := inverses(prods, g.NewScalar().Inv(total))
	out := make([][]group.Scalar, len(sets))
	forEach(len(sets), func(_, k int) {
		out[k] = inverses(dens[k], invProds[k])
		for _, c := range out[k] {
			c.Mul(c, nums[k])
		}
	})
	return out
}

// inverses returns 1/xs[j] for every j, given inv = 1/Π xs: with prefix
// products, peeled from the end, 3 multiplications per element.
func inverses(xs []group.Scalar, inv group.Scalar) []group.Scalar {
	g := group.Ristretto255
	prefix := make([]group.Scalar, len(xs)) // Π_{i<j} xs[i]
	acc := g.NewScalar().SetUint64(1)
	for j, x := range xs {
		prefix[j] = acc.Copy()
		acc.Mul(acc, x)
	}
	inv = inv.Copy()
	out := make([]group.Scalar, len(xs))
	for j := len(xs) - 1; j >= 0; j-- {
		out[j] = g.NewScalar().Mul(inv, prefix[j])
		inv.Mul(inv, xs[j])
	}
	return out
}

// lagrangeDenominators returns the denominators x_j·Π_{m≠j}(x_m − x_j) of
// the Lagrange basis at 0 of ids, and the numerator Π x_m they share. The
// points are small integers, so each denominator is first computed
// exactly as an integer (a few machine words per factor, in 64-bit
// pieces) and reduced once, rather than by t−1 scalar multiplications:
// those were the next largest part of the reconstruction.
func lagrangeDenominators(ids []uint32) (dens []group.Scalar, num group.Scalar) {
	g := group.Ristretto255
	num = g.NewScalar().SetUint64(1)
	for _, x := range ids {
		num.Mul(num, idScalar(x))
	}
	dens = make([]group.Scalar, len(ids))
	var d, piece big.Int
	for j, xj := range ids {
		// d = |x_j·Π(x_m − x_j)|, its sign in neg; acc holds the factors
		// not yet multiplied into d while their product fits 64 bits.
		d.SetUint64(1)
		acc, neg := uint64(xj), false
		for m, xm := range ids {
			if m == j {
				continue
			}
			f := uint64(xm) - uint64(xj)
			if xm < xj {
				f, neg = uint64(xj)-uint64(xm), !neg
			}
			if hi, lo := bits.Mul64(acc, f); hi == 0 {
				acc = lo
				continue
			}
			d.Mul(&d, piece.SetUint64(acc))
			acc = f
		}
		d.Mul(&d, piece.SetUint64(acc))
		dens[j] = scalarOfInt(&d)
		if neg {
			dens[j].Neg(dens[j])
		}
	}
	return dens, num
}
