package secagg

import (
	"fmt"

	"github.com/cloudflare/circl/dh/x25519"
)

// Messages. They are plain structs that a transport maps to its own
// encoding; ids are set by the sender and must be checked by the transport
// against the authenticated peer for the unsigned ones (ShareKeys,
// MaskedInput, UnmaskResponse). Every message has a Validate that checks
// what can be checked without the receiver's state: ids in range, sizes,
// order, duplicates. Both sides call it; the Client and Server then check
// the message against what they saw of the session.

// AdvertiseKeys is round 0: a participant's two fresh X25519 public keys,
// signed with its identity key.
type AdvertiseKeys struct {
	ID uint32
	// CPub is the key for encrypting the shares sent to this participant.
	CPub [32]byte
	// SPub is the key from which the pairwise mask seeds are agreed.
	SPub [32]byte
	// Sig is the identity signature of (session, ID, CPub, SPub).
	Sig []byte
}

// Validate checks the id and the signature's size.
func (m *AdvertiseKeys) Validate(cfg Config) error {
	if err := checkID(&cfg, "advertisement from participant", m.ID); err != nil {
		return err
	}
	if len(m.Sig) == 0 || len(m.Sig) > MaxSignatureSize {
		return fmt.Errorf("%w: advertisement of participant %d: signature of %d bytes, want 1..%d",
			ErrMalformed, m.ID, len(m.Sig), MaxSignatureSize)
	}
	return nil
}

func (m *AdvertiseKeys) keys() (cPub, sPub *x25519.Key) {
	return (*x25519.Key)(&m.CPub), (*x25519.Key)(&m.SPub)
}

// EncryptedShare is participant From's shares (of its self-mask seed and
// of its mask key) for participant To, sealed with AES-256-GCM under a key
// only From and To can derive. The server routes it without being able to
// read it.
type EncryptedShare struct {
	From, To   uint32
	Ciphertext []byte
}

// ShareCiphertextSize is the size of EncryptedShare.Ciphertext: two
// 32-byte scalars and a 16-byte GCM tag.
const ShareCiphertextSize = 2*scalarSize + 16

// Validate checks the ids and the ciphertext's size.
func (m *EncryptedShare) Validate(cfg Config) error {
	if err := checkID(&cfg, "share sender", m.From); err != nil {
		return err
	}
	if err := checkID(&cfg, "share recipient", m.To); err != nil {
		return err
	}
	if m.From == m.To {
		return fmt.Errorf("%w: share from participant %d to itself", ErrMalformed, m.From)
	}
	if len(m.Ciphertext) != ShareCiphertextSize {
		return fmt.Errorf("%w: share from participant %d to %d: ciphertext of %d bytes, want %d",
			ErrMalformed, m.From, m.To, len(m.Ciphertext), ShareCiphertextSize)
	}
	return nil
}

// ShareKeys is round 1: a participant's encrypted shares, one per
// neighbour whose advertisement it received, and a commitment to its
// self-mask secret.
type ShareKeys struct {
	ID uint32
	// SelfCommit commits to the self-mask secret, so that the server can
	// check its reconstruction.
	SelfCommit [32]byte
	// Shares are sorted by recipient.
	Shares []*EncryptedShare
}

// Validate checks the id and that the shares are well formed, from ID,
// and addressed to distinct participants in increasing order.
func (m *ShareKeys) Validate(cfg Config) error {
	if err := checkID(&cfg, "shares from participant", m.ID); err != nil {
		return err
	}
	if len(m.Shares) > cfg.N-1 {
		return fmt.Errorf("%w: participant %d sent %d shares, at most N-1 = %d", ErrMalformed, m.ID, len(m.Shares), cfg.N-1)
	}
	for i, s := range m.Shares {
		if s == nil {
			return fmt.Errorf("%w: participant %d sent a nil share", ErrMalformed, m.ID)
		}
		if err := s.Validate(cfg); err != nil {
			return err
		}
		if s.From != m.ID {
			return fmt.Errorf("%w: participant %d sent a share from participant %d", ErrMalformed, m.ID, s.From)
		}
		if i > 0 && s.To <= m.Shares[i-1].To {
			return fmt.Errorf("%w: participant %d's shares not sorted by distinct recipients at %d", ErrMalformed, m.ID, s.To)
		}
	}
	return nil
}

// MaskedInput is round 2: a participant's input plus its self mask plus
// its pairwise masks, word by word modulo 2^32.
type MaskedInput struct {
	ID     uint32
	Masked []uint32
}

// Validate checks the id and that Masked has Dim words.
func (m *MaskedInput) Validate(cfg Config) error {
	if err := checkID(&cfg, "masked input from participant", m.ID); err != nil {
		return err
	}
	if len(m.Masked) != cfg.Dim {
		return fmt.Errorf("%w: masked input of participant %d has %d words, want Dim = %d", ErrMalformed, m.ID, len(m.Masked), cfg.Dim)
	}
	return nil
}

// ConsistencySig is round 3: a participant's identity signature of the
// survivor set U3 the server announced.
type ConsistencySig struct {
	ID  uint32
	Sig []byte
}

// Validate checks the id and the signature's size.
func (m *ConsistencySig) Validate(cfg Config) error {
	if err := checkID(&cfg, "consistency signature from participant", m.ID); err != nil {
		return err
	}
	if len(m.Sig) == 0 || len(m.Sig) > MaxSignatureSize {
		return fmt.Errorf("%w: consistency signature of participant %d: %d bytes, want 1..%d",
			ErrMalformed, m.ID, len(m.Sig), MaxSignatureSize)
	}
	return nil
}

// UnmaskRequest is the server's round-4 request to participant ID.
type UnmaskRequest struct {
	ID uint32
	// Survivors is U3, sorted: the participants whose masked input is
	// in the sum. It must be the set the participant signed.
	Survivors []uint32
	// Dropped is, sorted, the participant's neighbours that shared keys
	// (in U2) but whose masked input is not in the sum.
	Dropped []uint32
	// Sigs are the consistency signatures of Survivors, sorted by
	// signer: at least Threshold of them.
	Sigs []*ConsistencySig
}

// Validate checks the ids and the order of every list.
func (m *UnmaskRequest) Validate(cfg Config) error {
	if err := checkID(&cfg, "unmask request to participant", m.ID); err != nil {
		return err
	}
	if err := checkIDs(&cfg, "survivors", m.Survivors); err != nil {
		return err
	}
	if err := checkIDs(&cfg, "dropped participants", m.Dropped); err != nil {
		return err
	}
	if len(m.Sigs) > cfg.N {
		return fmt.Errorf("%w: %d consistency signatures, at most N = %d", ErrMalformed, len(m.Sigs), cfg.N)
	}
	for i, s := range m.Sigs {
		if s == nil {
			return fmt.Errorf("%w: nil consistency signature", ErrMalformed)
		}
		if err := s.Validate(cfg); err != nil {
			return err
		}
		if i > 0 && s.ID <= m.Sigs[i-1].ID {
			return fmt.Errorf("%w: consistency signatures not sorted by distinct signers at %d", ErrMalformed, s.ID)
		}
	}
	return nil
}

// Share is one Shamir share: the sharing polynomial of participant
// Owner's secret, evaluated at the holder's id.
type Share struct {
	Owner uint32
	// Value is a canonical little-endian ristretto255 scalar.
	Value [32]byte
}

// UnmaskResponse is participant ID's answer to its UnmaskRequest.
type UnmaskResponse struct {
	ID uint32
	// SelfShares are its shares of the self-mask secrets of its
	// surviving neighbours and of itself, sorted by Owner.
	SelfShares []Share
	// KeyShares are its shares of the mask keys of its dropped
	// neighbours, sorted by Owner.
	KeyShares []Share
}

// Validate checks the ids, the order and that every value is a canonical
// scalar.
func (m *UnmaskResponse) Validate(cfg Config) error {
	if err := checkID(&cfg, "unmask response from participant", m.ID); err != nil {
		return err
	}
	for _, list := range []struct {
		what   string
		shares []Share
	}{{"self-mask shares", m.SelfShares}, {"mask-key shares", m.KeyShares}} {
		if len(list.shares) > cfg.N {
			return fmt.Errorf("%w: participant %d sent %d %s, at most N = %d", ErrMalformed, m.ID, len(list.shares), list.what, cfg.N)
		}
		for i := range list.shares {
			s := &list.shares[i]
			if err := checkID(&cfg, "owner of "+list.what, s.Owner); err != nil {
				return err
			}
			if i > 0 && s.Owner <= list.shares[i-1].Owner {
				return fmt.Errorf("%w: participant %d's %s not sorted by distinct owners at %d", ErrMalformed, m.ID, list.what, s.Owner)
			}
			if _, err := decodeScalar(&s.Value); err != nil {
				return fmt.Errorf("%w: participant %d's share of participant %d's secret: %v", ErrMalformed, m.ID, s.Owner, err)
			}
		}
	}
	return nil
}
