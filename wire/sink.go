package wire

import (
	"crypto/sha256"
	"sync"
)

// NewSinkAssembler returns an Assembler for a vector of n parameters that
// keeps none of it: each chunk is checked, decoded into a scratch buffer
// shared by all sink assemblers, hashed and its squares summed exactly as
// NewAssembler's Add does (so Sum and Norm are the same bits), and then
// handed to sink with its parameter offset and its wire bytes (format v1,
// which is the vector's little-endian memory). sink must not keep data. An
// error from sink is returned by Add as it is; the caller then discards
// what sink stored.
//
// The coordinator uses it to write updates to a spill file as they arrive,
// holding only a chunk per stream being decoded (a few in all) instead of
// a model-sized vector per stream.
func NewSinkAssembler(n int, sink func(offset uint64, data []byte) error) *Assembler {
	return &Assembler{size: uint64(max(n, 0)), h: sha256.New(), sink: sink}
}

// sinkScratch holds the chunk-sized buffers sink assemblers decode into:
// one per Add running at once.
var sinkScratch = sync.Pool{New: func() any {
	b := make([]float32, ChunkBytes/4)
	return &b
}}
