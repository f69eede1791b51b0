package coordinator

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/mem"

	"github.com/fedguard/fedguard/wire"
)

// vectors keeps model-sized []float32 buffers for reuse within a round:
// an update is decoded into one (SubmitUpdate), and the vector of a
// refused or abandoned update serves the next one, so a participant that
// retries does not make the coordinator allocate another; the round's
// aggregate is computed in one (runClose).
//
// The vectors are not kept from one round to the next: runClose gives
// them all to the collector once the new model is made. Kept, they sat
// idle through the next round's downloads, whose buffers then came on top
// of them: at 100 participants × 1 M parameters the coordinator's peak
// rose from 138 to 165 model sizes (fedguard bench round, old and new
// binaries alternated).
//
// At most max vectors are kept (the enrolled participants and the
// aggregate, what MemoryBudget counts); one given back beyond that is left
// to the collector. A vector is given back only by the code that owns it,
// once nothing else refers to it: a vector that is not given back is
// simply collected.
type vectors struct {
	mu   sync.Mutex
	n    int // parameters of a vector
	max  int
	free [][]float32
}

func newVectors(n, max int) *vectors { return &vectors{n: n, max: max} }

// get returns a vector of the model's size. Its contents are arbitrary:
// the caller overwrites every element (an update's assembler checks that
// every parameter arrived) or clears it.
func (v *vectors) get() []float32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k := len(v.free); k > 0 {
		x := v.free[k-1]
		v.free[k-1] = nil
		v.free = v.free[:k-1]
		return x
	}
	return make([]float32, v.n)
}

// put gives back a vector that nothing refers to any more.
func (v *vectors) put(x []float32) {
	if len(x) != v.n || cap(x) != v.n {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.free) < v.max {
		v.free = append(v.free, x)
	}
}

// trim lets the collector have all but keep of the vectors kept.
func (v *vectors) trim(keep int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for len(v.free) > max(keep, 0) {
		v.free[len(v.free)-1] = nil
		v.free = v.free[:len(v.free)-1]
	}
}

// messageCodec is the coordinator server's gRPC codec: wire.Codec
// (protobuf, with buffers of large messages that are not cleared), except
// for an update's chunk, which SubmitUpdate receives as an updateRequest
// whose data is left in the received buffer (chunks.go). A message that
// does not decode is marked malformedMessage (malformedAuditor).
type messageCodec struct{ wire.Codec }

// Unmarshal decodes data into v.
func (c messageCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if u, ok := v.(*updateRequest); ok {
		return u.unmarshal(data) // chunks.go
	}
	if err := c.Codec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", malformedMessage, err)
	}
	return nil
}
