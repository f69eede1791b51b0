package coordinator

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

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

// messageCodec is the coordinator server's gRPC codec: protobuf, exactly
// as gRPC's own (google.golang.org/grpc/encoding/proto), except where the
// buffers of large messages come from. gRPC's default pool has tiers of
// 32 KiB and then 1 MiB, and zeroes the whole of a buffer on every Get:
// each 256 KiB chunk received or sent took and cleared a 1 MiB buffer. In
// a CPU profile of the coordinator at 10 participants × 10 M parameters
// (perf, fedguard bench round) that clearing was 11.7 % of the process's
// time (Marshal of GetModel's chunks 5.9 %, materialising received
// messages 4.4 %), and the pooled buffers held four times the bytes in
// flight. messagePool sizes buffers to the next 64 KiB and does not clear
// them: Marshal writes a buffer from its start to the length it asked for,
// and a received message is copied over the whole length it asked for,
// so nothing of an earlier message can be read through one. The other
// exception is an update's chunk, decoded with its data left in the
// received buffer (chunks.go).
type messageCodec struct{}

// Name is the content subtype the codec serves; it replaces gRPC's "proto".
func (messageCodec) Name() string { return "proto" }

// Marshal encodes v into a buffer of messagePool (small messages into a
// buffer of their own, as gRPC does).
func (messageCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, err := protoMessage(v)
	if err != nil {
		return nil, err
	}
	size := proto.Size(m)
	// UseCachedSize reuses the Size just computed, as gRPC's codec does.
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := messagePool.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		messagePool.Put(buf)
		return nil, err
	}
	if len(out) != size || &out[0] != &(*buf)[0] {
		// The encoding did not fit where Size said (it cannot, but the
		// buffer is not cleared, so it must never go out unwritten).
		messagePool.Put(buf)
		return mem.BufferSlice{mem.SliceBuffer(out)}, nil
	}
	return mem.BufferSlice{mem.NewBuffer(buf, messagePool)}, nil
}

// Unmarshal decodes data into v. A message that arrived in several frames
// is first copied into one buffer of messagePool, given back once decoded
// (the decoded message copies its bytes fields), except for an update's
// chunk, which SubmitUpdate receives as an updateRequest: its data aliases
// the buffer until the handler gives it back (chunks.go).
func (messageCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if u, ok := v.(*updateRequest); ok {
		return u.unmarshal(data) // chunks.go
	}
	m, err := protoMessage(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(messagePool)
	defer buf.Free()
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return fmt.Errorf("%s: %w", malformedMessage, err)
	}
	return nil
}

func protoMessage(v any) (proto.Message, error) {
	switch v := v.(type) {
	case proto.Message:
		return v, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v), nil
	}
	return nil, fmt.Errorf("coordinator codec: %T is not a protobuf message", v)
}

// messageClass is the granularity of messagePool's buffers.
const messageClass = 64 << 10

// messagePool is the codec's buffer pool.
var messagePool = &sizedPool{}

// sizedPool keeps buffers in classes of messageClass bytes up to
// wire.MaxMessageBytes; smaller requests go to gRPC's default pool and
// larger ones are allocated. Buffers are handed out as they were given
// back, not cleared (see messageCodec).
type sizedPool struct {
	classes [(wire.MaxMessageBytes + messageClass - 1) / messageClass]sync.Pool
}

// Get returns a buffer of length n.
func (p *sizedPool) Get(n int) *[]byte {
	if n < messageClass {
		return mem.DefaultBufferPool().Get(n)
	}
	c := (n + messageClass - 1) / messageClass // the class whose buffers hold n
	if c > len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c-1].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, c*messageClass)
	return &b
}

// Put gives back a buffer that Get returned.
func (p *sizedPool) Put(b *[]byte) {
	c := cap(*b) / messageClass // the largest class it holds
	switch {
	case c == 0:
		mem.DefaultBufferPool().Put(b)
	case c <= len(p.classes):
		p.classes[c-1].Put(b)
	}
}
