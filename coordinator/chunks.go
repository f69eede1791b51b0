package coordinator

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// Update chunks are decoded without a copy of their data.
//
// protobuf-go copies every bytes field it decodes into a slice of its own
// (it has no option to alias its input for them), so each 256 KiB chunk of
// an update cost a freshly allocated, zeroed 256 KiB in the decoded
// SubmitUpdateRequest, copied once more into the update vector by the
// handler: at 10 participants × 10 M parameters, 400 MB a round for the
// collector. updateRequest lets the codec decode a SubmitUpdateRequest
// whose chunk data aliases the received message's pooled buffer instead.
// The buffer is held, one reference of gRPC's mem.Buffer (encoding.CodecV2:
// data is freed when Unmarshal returns unless the codec takes a reference
// of its own), until the handler has decoded the chunk into the update
// vector and gives it back with updateReceiver.release. A buffer nobody
// gives back is left to the collector, never reused while something may
// read it.
//
// Everything else is protobuf's own: decodeAliased walks the top-level
// fields and hands each one, except the chunk, to proto.Unmarshal with
// Merge (decoding a message is merging its fields in order, so the result
// is the same), and inside the chunk every field but data. A message that
// does not decode is given to proto.Unmarshal whole, so that it fails with
// protobuf's own error, marked malformedMessage as every other decoding
// error (malformedAuditor). FuzzDecodeUpdateRequest compares the two on
// arbitrary bytes.

// updateRequest is what updateReceiver asks gRPC to decode a SubmitUpdate
// message into: the codec (messageCodec.Unmarshal) decodes it with
// decodeUpdateRequest.
type updateRequest struct {
	msg *fedguardv1.SubmitUpdateRequest
	// buf holds the bytes msg's chunk data aliases (nil when it aliases
	// nothing); its reference is the holder's to free.
	buf mem.Buffer
}

// unmarshal decodes data into u.
func (u *updateRequest) unmarshal(data mem.BufferSlice) error {
	buf := data.MaterializeToBuffer(wire.MessagePool())
	u.msg = new(fedguardv1.SubmitUpdateRequest)
	aliased, err := decodeUpdateRequest(buf.ReadOnlyData(), u.msg)
	if err != nil || !aliased {
		buf.Free()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", malformedMessage, err)
	}
	if aliased {
		u.buf = buf
	}
	return nil
}

// decodeUpdateRequest decodes b into m, a new message, as proto.Unmarshal
// would, except that the chunk's data aliases b; aliased says whether it
// does (a chunk with no data aliases nothing).
func decodeUpdateRequest(b []byte, m *fedguardv1.SubmitUpdateRequest) (aliased bool, err error) {
	aliased, err = decodeAliased(b, m, 4, 2, func() (proto.Message, *[]byte) {
		// A oneof member met again is merged into, another one replaced,
		// as protobuf does.
		c, ok := m.Body.(*fedguardv1.SubmitUpdateRequest_Chunk)
		if !ok {
			c = &fedguardv1.SubmitUpdateRequest_Chunk{}
			m.Body = c
		}
		if c.Chunk == nil {
			c.Chunk = new(fedguardv1.UpdateChunk)
		}
		return c.Chunk, &c.Chunk.Data
	})
	if err != nil {
		// protobuf's own error for it (there must be one: the fuzz target
		// checks that both refuse the same messages).
		if perr := proto.Unmarshal(b, new(fedguardv1.SubmitUpdateRequest)); perr != nil {
			err = perr
		}
		return false, err
	}
	return aliased, nil
}

// errWireFormat is decodeAliased's error for bytes that are not a
// protobuf message.
var errWireFormat = errors.New("coordinator: invalid wire-format data")

// decodeAliased decodes b into m as proto.Unmarshal would, except for the
// bytes field inner of the message field outer: that field is set by
// sub, which returns the message to decode it into (making it, as a oneof
// member, when m does not have it) and a pointer to the field, to a
// slice of b. aliased says whether some field was.
func decodeAliased(b []byte, m proto.Message, outer, inner protowire.Number, sub func() (proto.Message, *[]byte)) (aliased bool, err error) {
	err = eachBytesField(b, m, outer, func(body []byte) error {
		into, data := sub()
		return eachBytesField(body, into, inner, func(v []byte) error {
			// The last occurrence wins; an empty one leaves nil, as
			// protobuf's proto3 bytes decoding does.
			*data = nil
			if len(v) > 0 {
				*data = v[:len(v):len(v)]
				aliased = true
			}
			return nil
		})
	})
	if err != nil {
		return false, err
	}
	return aliased, nil
}

// eachBytesField decodes the fields of b into m as proto.Unmarshal with
// Merge would, except the bytes fields num: it calls f with the value of
// each of those instead (a slice of b), in the order they stand in.
func eachBytesField(b []byte, m proto.Message, num protowire.Number, f func(value []byte) error) error {
	merge := proto.UnmarshalOptions{Merge: true}
	for len(b) > 0 {
		n, typ, field, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if n != num || typ != protowire.BytesType {
			if err := merge.Unmarshal(field, m); err != nil {
				return err
			}
			continue
		}
		_, tag := protowire.ConsumeVarint(field)
		v, _ := protowire.ConsumeBytes(field[tag:])
		if err := f(v); err != nil {
			return err
		}
	}
	return nil
}

// nextField splits the first field (tag and value) off b, with the checks
// protobuf's decoder makes: a field number in [1, 2^29-1], no end of group
// without its start, a value that fits in b.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, field, rest []byte, err error) {
	tag, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, nil, nil, errWireFormat
	}
	if v := tag >> 3; v < uint64(protowire.MinValidNumber) || v > uint64(protowire.MaxValidNumber) {
		return 0, 0, nil, nil, errWireFormat
	}
	num, typ = protowire.Number(tag>>3), protowire.Type(tag&7)
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return 0, 0, nil, nil, errWireFormat
	}
	return num, typ, b[:n+m], b[n+m:], nil
}

// updateReceiver receives a SubmitUpdate stream's messages through
// updateRequest, and gives back the buffer a chunk's data aliases once
// the handler has decoded it (release).
type updateReceiver struct {
	stream grpc.ServerStream
	// req is what RecvMsg decodes into, kept so that a message costs no
	// allocation of it (only recv uses it).
	req updateRequest

	mu sync.Mutex
	// last is the last message received and buf the buffer its chunk
	// aliases (nil once given back).
	last *fedguardv1.SubmitUpdateRequest
	buf  mem.Buffer
}

// recv receives the next message. The buffer of an earlier one that was
// not released is left to the collector.
func (r *updateReceiver) recv() (*fedguardv1.SubmitUpdateRequest, error) {
	r.req = updateRequest{}
	if err := r.stream.RecvMsg(&r.req); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.last, r.buf = r.req.msg, r.req.buf
	r.mu.Unlock()
	return r.req.msg, nil
}

// release gives back the buffer msg's chunk data aliases, once nothing
// reads it any more; the chunk's data is then empty. It does nothing for
// any message but the last one received.
func (r *updateReceiver) release(msg *fedguardv1.SubmitUpdateRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg == nil || msg != r.last || r.buf == nil {
		return
	}
	if ch := msg.GetChunk(); ch != nil {
		ch.Data = nil
	}
	r.buf.Free()
	r.buf = nil
}
