package wire

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// Codec is fedguard's gRPC codec on both sides (the coordinator's server
// through grpc.ForceServerCodecV2, a participant's calls through
// grpc.ForceCodecV2 in DialOptions): protobuf, exactly as gRPC's own
// (google.golang.org/grpc/encoding/proto), except where the buffers of
// large messages come from.
//
// gRPC's default pool has tiers of 32 KiB and then 1 MiB, and zeroes the
// whole of a buffer on every Get: each 256 KiB chunk received or sent
// took and cleared a 1 MiB buffer. In a CPU profile of the coordinator at
// 10 participants × 10 M parameters (perf, fedguard bench round) that
// clearing was 11.7 % of the process's time (Marshal of GetModel's chunks
// 5.9 %, materialising received messages 4.4 %), and the pooled buffers
// held four times the bytes in flight; in a participant it was 8.5 %.
// MessagePool sizes buffers to the next 64 KiB and does not clear them:
// Marshal writes a buffer from its start to the length it asked for, and
// a received message is copied over the whole length it asked for, so
// nothing of an earlier message can be read through one.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is the content subtype the codec serves; it replaces gRPC's "proto".
func (Codec) Name() string { return "proto" }

// Marshal encodes v into a buffer of MessagePool (small messages into a
// buffer of their own, as gRPC does).
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
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
// is first copied into one buffer of MessagePool, given back once decoded
// (the decoded message copies its bytes fields). Its error is protobuf's,
// unwrapped.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, err := protoMessage(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(messagePool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func protoMessage(v any) (proto.Message, error) {
	switch v := v.(type) {
	case proto.Message:
		return v, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v), nil
	}
	return nil, fmt.Errorf("wire: codec: %T is not a protobuf message", v)
}

// messageClass is the granularity of MessagePool's buffers.
const messageClass = 64 << 10

// MessagePool returns Codec's buffer pool: buffers in classes of 64 KiB up
// to MaxMessageBytes, handed out as they were given back, not cleared, so
// a user must write every byte it reads. Smaller requests go to gRPC's
// default pool and larger ones are allocated. It is a function, not a
// variable, so that no package can swap the pool the codec's buffers are
// given back to.
func MessagePool() mem.BufferPool { return messagePool }

// messagePool is the one pool behind MessagePool.
var messagePool mem.BufferPool = &sizedPool{}

// sizedPool is MessagePool's type.
type sizedPool struct {
	classes [(MaxMessageBytes + messageClass - 1) / messageClass]sync.Pool
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
