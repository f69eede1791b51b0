// Package securetest plays one member of a secure-aggregation session with
// a secagg client, in fedguard.v1's SecureAggregate messages, for the tests
// of the coordinator's secure rounds: over the real gRPC stream (package
// coordinator's tests) and straight into a bucket's session
// (securebucket's). The order of the phases, what a member computes for
// each and what it reads from each answer is written here once; how the
// messages travel, and where a test makes a member leave, is the caller's
// Exchange.
//
// Only tests import it.
package securetest

import (
	"github.com/fedguard/fedguard/aggregation/secagg"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// Exchange sends phase ph's message (one request; the masked input's
// chunks for secagg.PhaseMaskedInput) and returns the answer to it. An
// error ends the member's part in the session: Member returns it as is.
type Exchange func(ph secagg.Phase, reqs ...*fedguardv1.SecureAggregateRequest) (*fedguardv1.SecureAggregateResponse, error)

// Member plays cl's member of a session of n members through every phase,
// masking input (the encoded vector, weight last), and returns the answer
// to its unmasking message. keys, when not nil, is given the relayed keys
// before the client shares its own: to check the peers' certificates and
// learn the identity keys cl's verifier asks for.
func Member(cl *secagg.Client, n int, input []uint32, x Exchange, keys func(relay *fedguardv1.SecureKeys, peers []wire.Peer) error) (*fedguardv1.SecureAggregateResponse, error) {
	adv, err := cl.AdvertiseKeys()
	if err != nil {
		return nil, err
	}
	resp, err := x(secagg.PhaseAdvertiseKeys, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Advertise{Advertise: wire.AdvertiseToProto(adv)}})
	if err != nil {
		return nil, err
	}
	peers, err := wire.KeysFromProto(resp.GetKeys(), n)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		if err := keys(resp.GetKeys(), peers); err != nil {
			return nil, err
		}
	}
	var advs []*secagg.AdvertiseKeys
	for _, p := range peers {
		advs = append(advs, p.Advertise)
	}
	sk, err := cl.ShareKeys(advs)
	if err != nil {
		return nil, err
	}
	if resp, err = x(secagg.PhaseShareKeys, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Shares{Shares: wire.SharesToProto(sk)}}); err != nil {
		return nil, err
	}
	routed, err := wire.RoutedFromProto(resp.GetShares(), n)
	if err != nil {
		return nil, err
	}
	mi, err := cl.MaskedInput(routed, input)
	if err != nil {
		return nil, err
	}
	var chunks []*fedguardv1.SecureAggregateRequest
	if err := wire.SendMasked(mi.Masked, func(c *fedguardv1.SecureMaskedChunk) error {
		chunks = append(chunks, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Masked{Masked: c}})
		return nil
	}); err != nil {
		return nil, err
	}
	if resp, err = x(secagg.PhaseMaskedInput, chunks...); err != nil {
		return nil, err
	}
	surv, err := wire.SurvivorsFromProto(resp.GetSurvivors(), n)
	if err != nil {
		return nil, err
	}
	sig, err := cl.ConsistencyCheck(surv)
	if err != nil {
		return nil, err
	}
	if resp, err = x(secagg.PhaseConsistencyCheck, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Consistency{Consistency: &fedguardv1.SecureSignature{Signature: sig.Sig}}}); err != nil {
		return nil, err
	}
	req, err := wire.UnmaskRequestFromProto(cl.ID(), n, resp.GetUnmask())
	if err != nil {
		return nil, err
	}
	un, err := cl.Unmask(req)
	if err != nil {
		return nil, err
	}
	return x(secagg.PhaseUnmasking, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Unmask{Unmask: wire.UnmaskResponseToProto(un)}})
}
