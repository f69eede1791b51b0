package coordinator

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// updateSeeds are SubmitUpdateRequest encodings that exercise protobuf's
// corners: valid messages, fields repeated and out of order, oneof members
// replacing and merging into each other, unknown fields and groups, wrong
// wire types, and truncations.
func updateSeeds(t testing.TB) [][]byte {
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chunk := func(off uint64, data []byte) []byte {
		return marshal(&fedguardv1.SubmitUpdateRequest{Round: 7, FormatVersion: 1, Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: off, Data: data}}})
	}
	header := marshal(&fedguardv1.SubmitUpdateRequest{Round: 7, FormatVersion: 1, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
		Sha256: bytes.Repeat([]byte{1}, 32), SampleCount: 9, DataSha256: bytes.Repeat([]byte{2}, 32),
		Holdout: &fedguardv1.Evaluation{Count: 3, Accuracy: 0.5}, Privacy: &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5},
	}}})
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 31)
	}
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), v)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	inner := func(parts ...[]byte) []byte { return field(4, cat(parts...)) }
	offset := func(v uint64) []byte { return protowire.AppendVarint(tag(1, protowire.VarintType), v) }
	group := cat(tag(9, protowire.StartGroupType), tag(1, protowire.VarintType), []byte{5}, tag(9, protowire.EndGroupType))
	return [][]byte{
		{},
		header,
		chunk(0, data),
		chunk(1024, nil),
		chunk(0, data[:3]),
		cat(chunk(0, data), chunk(5, data[:8])), // the chunk merged: offset and data replaced
		cat(chunk(0, data), header),             // header replaces the chunk
		cat(header, chunk(0, data)),             // and the other way
		cat(header, chunk(0, data), header),     // a new header, not the first merged
		cat(chunk(3, data), inner(field(2, nil))),              // an empty data field clears the data
		cat(chunk(3, data), inner(offset(8))),                  // data kept, offset replaced
		inner(field(2, data[:16]), field(2, data[:4])),         // the last data wins
		inner(field(2, data[:16]), group, field(77, data[:3])), // unknown fields kept in order
		cat(group, chunk(0, data), field(99, []byte("x"))),
		inner(tag(2, protowire.VarintType), []byte{3}),                        // data with the wrong wire type: unknown
		cat(tag(4, protowire.VarintType), []byte{1}),                          // chunk with the wrong wire type: unknown
		cat(tag(1, protowire.BytesType), []byte{1, 0}),                        // round with the wrong wire type
		cat(tag(4, protowire.StartGroupType), tag(4, protowire.EndGroupType)), // chunk as a group
		inner(tag(1, protowire.Fixed32Type), []byte{1, 2, 3, 4}),
		{0x08},                               // truncated varint
		{0x22, 0x05, 0x12, 0x03},             // chunk longer than the message
		inner(field(2, data[:8]))[:9],        // data cut short
		inner([]byte{0x12, 0x7f}),            // data longer than the chunk
		{0x00},                               // field number 0
		{0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00}, // field number above 2^29-1
		inner([]byte{0x00}),
		cat(tag(9, protowire.EndGroupType)), // end of a group never started
		inner(tag(9, protowire.EndGroupType)),
		cat(tag(9, protowire.StartGroupType), []byte{0x08}), // group never ended
		{0x0f}, // wire type 7
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // varint of 11 bytes
		cat(field(3, []byte{0x22, 0x02, 0xff, 0xfe})),                      // a header whose holdout does not decode
		cat(field(3, []byte{0x0a})),                                        // header truncated
	}
}

// FuzzDecodeUpdateRequest: the codec's decoder of SubmitUpdateRequest
// (chunks.go) and proto.Unmarshal agree on every input: both refuse it
// with the same error, or both accept it with the same fields, unknown
// ones included; and the chunk's data, when there is some, lies inside the
// input rather than in a copy.
func FuzzDecodeUpdateRequest(f *testing.F) {
	for _, s := range updateSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := new(fedguardv1.SubmitUpdateRequest)
		werr := proto.Unmarshal(b, want)
		got := new(fedguardv1.SubmitUpdateRequest)
		aliased, err := decodeUpdateRequest(b, got)
		if (err == nil) != (werr == nil) {
			t.Fatalf("decodeUpdateRequest(%x): error %v, proto.Unmarshal: %v", b, err, werr)
		}
		if err != nil {
			if err.Error() != werr.Error() {
				t.Fatalf("decodeUpdateRequest(%x): error %q, proto.Unmarshal's %q", b, err, werr)
			}
			return
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decodeUpdateRequest(%x) = %v, proto.Unmarshal: %v", b, got, want)
		}
		if gd, wd := got.GetChunk().GetData(), want.GetChunk().GetData(); (gd == nil) != (wd == nil) {
			t.Fatalf("decodeUpdateRequest(%x): data %v, proto.Unmarshal: %v", b, gd, wd)
		}
		d := got.GetChunk().GetData()
		if inside := len(d) > 0 && within(d, b); inside != (len(d) > 0) {
			t.Fatalf("decodeUpdateRequest(%x): the data does not alias the input", b)
		}
		if aliased && len(b) == 0 || !aliased && len(d) > 0 {
			t.Fatalf("decodeUpdateRequest(%x): aliased %v with %d bytes of data", b, aliased, len(d))
		}
		if cap(d) != len(d) {
			t.Fatalf("decodeUpdateRequest(%x): data has room to grow into the input (cap %d, len %d)", b, cap(d), len(d))
		}
	})
}

// within reports whether s lies inside b.
func within(s, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	lo, hi := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[0]))+uintptr(len(b))
	p := uintptr(unsafe.Pointer(&s[0]))
	return p >= lo && p+uintptr(len(s)) <= hi
}

// countingPool is a mem.BufferPool that counts the buffers given back.
type countingPool struct{ put atomic.Int64 }

func (p *countingPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.put.Add(1) }

// fakeStream hands out messages as gRPC's server stream does: decoded
// by the codec from a received BufferSlice that is freed once the codec
// returns.
type fakeStream struct {
	fedguardv1.CoordinatorService_SubmitUpdateServer
	next func() mem.BufferSlice
}

func (s fakeStream) RecvMsg(m any) error {
	data := s.next()
	defer data.Free()
	return messageCodec{}.Unmarshal(data, m)
}

// TestUpdateChunkAliasesReceivedBuffer: a chunk's data is the received
// buffer itself, held (one reference) until the handler releases it, then
// given back to its pool exactly once; the release of any other message
// than the last received, or a second one, gives back nothing.
func TestUpdateChunkAliasesReceivedBuffer(t *testing.T) {
	data := make([]byte, wire.SendChunkBytes)
	for i := range data {
		data[i] = byte(i)
	}
	enc, err := proto.Marshal(&fedguardv1.SubmitUpdateRequest{Round: 2, FormatVersion: 1, Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: 4, Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	pool := new(countingPool)
	var received []byte
	rx := &updateReceiver{stream: fakeStream{next: func() mem.BufferSlice {
		b := append([]byte(nil), enc...)
		received = b
		return mem.BufferSlice{mem.NewBuffer(&b, pool)}
	}}}
	msg, err := rx.recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.put.Load(); got != 0 {
		t.Fatalf("the buffer was given back %d times before the handler released it", got)
	}
	d := msg.GetChunk().GetData()
	if !bytes.Equal(d, data) || msg.GetRound() != 2 || msg.GetChunk().GetOffset() != 4 {
		t.Fatalf("decoded round %d offset %d, %d bytes of data equal %v", msg.GetRound(), msg.GetChunk().GetOffset(), len(d), bytes.Equal(d, data))
	}
	if !within(d, received) {
		t.Fatal("the chunk's data is a copy, not the received buffer")
	}
	older := msg
	msg2, err := rx.recv()
	if err != nil {
		t.Fatal(err)
	}
	rx.release(older) // not the last one: nothing to give back
	if got := pool.put.Load(); got != 0 {
		t.Fatalf("releasing an earlier message gave back %d buffers", got)
	}
	rx.release(msg2)
	rx.release(msg2)
	if got := pool.put.Load(); got != 1 {
		t.Fatalf("the buffer was given back %d times, want once", got)
	}
	if msg2.GetChunk().GetData() != nil {
		t.Fatal("the released chunk still shows the given-back buffer")
	}
}

// TestUpdateRequestFromFrames: a chunk that arrives in 16 KiB frames, as
// gRPC's transport hands it over, decodes into the codec's pooled buffer,
// and the update vector it is decoded into is the one protobuf's decoding
// gives; a header carries no buffer.
func TestUpdateRequestFromFrames(t *testing.T) {
	params := make([]float32, wire.SendChunkBytes/4)
	for i := range params {
		params[i] = float32(i) * 0.25
	}
	enc, err := proto.Marshal(&fedguardv1.SubmitUpdateRequest{Round: 2, FormatVersion: 1, Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Data: model.AppendBytes(nil, params)}}})
	if err != nil {
		t.Fatal(err)
	}
	var u updateRequest
	if err := (messageCodec{}).Unmarshal(frames(enc), &u); err != nil {
		t.Fatal(err)
	}
	if u.buf == nil {
		t.Fatal("the chunk holds no buffer")
	}
	got := make([]float32, len(params))
	asm := wire.NewAssembler(got)
	if err := asm.Add(0, u.msg.GetChunk().GetData()); err != nil {
		t.Fatal(err)
	}
	u.buf.Free()
	if asm.Sum() != model.Digest(params) {
		t.Fatal("the chunk decoded to other parameters")
	}

	hdr, err := proto.Marshal(&fedguardv1.SubmitUpdateRequest{Round: 2, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{SampleCount: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var h updateRequest
	if err := (messageCodec{}).Unmarshal(frames(hdr), &h); err != nil {
		t.Fatal(err)
	}
	if h.buf != nil || h.msg.GetHeader().GetSampleCount() != 1 {
		t.Fatalf("header: buffer %v, message %v", h.buf, h.msg)
	}
}

// frames cuts b into 16 KiB buffers.
func frames(b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for off := 0; off < len(b); off += 16 << 10 {
		s = append(s, mem.SliceBuffer(b[off:min(off+16<<10, len(b))]))
	}
	return s
}

// TestUpdateRequestMalformed: a SubmitUpdateRequest that does not decode
// fails in the codec with protobuf's own error, marked as a malformed
// message (malformedAuditor audits it by that mark).
func TestUpdateRequestMalformed(t *testing.T) {
	for _, b := range [][]byte{{0x08}, {0x22, 0x05, 0x12, 0x03}, {0x22, 0x02, 0x12, 0x7f}, {0x00}} {
		perr := proto.Unmarshal(b, new(fedguardv1.SubmitUpdateRequest))
		if perr == nil {
			t.Fatalf("%x: protobuf accepts it", b)
		}
		var u updateRequest
		err := (messageCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &u)
		if err == nil || !strings.HasPrefix(err.Error(), malformedMessage+": ") || !strings.HasSuffix(err.Error(), perr.Error()) {
			t.Errorf("Unmarshal(%x) = %v, want %q marked %q", b, err, perr, malformedMessage)
		}
	}
}

// BenchmarkUpdateChunk decodes a 256 KiB update chunk received in 16 KiB
// frames and consumes it into the update vector (finiteness check,
// SHA-256, sum of squares), as SubmitUpdate does: through protobuf's
// decoding, which copies the data into a new slice, and through the
// aliasing decoder.
func BenchmarkUpdateChunk(b *testing.B) {
	params := make([]float32, wire.SendChunkBytes/4)
	for i := range params {
		params[i] = float32(i%1000) * 1e-3
	}
	enc, err := proto.Marshal(&fedguardv1.SubmitUpdateRequest{Round: 2, FormatVersion: 1, Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Data: model.AppendBytes(nil, params)}}})
	if err != nil {
		b.Fatal(err)
	}
	in := frames(enc)
	dst := make([]float32, len(params))
	b.Run("protobuf", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			msg := new(fedguardv1.SubmitUpdateRequest)
			if err := (messageCodec{}).Unmarshal(in, msg); err != nil {
				b.Fatal(err)
			}
			if err := wire.NewAssembler(dst).Add(0, msg.GetChunk().GetData()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aliased", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		rx := &updateReceiver{stream: fakeStream{next: func() mem.BufferSlice { return in }}}
		for b.Loop() {
			in.Ref() // what the stream frees
			msg, err := rx.recv()
			if err != nil {
				b.Fatal(err)
			}
			err = wire.NewAssembler(dst).Add(0, msg.GetChunk().GetData())
			rx.release(msg)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
