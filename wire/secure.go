package wire

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// ErrMessage is wrapped by every error of the FromProto functions: the
// message cannot be a valid message of the session.
var ErrMessage = errors.New("malformed secure aggregation message")

// MaxCertificateSize bounds a relayed certificate (DER).
const MaxCertificateSize = 16 << 10

// AdvertiseToProto is the wire form of a key advertisement.
func AdvertiseToProto(m *secagg.AdvertiseKeys) *fedguardv1.SecureAdvertise {
	return &fedguardv1.SecureAdvertise{CPub: m.CPub[:], SPub: m.SPub[:], Signature: m.Sig}
}

// AdvertiseFromProto reads participant id's key advertisement.
func AdvertiseFromProto(id uint32, p *fedguardv1.SecureAdvertise) (*secagg.AdvertiseKeys, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: advertisement of participant %d missing", ErrMessage, id)
	}
	if len(p.GetCPub()) != 32 || len(p.GetSPub()) != 32 {
		return nil, fmt.Errorf("%w: advertisement of participant %d: public keys of %d and %d bytes, want 32", ErrMessage, id, len(p.GetCPub()), len(p.GetSPub()))
	}
	if n := len(p.GetSignature()); n == 0 || n > secagg.MaxSignatureSize {
		return nil, fmt.Errorf("%w: advertisement of participant %d: signature of %d bytes", ErrMessage, id, n)
	}
	m := &secagg.AdvertiseKeys{ID: id, Sig: p.GetSignature()}
	copy(m.CPub[:], p.GetCPub())
	copy(m.SPub[:], p.GetSPub())
	return m, nil
}

// KeysToProto relays advertisements with the certificates that signed
// them; cert returns a member's certificate (DER).
func KeysToProto(relay []*secagg.AdvertiseKeys, cert func(id uint32) []byte) *fedguardv1.SecureKeys {
	out := &fedguardv1.SecureKeys{}
	for _, a := range relay {
		out.Peers = append(out.Peers, &fedguardv1.SecurePeer{Id: a.ID, Advertise: AdvertiseToProto(a), Certificate: cert(a.ID)})
	}
	return out
}

// Peer is a relayed advertisement with the certificate that signed it.
type Peer struct {
	Advertise   *secagg.AdvertiseKeys
	Certificate []byte
}

// KeysFromProto reads a relay of at most n advertisements.
func KeysFromProto(p *fedguardv1.SecureKeys, n int) ([]Peer, error) {
	if len(p.GetPeers()) > n {
		return nil, fmt.Errorf("%w: %d advertisements relayed, the bucket has %d members", ErrMessage, len(p.GetPeers()), n)
	}
	out := make([]Peer, 0, len(p.GetPeers()))
	for _, peer := range p.GetPeers() {
		if peer.GetId() < 1 || int(peer.GetId()) > n {
			return nil, fmt.Errorf("%w: advertisement of participant %d, want 1 to %d", ErrMessage, peer.GetId(), n)
		}
		if c := len(peer.GetCertificate()); c == 0 || c > MaxCertificateSize {
			return nil, fmt.Errorf("%w: certificate of participant %d has %d bytes, want 1 to %d", ErrMessage, peer.GetId(), c, MaxCertificateSize)
		}
		a, err := AdvertiseFromProto(peer.GetId(), peer.GetAdvertise())
		if err != nil {
			return nil, err
		}
		out = append(out, Peer{Advertise: a, Certificate: peer.GetCertificate()})
	}
	return out, nil
}

// PeerKeys checks relayed certificates against the federation's roots: each
// must be a current participant certificate of the federation naming the
// bucket member its session id stands for. It returns the identity keys to
// verify advertisement signatures with, by session id.
func PeerKeys(peers []Peer, federation string, members []string, roots *x509.CertPool, now time.Time) (map[uint32]any, error) {
	keys := make(map[uint32]any, len(peers))
	for _, p := range peers {
		id := p.Advertise.ID
		if id < 1 || int(id) > len(members) {
			return nil, fmt.Errorf("%w: certificate relayed for participant %d of a bucket of %d", ErrMessage, id, len(members))
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%w: two certificates relayed for participant %d", ErrMessage, id)
		}
		cert, err := x509.ParseCertificate(p.Certificate)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate of participant %d: %v", ErrMessage, id, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return nil, fmt.Errorf("certificate relayed for participant %d (%s): %w", id, members[id-1], err)
		}
		who, err := certs.ParseIdentity(cert)
		if err != nil {
			return nil, fmt.Errorf("certificate relayed for participant %d: %w", id, err)
		}
		want := certs.Identity{Federation: federation, Role: certs.RoleParticipant, Name: members[id-1]}
		if who != want {
			return nil, fmt.Errorf("certificate relayed for participant %d names %s, want %s", id, who, want)
		}
		keys[id] = cert.PublicKey
	}
	return keys, nil
}

func sharesToProto(in []*secagg.EncryptedShare) []*fedguardv1.SecureShare {
	out := make([]*fedguardv1.SecureShare, len(in))
	for i, s := range in {
		out[i] = &fedguardv1.SecureShare{From: s.From, To: s.To, Ciphertext: s.Ciphertext}
	}
	return out
}

func sharesFromProto(in []*fedguardv1.SecureShare, n int) ([]*secagg.EncryptedShare, error) {
	if len(in) > n {
		return nil, fmt.Errorf("%w: %d shares, at most %d", ErrMessage, len(in), n)
	}
	out := make([]*secagg.EncryptedShare, len(in))
	for i, s := range in {
		if len(s.GetCiphertext()) != secagg.ShareCiphertextSize {
			return nil, fmt.Errorf("%w: share from %d to %d has %d bytes, want %d", ErrMessage, s.GetFrom(), s.GetTo(), len(s.GetCiphertext()), secagg.ShareCiphertextSize)
		}
		out[i] = &secagg.EncryptedShare{From: s.GetFrom(), To: s.GetTo(), Ciphertext: s.GetCiphertext()}
	}
	return out, nil
}

// SharesToProto is the wire form of a participant's shares.
func SharesToProto(m *secagg.ShareKeys) *fedguardv1.SecureShares {
	return &fedguardv1.SecureShares{SelfCommit: m.SelfCommit[:], Shares: sharesToProto(m.Shares)}
}

// SharesFromProto reads participant id's shares in a bucket of n.
func SharesFromProto(id uint32, n int, p *fedguardv1.SecureShares) (*secagg.ShareKeys, error) {
	if len(p.GetSelfCommit()) != 32 {
		return nil, fmt.Errorf("%w: commitment of %d bytes, want 32", ErrMessage, len(p.GetSelfCommit()))
	}
	shares, err := sharesFromProto(p.GetShares(), n-1)
	if err != nil {
		return nil, err
	}
	m := &secagg.ShareKeys{ID: id, Shares: shares}
	copy(m.SelfCommit[:], p.GetSelfCommit())
	return m, nil
}

// RoutedToProto is the wire form of the shares routed to one participant.
func RoutedToProto(in []*secagg.EncryptedShare) *fedguardv1.SecureRoutedShares {
	return &fedguardv1.SecureRoutedShares{Shares: sharesToProto(in)}
}

// RoutedFromProto reads the shares routed to a member of a bucket of n.
func RoutedFromProto(p *fedguardv1.SecureRoutedShares, n int) ([]*secagg.EncryptedShare, error) {
	return sharesFromProto(p.GetShares(), n-1)
}

// SendMasked sends a masked input in chunks of at most ChunkBytes.
// Each chunk has its own buffer: gRPC may read a message after Send
// returns (stats handlers do).
func SendMasked(words []uint32, send func(*fedguardv1.SecureMaskedChunk) error) error {
	const per = ChunkBytes / 4
	for off := 0; off < len(words); off += per {
		end := min(off+per, len(words))
		buf := make([]byte, 0, 4*(end-off))
		for _, w := range words[off:end] {
			buf = binary.LittleEndian.AppendUint32(buf, w)
		}
		if err := send(&fedguardv1.SecureMaskedChunk{Offset: uint64(off), Data: buf, Words: uint64(len(words))}); err != nil {
			return err
		}
	}
	return nil
}

// MaskedAssembler rebuilds a masked input of a known length from chunks
// that must arrive in order, without gaps or overlaps.
type MaskedAssembler struct {
	words []uint32
	next  uint64
	data  []byte // the first chunk's data version
	// privacy and distributed are the first chunk's record-level and
	// federation-level privacy ledgers.
	privacy     *fedguardv1.PrivacyLedger
	distributed *fedguardv1.DistributedPrivacyLedger
}

// NewMaskedAssembler expects dim words.
func NewMaskedAssembler(dim int) *MaskedAssembler {
	return &MaskedAssembler{words: make([]uint32, dim)}
}

// Add takes the next chunk.
func (a *MaskedAssembler) Add(c *fedguardv1.SecureMaskedChunk) error {
	switch {
	case c.GetWords() != uint64(len(a.words)):
		return fmt.Errorf("%w: masked input of %d words, the session has %d", ErrMessage, c.GetWords(), len(a.words))
	case c.GetOffset() != a.next:
		return fmt.Errorf("%w: masked chunk at word %d, expected %d", ErrMessage, c.GetOffset(), a.next)
	case len(c.GetData()) == 0 || len(c.GetData())%4 != 0 || len(c.GetData()) > ChunkBytes:
		return fmt.Errorf("%w: masked chunk of %d bytes (a positive multiple of 4, at most %d)", ErrMessage, len(c.GetData()), ChunkBytes)
	case a.next+uint64(len(c.GetData())/4) > uint64(len(a.words)):
		return fmt.Errorf("%w: masked chunk at word %d runs past %d words", ErrMessage, a.next, len(a.words))
	case a.next == 0 && len(c.GetDataSha256()) != 0 && len(c.GetDataSha256()) != 32:
		return fmt.Errorf("%w: data_sha256 has %d bytes, want 0 or 32", ErrMessage, len(c.GetDataSha256()))
	case a.next != 0 && len(c.GetDataSha256()) != 0:
		return fmt.Errorf("%w: data_sha256 on the masked chunk at word %d, only the first may carry it", ErrMessage, a.next)
	case a.next != 0 && c.GetPrivacy() != nil:
		return fmt.Errorf("%w: privacy on the masked chunk at word %d, only the first may carry it", ErrMessage, a.next)
	case a.next != 0 && c.GetDistributedPrivacy() != nil:
		return fmt.Errorf("%w: distributed_privacy on the masked chunk at word %d, only the first may carry it", ErrMessage, a.next)
	}
	if a.next == 0 {
		if err := CheckPrivacyLedger(c.GetPrivacy()); err != nil {
			return fmt.Errorf("%w: privacy: %v", ErrMessage, err)
		}
		if err := CheckDistributedPrivacyLedger(c.GetDistributedPrivacy()); err != nil {
			return fmt.Errorf("%w: distributed_privacy: %v", ErrMessage, err)
		}
		a.data, a.privacy, a.distributed = c.GetDataSha256(), c.GetPrivacy(), c.GetDistributedPrivacy()
	}
	d := c.GetData()
	for i := 0; i < len(d); i += 4 {
		a.words[a.next] = binary.LittleEndian.Uint32(d[i:])
		a.next++
	}
	return nil
}

// Done reports whether every word arrived.
func (a *MaskedAssembler) Done() bool { return a.next == uint64(len(a.words)) }

// Words is the assembled input.
func (a *MaskedAssembler) Words() []uint32 { return a.words }

// DataSHA256 is the data version the first chunk carried: nil or 32
// bytes.
func (a *MaskedAssembler) DataSHA256() []byte { return a.data }

// Privacy is the record-level privacy ledger the first chunk carried, or
// nil.
func (a *MaskedAssembler) Privacy() *fedguardv1.PrivacyLedger { return a.privacy }

// DistributedPrivacy is the federation-level (distributed DP) privacy
// ledger the first chunk carried, or nil.
func (a *MaskedAssembler) DistributedPrivacy() *fedguardv1.DistributedPrivacyLedger {
	return a.distributed
}

func idsFromProto(ids []uint32, n int, what string) ([]uint32, error) {
	if len(ids) > n {
		return nil, fmt.Errorf("%w: %d %s in a bucket of %d", ErrMessage, len(ids), what, n)
	}
	return ids, nil
}

// SurvivorsFromProto reads the survivor list of a bucket of n.
func SurvivorsFromProto(p *fedguardv1.SecureSurvivors, n int) ([]uint32, error) {
	return idsFromProto(p.GetIds(), n, "survivors")
}

// UnmaskRequestToProto is the wire form of an unmask request.
func UnmaskRequestToProto(r *secagg.UnmaskRequest) *fedguardv1.SecureUnmaskRequest {
	out := &fedguardv1.SecureUnmaskRequest{Survivors: r.Survivors, Dropped: r.Dropped}
	for _, s := range r.Sigs {
		out.Signatures = append(out.Signatures, &fedguardv1.SecureSignerSignature{Id: s.ID, Signature: s.Sig})
	}
	return out
}

// UnmaskRequestFromProto reads the unmask request addressed to id in a
// bucket of n.
func UnmaskRequestFromProto(id uint32, n int, p *fedguardv1.SecureUnmaskRequest) (*secagg.UnmaskRequest, error) {
	r := &secagg.UnmaskRequest{ID: id}
	var err error
	if r.Survivors, err = idsFromProto(p.GetSurvivors(), n, "survivors"); err != nil {
		return nil, err
	}
	if r.Dropped, err = idsFromProto(p.GetDropped(), n, "dropped participants"); err != nil {
		return nil, err
	}
	if len(p.GetSignatures()) > n {
		return nil, fmt.Errorf("%w: %d signatures in a bucket of %d", ErrMessage, len(p.GetSignatures()), n)
	}
	for _, s := range p.GetSignatures() {
		r.Sigs = append(r.Sigs, &secagg.ConsistencySig{ID: s.GetId(), Sig: s.GetSignature()})
	}
	return r, nil
}

func revealedToProto(in []secagg.Share) []*fedguardv1.SecureRevealed {
	out := make([]*fedguardv1.SecureRevealed, len(in))
	for i, s := range in {
		out[i] = &fedguardv1.SecureRevealed{Owner: s.Owner, Value: s.Value[:]}
	}
	return out
}

func revealedFromProto(in []*fedguardv1.SecureRevealed, n int) ([]secagg.Share, error) {
	if len(in) > n {
		return nil, fmt.Errorf("%w: %d revealed shares in a bucket of %d", ErrMessage, len(in), n)
	}
	out := make([]secagg.Share, len(in))
	for i, s := range in {
		if len(s.GetValue()) != 32 {
			return nil, fmt.Errorf("%w: revealed share of participant %d has %d bytes, want 32", ErrMessage, s.GetOwner(), len(s.GetValue()))
		}
		out[i].Owner = s.GetOwner()
		copy(out[i].Value[:], s.GetValue())
	}
	return out, nil
}

// UnmaskResponseToProto is the wire form of an unmask response.
func UnmaskResponseToProto(r *secagg.UnmaskResponse) *fedguardv1.SecureUnmaskResponse {
	return &fedguardv1.SecureUnmaskResponse{SelfShares: revealedToProto(r.SelfShares), KeyShares: revealedToProto(r.KeyShares)}
}

// UnmaskResponseFromProto reads participant id's unmask response in a
// bucket of n.
func UnmaskResponseFromProto(id uint32, n int, p *fedguardv1.SecureUnmaskResponse) (*secagg.UnmaskResponse, error) {
	self, err := revealedFromProto(p.GetSelfShares(), n)
	if err != nil {
		return nil, err
	}
	key, err := revealedFromProto(p.GetKeyShares(), n)
	if err != nil {
		return nil, err
	}
	return &secagg.UnmaskResponse{ID: id, SelfShares: self, KeyShares: key}, nil
}
