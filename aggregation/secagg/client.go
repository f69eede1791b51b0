package secagg

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"
)

type clientState int

const (
	clientNew clientState = iota
	clientAdvertised
	clientShared
	clientMasked
	clientSigned
	clientDone
	clientFailed
)

// peer is what a Client knows of one neighbour.
type peer struct {
	// Derived once from the agreements with its advertised keys.
	sendKey, recvKey [32]byte       // for our share ciphertext to it, and its to us
	pairSeed         [SeedSize]byte // of our pairwise mask
	// shared: its shares for us arrived and decrypted, so it is in our
	// view of U2 and we mask against it.
	shared    bool
	selfShare [scalarSize]byte // our share of its self-mask secret
	keyShare  [scalarSize]byte // our share of its mask key
}

// Client is one participant in one session. Its methods are the rounds,
// called in order, each at most once; any error is final (the client
// aborts, forgets its secrets and answers nothing more), so that the
// session goes on with it counted as having dropped out. A Client is not
// safe for concurrent use.
type Client struct {
	cfg     Config
	id      uint32
	session [32]byte
	g       *graph
	signer  crypto.Signer
	verify  Verify
	rand    io.Reader

	state clientState
	err   error // why the client aborted

	cPriv, cPub x25519.Key
	sPriv, sPub x25519.Key // sPriv is the encoding of s: see AdvertiseKeys
	s           group.Scalar
	selfSeed    [SeedSize]byte
	// own shares of its own secrets: it holds one, like a neighbour.
	ownSelfShare, ownKeyShare [scalarSize]byte
	peers                     map[uint32]*peer
	signed                    []uint32 // the survivor set U3 it signed
}

// NewClient returns participant id's Client for the session cfg. signer is
// its identity key (ECDSA or Ed25519), verify checks the other
// participants' identity signatures, and rand is the source of all its
// secrets: crypto/rand.Reader outside tests.
func NewClient(cfg Config, id uint32, signer crypto.Signer, verify Verify, rand io.Reader) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case id == 0 || id > uint32(cfg.N):
		return nil, fmt.Errorf("%w: participant id %d not in 1..%d", ErrInvalidConfig, id, cfg.N)
	case signer == nil || verify == nil || rand == nil:
		return nil, fmt.Errorf("%w: nil signer, verify or rand", ErrInvalidConfig)
	}
	if err := checkSigner(signer); err != nil {
		return nil, err
	}
	cfg.Session = slices.Clone(cfg.Session)
	return &Client{
		cfg:     cfg,
		id:      id,
		session: cfg.sessionDigest(),
		g:       newGraph(cfg),
		signer:  signer,
		verify:  verify,
		rand:    rand,
		peers:   make(map[uint32]*peer),
	}, nil
}

// ID returns the participant's id.
func (c *Client) ID() uint32 { return c.id }

// Failed reports whether the client has aborted: it answers nothing more.
func (c *Client) Failed() bool { return c.state == clientFailed }

// begin checks that the client is in state want before a round.
func (c *Client) begin(want clientState, round string) error {
	switch c.state {
	case want:
		return nil
	case clientFailed:
		return fmt.Errorf("%w: participant %d, at %s: %w", ErrAborted, c.id, round, c.err)
	}
	return c.fail(fmt.Errorf("%w: participant %d: %s called in state %d, want %d", ErrPhase, c.id, round, c.state, want))
}

// fail aborts the client: it forgets its secrets and answers nothing
// more.
func (c *Client) fail(err error) error {
	c.state = clientFailed
	c.err = err
	c.wipe()
	return err
}

// wipe clears the secrets the client holds (best effort: Go may have
// copied them).
func (c *Client) wipe() {
	clear(c.cPriv[:])
	clear(c.sPriv[:])
	clear(c.selfSeed[:])
	clear(c.ownSelfShare[:])
	clear(c.ownKeyShare[:])
	c.s = nil
	for _, p := range c.peers {
		clear(p.sendKey[:])
		clear(p.recvKey[:])
		clear(p.pairSeed[:])
		clear(p.selfShare[:])
		clear(p.keyShare[:])
	}
}

// AdvertiseKeys is round 0: it makes the two X25519 key pairs and signs
// their public halves. The c private key is 32 random bytes. The s private
// key is the 32-byte encoding of a random ristretto255 scalar, so that it
// can be Shamir-shared over the scalar field. That is a valid X25519
// private key: RFC 7748 accepts any 32 bytes as one (X25519 clamps them:
// clears the 3 low bits and bit 255, sets bit 254). A canonical scalar is
// a uniform integer below ℓ ≈ 2^252, so the clamped key keeps about 249
// bits of entropy, beyond X25519's 128-bit security level; and the scalar
// reconstructed from shares encodes to the same 32 bytes, hence the same
// X25519 key.
func (c *Client) AdvertiseKeys() (*AdvertiseKeys, error) {
	if err := c.begin(clientNew, "AdvertiseKeys"); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c.rand, c.cPriv[:]); err != nil {
		return nil, c.fail(fmt.Errorf("secagg: participant %d: read randomness: %w", c.id, err))
	}
	x25519.KeyGen(&c.cPub, &c.cPriv)
	s, err := randomScalar(c.rand)
	if err != nil {
		return nil, c.fail(err)
	}
	c.s = s
	c.sPriv = x25519.Key(encodeScalar(s))
	x25519.KeyGen(&c.sPub, &c.sPriv)
	sig, err := sign(c.signer, c.rand, advertiseMessage(&c.session, c.id, &c.cPub, &c.sPub))
	if err != nil {
		return nil, c.fail(fmt.Errorf("secagg: participant %d: sign advertisement: %w", c.id, err))
	}
	c.state = clientAdvertised
	return &AdvertiseKeys{ID: c.id, CPub: c.cPub, SPub: c.sPub, Sig: sig}, nil
}

// ShareKeys is round 1. It checks every advertisement the server relayed
// (a neighbour's, once, validly signed, with valid keys: anything else
// means the server is lying, and the client aborts), draws its self-mask
// secret b, and Shamir-shares b and its mask key s among itself and the
// advertised neighbours, Threshold of them reconstructing. Each
// neighbour's shares are sealed under a key only that neighbour and this
// participant can derive.
func (c *Client) ShareKeys(neighbours []*AdvertiseKeys) (*ShareKeys, error) {
	if err := c.begin(clientAdvertised, "ShareKeys"); err != nil {
		return nil, err
	}
	if len(neighbours) > c.g.degree() {
		return nil, c.fail(fmt.Errorf("%w: %d advertisements relayed to participant %d, which has %d neighbours",
			ErrMalformed, len(neighbours), c.id, c.g.degree()))
	}
	for _, adv := range neighbours {
		p, err := c.checkAdvertisement(adv)
		if err != nil {
			return nil, c.fail(err)
		}
		c.peers[adv.ID] = p
	}
	holders := c.holders(func(*peer) bool { return true })
	if len(holders) < c.cfg.Threshold {
		return nil, c.fail(&TooFewError{Phase: PhaseShareKeys, ID: c.id, Have: len(holders), Need: c.cfg.Threshold})
	}

	b, err := randomScalar(c.rand)
	if err != nil {
		return nil, c.fail(err)
	}
	bEnc := encodeScalar(b)
	c.selfSeed = selfSeed(bEnc[:], &c.session, c.id)
	commit := selfCommit(bEnc[:], &c.session, c.id)
	clear(bEnc[:])
	bShares := splitSecret(c.rand, c.cfg.Threshold, b, holders)
	sShares := splitSecret(c.rand, c.cfg.Threshold, c.s, holders)
	c.ownSelfShare, c.ownKeyShare = bShares[c.id], sShares[c.id]

	msg := &ShareKeys{ID: c.id, SelfCommit: commit}
	for _, v := range holders {
		if v == c.id {
			continue
		}
		p := c.peers[v]
		plain := make([]byte, 0, 2*scalarSize)
		bs, ss := bShares[v], sShares[v]
		plain = append(append(plain, bs[:]...), ss[:]...)
		ct := newAEAD(&p.sendKey).Seal(nil, zeroNonce[:], plain, shareAD(&c.session, c.id, v))
		clear(plain)
		msg.Shares = append(msg.Shares, &EncryptedShare{From: c.id, To: v, Ciphertext: ct})
	}
	c.state = clientShared
	return msg, nil
}

// checkAdvertisement checks one relayed advertisement and derives what
// this participant needs from the neighbour's keys. The two agreements
// reject low-order points.
func (c *Client) checkAdvertisement(adv *AdvertiseKeys) (*peer, error) {
	if adv == nil {
		return nil, fmt.Errorf("%w: nil advertisement relayed to participant %d", ErrMalformed, c.id)
	}
	if err := adv.Validate(c.cfg); err != nil {
		return nil, err
	}
	if !c.g.adjacent(c.id, adv.ID) {
		return nil, fmt.Errorf("%w: advertisement of participant %d relayed to participant %d, not its neighbour", ErrMalformed, adv.ID, c.id)
	}
	if _, dup := c.peers[adv.ID]; dup {
		return nil, fmt.Errorf("%w: advertisement of participant %d relayed twice", ErrMalformed, adv.ID)
	}
	cPub, sPub := adv.keys()
	if err := c.verify(adv.ID, advertiseMessage(&c.session, adv.ID, cPub, sPub), adv.Sig); err != nil {
		return nil, fmt.Errorf("%w: advertisement of participant %d: %v", ErrBadSignature, adv.ID, err)
	}
	cDH, err := agree(&c.cPriv, cPub)
	if err != nil {
		return nil, fmt.Errorf("advertisement of participant %d: %w", adv.ID, err)
	}
	sDH, err := agree(&c.sPriv, sPub)
	if err != nil {
		return nil, fmt.Errorf("advertisement of participant %d: %w", adv.ID, err)
	}
	p := &peer{
		sendKey:  shareKey(&cDH, &c.session, c.id, adv.ID, &c.cPub, cPub),
		recvKey:  shareKey(&cDH, &c.session, adv.ID, c.id, cPub, &c.cPub),
		pairSeed: pairSeed(&sDH, &c.session, c.id, adv.ID, &c.sPub, sPub),
	}
	clear(cDH[:])
	clear(sDH[:])
	return p, nil
}

// holders returns, sorted, this participant and its peers that satisfy
// keep.
func (c *Client) holders(keep func(*peer) bool) []uint32 {
	out := []uint32{c.id}
	for id, p := range c.peers {
		if keep(p) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// MaskedInput is round 2. It decrypts the shares the server routed to it
// (their senders form its view of U2), then returns
//
//	y = input + PRG(b) + Σ_{v in U2, v a neighbour} ±PRG(s_uv)
//
// with + for v above its own id and − below, so that each pair's masks
// cancel in the sum. input must have Dim words; it is not modified.
//
// A share that fails authentication or decrypts to a malformed share
// aborts the participant with a *ShareError naming the sender (matching
// ErrBadShare); the session goes on with this participant dropped after
// ShareKeys, which the protocol recovers from. Dropping only the sender
// instead is not possible safely: the sender masked against this
// participant, so either the sender's input is discarded (and then any
// participant could evict honest neighbours by false reports) or the
// dangling mask needs both secrets of someone. A malicious neighbour can
// therefore make its neighbours drop out (as it could make the round fail
// by sending a bad input), but learns nothing from it; the error names it
// for the operator.
func (c *Client) MaskedInput(shares []*EncryptedShare, input []uint32) (*MaskedInput, error) {
	if err := c.begin(clientShared, "MaskedInput"); err != nil {
		return nil, err
	}
	if len(input) != c.cfg.Dim {
		return nil, c.fail(fmt.Errorf("%w: participant %d: input of %d words, want Dim = %d", ErrInvalidConfig, c.id, len(input), c.cfg.Dim))
	}
	for _, es := range shares {
		if err := c.openShare(es); err != nil {
			return nil, c.fail(err)
		}
	}
	holders := c.holders(func(p *peer) bool { return p.shared })
	if len(holders) < c.cfg.Threshold {
		return nil, c.fail(&TooFewError{Phase: PhaseMaskedInput, ID: c.id, Have: len(holders), Need: c.cfg.Threshold})
	}

	masks := make([]mask, 0, len(holders))
	masks = append(masks, mask{seed: c.selfSeed})
	for _, v := range holders {
		if v == c.id {
			continue
		}
		masks = append(masks, mask{seed: c.peers[v].pairSeed, negate: v < c.id})
	}
	y := slices.Clone(input)
	applyMasks(y, masks)
	c.state = clientMasked
	return &MaskedInput{ID: c.id, Masked: y}, nil
}

// openShare decrypts and stores one routed share.
func (c *Client) openShare(es *EncryptedShare) error {
	if es == nil {
		return fmt.Errorf("%w: nil share routed to participant %d", ErrMalformed, c.id)
	}
	if err := es.Validate(c.cfg); err != nil {
		return err
	}
	if es.To != c.id {
		return fmt.Errorf("%w: share for participant %d routed to participant %d", ErrMalformed, es.To, c.id)
	}
	p, ok := c.peers[es.From]
	if !ok {
		return fmt.Errorf("%w: share from participant %d, whose keys participant %d never received", ErrMalformed, es.From, c.id)
	}
	if p.shared {
		return fmt.Errorf("%w: two shares from participant %d", ErrMalformed, es.From)
	}
	plain, err := newAEAD(&p.recvKey).Open(nil, zeroNonce[:], es.Ciphertext, shareAD(&c.session, es.From, c.id))
	if err != nil {
		return &ShareError{From: es.From, To: c.id, Err: errors.New("ciphertext failed authentication")}
	}
	defer clear(plain)
	bs, ss := (*[scalarSize]byte)(plain[:scalarSize]), (*[scalarSize]byte)(plain[scalarSize:])
	for _, s := range []*[scalarSize]byte{bs, ss} {
		if _, err := decodeScalar(s); err != nil {
			return &ShareError{From: es.From, To: c.id, Err: err}
		}
	}
	p.selfShare, p.keyShare = *bs, *ss
	p.shared = true
	return nil
}

// ConsistencyCheck is round 3: it signs the survivor set U3 the server
// announced, after checking that it contains this participant, has at
// least Threshold members, names as survivors only neighbours in its view
// of U2, and is connected in the neighbour graph (otherwise unmasking
// would give the server the sums of the parts separately). A participant
// signs at most one set per session: that is what stops a server from
// showing different survivor sets to different participants.
func (c *Client) ConsistencyCheck(survivors []uint32) (*ConsistencySig, error) {
	if c.state == clientSigned || c.state == clientDone {
		return nil, c.fail(fmt.Errorf("%w: participant %d already signed survivor set %s", ErrReplay, c.id, formatIDs(c.signed)))
	}
	if err := c.begin(clientMasked, "ConsistencyCheck"); err != nil {
		return nil, err
	}
	if err := c.checkSurvivors(survivors); err != nil {
		return nil, c.fail(err)
	}
	sig, err := sign(c.signer, c.rand, consistencyMessage(&c.session, c.id, survivors))
	if err != nil {
		return nil, c.fail(fmt.Errorf("secagg: participant %d: sign survivor set: %w", c.id, err))
	}
	c.signed = slices.Clone(survivors)
	c.state = clientSigned
	return &ConsistencySig{ID: c.id, Sig: sig}, nil
}

func (c *Client) checkSurvivors(survivors []uint32) error {
	if err := checkIDs(&c.cfg, "survivors", survivors); err != nil {
		return err
	}
	if _, found := slices.BinarySearch(survivors, c.id); !found {
		return fmt.Errorf("%w: survivor set %s leaves out participant %d, which sent its masked input", ErrInconsistent, formatIDs(survivors), c.id)
	}
	if len(survivors) < c.cfg.Threshold {
		return &TooFewError{Phase: PhaseConsistencyCheck, Have: len(survivors), Need: c.cfg.Threshold}
	}
	for _, v := range survivors {
		if p, ok := c.peers[v]; c.g.adjacent(c.id, v) && (!ok || !p.shared) {
			return fmt.Errorf("%w: survivor %d is a neighbour of participant %d that never shared keys with it", ErrInconsistent, v, c.id)
		}
	}
	if parts := c.g.components(idSetOf(c.cfg.N, survivors)); len(parts) > 1 {
		return fmt.Errorf("%w: survivor set %s splits into parts of sizes %v", ErrDisconnected, formatIDs(survivors), parts)
	}
	return nil
}

// Unmask is round 4. It checks the request, then reveals its share of the
// mask key of each dropped neighbour and its share of the self-mask
// secret of each surviving neighbour and of itself. It refuses (and
// aborts) unless:
//
//   - it has not answered an unmask request in this session (ErrReplay);
//   - no participant is named both dropped and surviving, and it is not
//     named dropped itself (ErrBothSecrets);
//   - Survivors is the set it signed, and Dropped is exactly its
//     neighbours that shared keys with it and are not survivors
//     (ErrInconsistent);
//   - Sigs holds at least Threshold valid signatures of that same set,
//     all by survivors (ErrBadSignature, ErrTooFewParticipants).
//
// Since what it reveals is fixed by the set it signed and its own view of
// U2, no request can obtain both secrets of one participant from it.
func (c *Client) Unmask(req *UnmaskRequest) (*UnmaskResponse, error) {
	if c.state == clientDone {
		return nil, c.fail(fmt.Errorf("%w: participant %d already answered an unmask request", ErrReplay, c.id))
	}
	if err := c.begin(clientSigned, "Unmask"); err != nil {
		return nil, err
	}
	if err := c.checkUnmask(req); err != nil {
		return nil, c.fail(err)
	}
	resp := &UnmaskResponse{ID: c.id}
	survivors := idSetOf(c.cfg.N, c.signed)
	for _, v := range c.holders(func(p *peer) bool { return p.shared }) {
		switch {
		case v == c.id:
			resp.SelfShares = append(resp.SelfShares, Share{Owner: v, Value: c.ownSelfShare})
		case survivors.has(v):
			resp.SelfShares = append(resp.SelfShares, Share{Owner: v, Value: c.peers[v].selfShare})
		default:
			resp.KeyShares = append(resp.KeyShares, Share{Owner: v, Value: c.peers[v].keyShare})
		}
	}
	c.state = clientDone
	c.wipe()
	return resp, nil
}

func (c *Client) checkUnmask(req *UnmaskRequest) error {
	if req == nil {
		return fmt.Errorf("%w: nil unmask request", ErrMalformed)
	}
	if err := req.Validate(c.cfg); err != nil {
		return err
	}
	if req.ID != c.id {
		return fmt.Errorf("%w: unmask request for participant %d sent to participant %d", ErrInconsistent, req.ID, c.id)
	}
	survivors := idSetOf(c.cfg.N, req.Survivors)
	for _, v := range req.Dropped {
		if survivors.has(v) {
			return fmt.Errorf("%w: participant %d is named both dropped and surviving", ErrBothSecrets, v)
		}
		if v == c.id {
			return fmt.Errorf("%w: participant %d is named dropped in its own request", ErrBothSecrets, v)
		}
	}
	if !slices.Equal(req.Survivors, c.signed) {
		return fmt.Errorf("%w: survivors %s differ from the set %s participant %d signed",
			ErrInconsistent, formatIDs(req.Survivors), formatIDs(c.signed), c.id)
	}
	var dropped []uint32
	for _, v := range c.holders(func(p *peer) bool { return p.shared }) {
		if !survivors.has(v) {
			dropped = append(dropped, v)
		}
	}
	if !slices.Equal(req.Dropped, dropped) {
		for _, v := range req.Dropped {
			if p, ok := c.peers[v]; !ok || !p.shared {
				return fmt.Errorf("%w: dropped participant %d is not a neighbour that shared keys with participant %d", ErrInconsistent, v, c.id)
			}
		}
		return fmt.Errorf("%w: dropped %s, but participant %d's neighbours that shared keys and did not survive are %s",
			ErrInconsistent, formatIDs(req.Dropped), c.id, formatIDs(dropped))
	}
	valid := 0
	signed := encodeSurvivors(c.signed)
	for _, s := range req.Sigs {
		if !survivors.has(s.ID) {
			return fmt.Errorf("%w: consistency signature from participant %d, not a survivor", ErrInconsistent, s.ID)
		}
		if err := c.verify(s.ID, signed.message(&c.session, s.ID), s.Sig); err != nil {
			return fmt.Errorf("%w: consistency signature of participant %d: %v", ErrBadSignature, s.ID, err)
		}
		valid++
	}
	if valid < c.cfg.Threshold {
		return &TooFewError{Phase: PhaseUnmasking, Have: valid, Need: c.cfg.Threshold}
	}
	return nil
}
