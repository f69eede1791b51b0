package securebucket

import (
	"errors"
	"io"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// FuzzDecode feeds arbitrary requests to every phase's decode through
// Member.Decode, a request standing for each chunk of a masked input too:
// none may panic, an error is an ErrMessage, and a message decoded is the
// member's current phase's.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	protofuzz.Seed(f, []*fedguardv1.SecureAggregateRequest{
		{Body: &fedguardv1.SecureAggregateRequest_Advertise{Advertise: &fedguardv1.SecureAdvertise{CPub: make([]byte, 32), SPub: make([]byte, 32), Signature: []byte{1}}}},
		{Body: &fedguardv1.SecureAggregateRequest_Masked{Masked: &fedguardv1.SecureMaskedChunk{Words: 3, Data: make([]byte, 8)}}},
		{Body: &fedguardv1.SecureAggregateRequest_Consistency{Consistency: &fedguardv1.SecureSignature{Signature: []byte{1}}}},
	}...)
	s := New(0, []string{"a", "b", "c", "d"}, secagg.Config{N: 4, Threshold: 3, Dim: 3}, secagg.Params{})
	protofuzz.Fuzz(f, func(t *testing.T, req *fedguardv1.SecureAggregateRequest) {
		for _, p := range secagg.Phases() {
			m := s.Join("b", nil, []byte("certificate"))
			m.phase = p
			more := 2
			next := func() (*fedguardv1.SecureAggregateRequest, error) {
				if more == 0 {
					return nil, io.EOF
				}
				more--
				return req, nil
			}
			msg, err := m.Decode(req, next)
			switch {
			case err != nil && !errors.Is(err, ErrMessage):
				t.Errorf("%v: Decode = %v, want an ErrMessage", p, err)
			case err == nil && msg.phase != p:
				t.Errorf("%v: decoded a message of %v", p, msg.phase)
			}
		}
	})
}
