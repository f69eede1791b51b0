package wire_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// TestCodecDirtyBuffers: the codec's buffers are not cleared, so
// it must write and read every byte of a message however dirty the
// buffer it gets: its encoding equals protobuf's and decodes back, for
// messages of every size class, after the pool was filled with buffers
// of 0xFF.
func TestCodecDirtyBuffers(t *testing.T) {
	for _, n := range []int{10 << 20 / 4, 1 << 20, 256 << 10, 64<<10 - 7, 64 << 10, 64<<10 + 1, 5000, 100, 0} {
		for range 4 {
			b := wire.MessagePool().Get(max(n, 1))
			for i := range *b {
				(*b)[i] = 0xFF
			}
			wire.MessagePool().Put(b)
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 7)
		}
		msg := &fedguardv1.GetModelResponse{Round: 3, FormatVersion: 1, Offset: 5, Data: data, NumParams: uint64(n / 4)}
		var c wire.Codec
		enc, err := c.Marshal(msg)
		if err != nil {
			t.Fatalf("%d bytes: Marshal: %v", n, err)
		}
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := enc.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: the codec's encoding differs from protobuf's", n)
		}
		// Received in 16 KiB frames, as gRPC hands messages over.
		var frames mem.BufferSlice
		for off := 0; off < len(want); off += 16 << 10 {
			frames = append(frames, mem.SliceBuffer(want[off:min(off+16<<10, len(want))]))
		}
		var back fedguardv1.GetModelResponse
		if err := c.Unmarshal(frames, &back); err != nil {
			t.Fatalf("%d bytes: Unmarshal: %v", n, err)
		}
		if !proto.Equal(&back, msg) {
			t.Fatalf("%d bytes: decoded message differs", n)
		}
		enc.Free()
	}
}
