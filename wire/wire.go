// Package wire is the one place where fedguard's Go types meet the
// fedguard.v1 messages, for both the plain and the secure round: it cuts a
// parameter vector into chunks small enough for gRPC's default message
// limits and reassembles them on the other side, refusing anything out of
// order, out of bounds or non-finite, while hashing and measuring the vector
// on the fly; and it converts, with every check a peer's mistake calls for,
// the model and feature-scaling descriptions and the secure-aggregation
// messages. It holds no protocol state: the coordinator and the participant
// agent decide what to send and when.
//
// # Format
//
// Format version 1 (model.FormatVersion) is a flat vector of IEEE-754 float32
// values, little-endian. A chunk carries at most ChunkBytes bytes and the
// index of its first parameter; chunks of one vector travel in order with no
// gap and no overlap. Chunks sends chunks of SendChunkBytes (256 KiB): a
// model of 10^8 parameters is 1,526 of them, each well under
// MaxMessageBytes, so neither side needs a large message limit.
//
// # Conversion
//
// SpecFromProto and ScalingFromProto turn the wire's descriptions into the
// model and dataset packages' types, checking everything a peer could get
// wrong (unknown format version, unknown kind, a parameter count that does
// not match the architecture).
//
// # Secure aggregation
//
// The XToProto and XFromProto functions of secure.go map the messages of
// package aggregation/secagg onto the SecureAggregate stream's messages and
// back. A FromProto function gets the bucket size n, refuses any id, count
// or size outside it, and wraps every refusal in [ErrMessage]. Masked
// inputs travel as uint32 words in chunks of at most ChunkBytes
// ([SendMasked], [MaskedAssembler]). [PeerKeys] checks each relayed key
// advertisement against the certificate that signed it.
package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

const (
	// ChunkBytes is the most parameter bytes one message carries (1 MiB,
	// a multiple of 4).
	ChunkBytes = 1 << 20
	// SendChunkBytes is the size of the chunks Chunks makes, a quarter of
	// the limit: the receiver holds each message whole, twice (gRPC's
	// buffer and the decoded message) while it decodes it, so a
	// coordinator receiving a hundred updates at once held about 50 MB
	// more with 1 MiB chunks. Receivers accept any size up to ChunkBytes.
	SendChunkBytes = ChunkBytes / 4
	// MaxMessageBytes bounds one gRPC message on both sides: a chunk plus
	// generous room for the other fields. It stays far below any size that
	// would let a peer make the other side allocate much.
	MaxMessageBytes = ChunkBytes + 64<<10
)

// Errors returned by Assembler. They describe a peer's mistake, so callers
// map them to InvalidArgument.
var (
	ErrOrder      = errors.New("wire: chunk out of order")
	ErrOverflow   = errors.New("wire: chunk runs past the end of the vector")
	ErrMisaligned = errors.New("wire: chunk length is not a multiple of 4 bytes")
	ErrTooLarge   = errors.New("wire: chunk larger than the chunk limit")
	ErrIncomplete = errors.New("wire: vector incomplete")
)

// Chunks calls fn for each chunk of params in format version 1, in order,
// each of SendChunkBytes but the last.
// The data slice is reused between calls: fn must not keep it. (gRPC's
// SendMsg encodes the message before it returns; fedguard installs no stats
// handler that could read a message later, so sending data and returning is
// safe.)
func Chunks(params []float32, fn func(offset uint64, data []byte) error) error {
	const per = SendChunkBytes / 4
	buf := make([]byte, 0, SendChunkBytes)
	for off := 0; off < len(params) || (off == 0 && len(params) == 0); off += per {
		end := min(off+per, len(params))
		buf = model.AppendBytes(buf[:0], params[off:end])
		if err := fn(uint64(off), buf); err != nil {
			return err
		}
		if len(params) == 0 {
			break
		}
	}
	return nil
}

// Assembler rebuilds a vector from in-order chunks.
type Assembler struct {
	dst   []float32
	size  uint64 // parameters of the vector: len(dst), or NewSinkAssembler's n
	next  uint64
	h     hash.Hash
	sumSq float64
	sink  func(offset uint64, data []byte) error // NewSinkAssembler's, or nil
}

// NewAssembler returns an Assembler that decodes into dst; the vector is
// complete when len(dst) parameters have arrived.
func NewAssembler(dst []float32) *Assembler {
	return &Assembler{dst: dst, size: uint64(len(dst)), h: sha256.New()}
}

// Add decodes one chunk. On error dst may hold part of the chunk; the
// caller must discard the whole vector.
func (a *Assembler) Add(offset uint64, data []byte) error {
	switch {
	case len(data) > ChunkBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), ChunkBytes)
	case len(data)%4 != 0:
		return fmt.Errorf("%w: %d bytes", ErrMisaligned, len(data))
	case offset != a.next:
		return fmt.Errorf("%w: offset %d, expected %d", ErrOrder, offset, a.next)
	}
	n := uint64(len(data) / 4)
	if n > a.size-a.next {
		return fmt.Errorf("%w: %d parameters at offset %d, vector has %d", ErrOverflow, n, offset, a.size)
	}
	var part []float32
	if a.sink != nil {
		scratch := sinkScratch.Get().(*[]float32)
		defer sinkScratch.Put(scratch)
		part = (*scratch)[:n]
	} else {
		part = a.dst[a.next : a.next+n]
	}
	// The squares are summed as the chunk is decoded (one pass over it,
	// the same bits as model.SumSquares of the decoded chunk).
	sumSq, err := model.DecodeSumSquares(part, data)
	if err != nil {
		for i, v := range part {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("chunk at parameter offset %d: parameter %d is %v: %w", offset, offset+uint64(i), v, model.ErrNonFinite)
			}
		}
		return fmt.Errorf("chunk at parameter offset %d: %w", offset, err)
	}
	if a.sink != nil {
		if err := a.sink(offset, data); err != nil {
			return err
		}
	}
	a.sumSq += sumSq
	a.h.Write(data)
	a.next += n
	return nil
}

// Done reports whether every parameter has arrived.
func (a *Assembler) Done() error {
	if a.next != a.size {
		return fmt.Errorf("%w: %d of %d parameters", ErrIncomplete, a.next, a.size)
	}
	return nil
}

// Received is the number of parameters decoded so far.
func (a *Assembler) Received() uint64 { return a.next }

// Sum returns the SHA-256 of the bytes added so far: the wire digest of the
// vector once Done returns nil.
func (a *Assembler) Sum() [32]byte {
	var s [32]byte
	a.h.Sum(s[:0])
	return s
}

// Norm returns the L2 norm of the parameters added so far.
func (a *Assembler) Norm() float64 { return math.Sqrt(a.sumSq) }

// SpecFromProto converts and checks a wire model specification.
func SpecFromProto(p *fedguardv1.ModelSpec) (model.Spec, error) {
	if p == nil {
		return model.Spec{}, errors.New("wire: missing model spec")
	}
	if p.GetFormatVersion() != model.FormatVersion {
		return model.Spec{}, fmt.Errorf("wire: model format version %d not supported (this build reads %d)", p.GetFormatVersion(), model.FormatVersion)
	}
	s := model.Spec{
		Kind:     model.Kind(p.GetKind()),
		Features: len(p.GetFeatures()),
		Classes:  len(p.GetClasses()),
	}
	for _, h := range p.GetHidden() {
		s.Hidden = append(s.Hidden, int(h))
	}
	if n := len(p.GetTensors()); n > model.MaxTensors {
		return model.Spec{}, fmt.Errorf("wire: model spec has %d tensors, at most %d", n, model.MaxTensors)
	}
	for _, t := range p.GetTensors() {
		mt := model.Tensor{Name: t.GetName(), Shape: make([]int, len(t.GetShape()))}
		for i, d := range t.GetShape() {
			if d > model.MaxParams {
				return model.Spec{}, fmt.Errorf("wire: model spec: tensor %q has dimension %d, more than %d parameters", t.GetName(), d, model.MaxParams)
			}
			mt.Shape[i] = int(d)
		}
		s.Tensors = append(s.Tensors, mt)
	}
	if err := s.Validate(); err != nil {
		return model.Spec{}, fmt.Errorf("wire: model spec: %w", err)
	}
	if got := uint64(s.NumParams()); got != p.GetNumParams() {
		return model.Spec{}, fmt.Errorf("wire: model spec says %d parameters, its architecture has %d", p.GetNumParams(), got)
	}
	return s, nil
}

// SpecToProto is the wire form of s, whose feature, label and class names
// are given (their counts are s's). For the built-in kinds it sets exactly
// the fields it always did, so their encoding is unchanged; a
// model.Tensors spec adds its tensors.
func SpecToProto(s model.Spec, features []string, label string, classes []string) *fedguardv1.ModelSpec {
	p := &fedguardv1.ModelSpec{
		FormatVersion: model.FormatVersion,
		Kind:          fedguardv1.ModelKind(s.Kind),
		Features:      slices.Clone(features),
		Label:         label,
		Classes:       slices.Clone(classes),
		NumParams:     uint64(s.NumParams()),
	}
	for _, h := range s.Hidden {
		p.Hidden = append(p.Hidden, uint32(h))
	}
	for _, t := range s.Tensors {
		ts := &fedguardv1.TensorSpec{Name: t.Name, Shape: make([]uint64, len(t.Shape))}
		for i, d := range t.Shape {
			ts.Shape[i] = uint64(d)
		}
		p.Tensors = append(p.Tensors, ts)
	}
	return p
}

// ScalingFromProto converts and checks a feature scaling for n features.
func ScalingFromProto(p *fedguardv1.FeatureScaling, n int) (dataset.Scaling, error) {
	if p == nil {
		return dataset.Scaling{}, errors.New("wire: missing feature scaling")
	}
	if len(p.GetMean()) != n || len(p.GetStd()) != n {
		return dataset.Scaling{}, fmt.Errorf("wire: feature scaling has %d means and %d deviations, want %d", len(p.GetMean()), len(p.GetStd()), n)
	}
	for i := range n {
		m, s := p.GetMean()[i], p.GetStd()[i]
		// No scaling the coordinator derives has a deviation below
		// dataset.MinStd; a smaller one would blow values up.
		if math.IsNaN(m) || math.IsInf(m, 0) || !(s >= dataset.MinStd) || math.IsInf(s, 0) {
			return dataset.Scaling{}, fmt.Errorf("wire: feature scaling %d is invalid (mean %v, std %v; the deviation must be finite and at least %v)", i, m, s, dataset.MinStd)
		}
	}
	return dataset.Scaling{Mean: p.GetMean(), Std: p.GetStd()}, nil
}
