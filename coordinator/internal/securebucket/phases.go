package securebucket

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// phases is the table: by phase, everything the session knows of it. Its
// entries are exactly secagg.Phases (TestPhaseTable).
var phases = [...]entry{
	secagg.PhaseAdvertiseKeys: phase[advertised, map[uint32][]*secagg.AdvertiseKeys]{
		decode: func(d *decoding) (advertised, error) {
			adv, err := wire.AdvertiseFromProto(d.id, d.req.GetAdvertise())
			return advertised{adv, d.m.key, d.m.cert}, err
		},
		call: func(r *run, ids []uint32, in []advertised) (map[uint32][]*secagg.AdvertiseKeys, []secagg.Rejection, error) {
			msgs := make([]*secagg.AdvertiseKeys, len(in))
			for i, a := range in {
				r.keys[ids[i]], r.certs[ids[i]] = a.key, a.cert
				msgs[i] = a.msg
			}
			return r.server.CollectKeys(msgs)
		},
		reply: func(r *run, relay map[uint32][]*secagg.AdvertiseKeys, id uint32) *fedguardv1.SecureAggregateResponse {
			list, ok := relay[id]
			if !ok {
				return nil
			}
			return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Keys{
				Keys: wire.KeysToProto(list, func(id uint32) []byte { return r.certs[id] }),
			}}
		},
		// The members open their streams as they learn of the attempt:
		// the first phase runs from its opening.
		deadline: func(t Timing, _ time.Time) time.Time { return t.Opened.Add(t.PhaseTimeout) },
	},
	secagg.PhaseShareKeys: phase[*secagg.ShareKeys, map[uint32][]*secagg.EncryptedShare]{
		decode: func(d *decoding) (*secagg.ShareKeys, error) {
			if d.req.GetShares() == nil {
				return nil, fmt.Errorf("%w: expected shares", wire.ErrMessage)
			}
			return wire.SharesFromProto(d.id, d.n(), d.req.GetShares())
		},
		call: func(r *run, _ []uint32, in []*secagg.ShareKeys) (map[uint32][]*secagg.EncryptedShare, []secagg.Rejection, error) {
			return r.server.CollectShares(in)
		},
		reply: func(_ *run, route map[uint32][]*secagg.EncryptedShare, id uint32) *fedguardv1.SecureAggregateResponse {
			list, ok := route[id]
			if !ok {
				return nil
			}
			return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Shares{Shares: wire.RoutedToProto(list)}}
		},
		deadline: afterPhaseTimeout,
	},
	secagg.PhaseMaskedInput: phase[masked, []uint32]{
		decode: decodeMasked,
		call: func(r *run, ids []uint32, in []masked) ([]uint32, []secagg.Rejection, error) {
			msgs := make([]*secagg.MaskedInput, len(in))
			data := make(map[uint32][]byte, len(in))
			ledgers := map[uint32]*fedguardv1.PrivacyLedger{}
			distributed := map[uint32]*fedguardv1.DistributedPrivacyLedger{}
			for i, m := range in {
				msgs[i] = m.msg
				if m.data != nil {
					data[ids[i]] = m.data
				}
				if m.privacy != nil {
					ledgers[ids[i]] = m.privacy
				}
				if m.distributed != nil {
					distributed[ids[i]] = m.distributed
				}
			}
			survivors, rejected, err := r.server.CollectMasked(msgs)
			if err != nil {
				return nil, nil, err
			}
			for _, id := range survivors {
				name := r.s.members[id-1]
				r.res.Survivors = append(r.res.Survivors, name)
				if d, ok := data[id]; ok {
					r.res.Data[name] = hex.EncodeToString(d)
				}
				if l, ok := ledgers[id]; ok {
					r.res.Privacy[name] = manifest.HospitalPrivacy{Name: name, Epsilon: l.GetEpsilon(), Delta: l.GetDelta(), Budget: l.GetBudget()}
				}
				if l, ok := distributed[id]; ok {
					r.res.Distributed[name] = manifest.HospitalDistributedPrivacy{Name: name, Epsilon: l.GetEpsilon(), Delta: l.GetDelta(), Budget: l.GetBudget(), Releases: l.GetReleases()}
				}
			}
			return survivors, rejected, nil
		},
		reply: func(_ *run, survivors []uint32, id uint32) *fedguardv1.SecureAggregateResponse {
			if _, in := slices.BinarySearch(survivors, id); !in {
				return nil
			}
			return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Survivors{Survivors: &fedguardv1.SecureSurvivors{Ids: survivors}}}
		},
		// The masked input waits for local training: until the round's
		// deadline, and at least a phase timeout.
		deadline: func(t Timing, now time.Time) time.Time {
			if end := now.Add(t.PhaseTimeout); end.After(t.Deadline) {
				return end
			}
			return t.Deadline
		},
	},
	secagg.PhaseConsistencyCheck: phase[*secagg.ConsistencySig, map[uint32]*secagg.UnmaskRequest]{
		decode: func(d *decoding) (*secagg.ConsistencySig, error) {
			sig := d.req.GetConsistency().GetSignature()
			if len(sig) == 0 || len(sig) > secagg.MaxSignatureSize {
				return nil, fmt.Errorf("%w: expected a consistency signature of 1 to %d bytes", wire.ErrMessage, secagg.MaxSignatureSize)
			}
			return &secagg.ConsistencySig{ID: d.id, Sig: sig}, nil
		},
		call: func(r *run, _ []uint32, in []*secagg.ConsistencySig) (map[uint32]*secagg.UnmaskRequest, []secagg.Rejection, error) {
			return r.server.CollectConsistency(in)
		},
		reply: func(_ *run, requests map[uint32]*secagg.UnmaskRequest, id uint32) *fedguardv1.SecureAggregateResponse {
			req, ok := requests[id]
			if !ok {
				return nil
			}
			return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Unmask{Unmask: wire.UnmaskRequestToProto(req)}}
		},
		deadline: afterPhaseTimeout,
	},
	secagg.PhaseUnmasking: phase[*secagg.UnmaskResponse, struct{}]{
		decode: func(d *decoding) (*secagg.UnmaskResponse, error) {
			if d.req.GetUnmask() == nil {
				return nil, fmt.Errorf("%w: expected an unmask response", wire.ErrMessage)
			}
			return wire.UnmaskResponseFromProto(d.id, d.n(), d.req.GetUnmask())
		},
		call: func(r *run, _ []uint32, in []*secagg.UnmaskResponse) (struct{}, []secagg.Rejection, error) {
			sum, rejected, err := r.server.Unmask(in)
			if err != nil {
				return struct{}{}, nil, err
			}
			mean := make([]float32, meanLen(r.s.params, len(sum)))
			weight, err := r.s.params.Decode(mean, sum)
			if err != nil {
				return struct{}{}, nil, err
			}
			r.res.Mean, r.res.Weight, r.res.Sum = mean, weight, SumDigest(sum)
			return struct{}{}, rejected, nil
		},
		reply: func(r *run, _ struct{}, _ uint32) *fedguardv1.SecureAggregateResponse {
			return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Done{Done: &fedguardv1.SecureDone{Survivors: uint32(len(r.res.Survivors))}}}
		},
		deadline: afterPhaseTimeout,
	},
}

// afterPhaseTimeout is the deadline of a phase that runs for the phase
// timeout from when the previous one closed.
func afterPhaseTimeout(t Timing, now time.Time) time.Time { return now.Add(t.PhaseTimeout) }

// advertised is a member's key advertisement, with the key and the DER
// bytes of the certificate its stream was opened with: the server checks
// the advertisement's signature with the key, and the certificate is
// relayed to the other members with the keys.
type advertised struct {
	msg  *secagg.AdvertiseKeys
	key  crypto.PublicKey
	cert []byte
}

// masked is a member's masked input with the data version it reported
// for it (nil or 32 bytes): recorded for the survivors, so that a secure
// round's manifest and audit log carry data lineage as a plain round's do.
type masked struct {
	msg         *secagg.MaskedInput
	data        []byte
	privacy     *fedguardv1.PrivacyLedger            // its record-level ledger, or nil
	distributed *fedguardv1.DistributedPrivacyLedger // its federation-level ledger, or nil
}

// decodeMasked assembles a masked input from its chunks, the first in
// d.req and the others read with d.next.
func decodeMasked(d *decoding) (masked, error) {
	asm := wire.NewMaskedAssembler(d.m.s.cfg.Dim)
	req := d.req
	for {
		ch := req.GetMasked()
		if ch == nil {
			return masked{}, fmt.Errorf("%w: expected a masked input chunk", wire.ErrMessage)
		}
		if err := asm.Add(ch); err != nil {
			return masked{}, err
		}
		if asm.Done() {
			return masked{&secagg.MaskedInput{ID: d.id, Masked: asm.Words()}, asm.DataSHA256(), asm.Privacy(), asm.DistributedPrivacy()}, nil
		}
		var err error
		if req, err = d.next(); err != nil {
			return masked{}, err
		}
	}
}

// phase is one entry of the table. In is what decode makes of a member's
// message, Out what the server's call returns for the replies.
type phase[In, Out any] struct {
	// decode turns a member's request (and, for a message of several
	// requests, those that follow, read with d.next) into its message.
	decode func(d *decoding) (In, error)
	// call hands the server the phase's messages, those of members ids
	// (sorted).
	call func(r *run, ids []uint32, in []In) (Out, []secagg.Rejection, error)
	// reply is member id's answer; nil drops it (too few of its
	// neighbours are left).
	reply func(r *run, out Out, id uint32) *fedguardv1.SecureAggregateResponse
	// deadline is when the phase closes, for a phase begun at now.
	deadline func(t Timing, now time.Time) time.Time
}

// entry is a phase with its types erased, for the table. Its methods are
// the only place that converts between them, and only what decode made
// reaches call.
type entry interface {
	decodeMsg(d *decoding) (any, error)
	step(r *run, ids []uint32, in []any) (func(uint32) *fedguardv1.SecureAggregateResponse, []secagg.Rejection, error)
	closeAt(t Timing, now time.Time) time.Time
}

func (p phase[In, Out]) decodeMsg(d *decoding) (any, error) { return p.decode(d) }

func (p phase[In, Out]) step(r *run, ids []uint32, in []any) (func(uint32) *fedguardv1.SecureAggregateResponse, []secagg.Rejection, error) {
	msgs := make([]In, len(in))
	for i, m := range in {
		msgs[i] = m.(In)
	}
	out, rejected, err := p.call(r, ids, msgs)
	if err != nil {
		return nil, nil, err
	}
	return func(id uint32) *fedguardv1.SecureAggregateResponse { return p.reply(r, out, id) }, rejected, nil
}

func (p phase[In, Out]) closeAt(t Timing, now time.Time) time.Time { return p.deadline(t, now) }

// decoding is one member's message being decoded.
type decoding struct {
	m    *Member
	id   uint32
	req  *fedguardv1.SecureAggregateRequest
	next func() (*fedguardv1.SecureAggregateRequest, error)
}

// n is the number of the session's members.
func (d *decoding) n() int { return len(d.m.s.members) }

// SumDigest is SHA-256 of the words, little endian: what the audit log and
// the manifest record of a bucket's sum.
func SumDigest(words []uint32) [32]byte {
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	for i, w := range words {
		buf = binary.LittleEndian.AppendUint32(buf, w)
		if len(buf) == cap(buf) || i == len(words)-1 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}
