package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedguard/fedguard/internal/strictjson"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxLineLen bounds one line of an export, newline included. The longest
// event line a log writes (a payload of MaxPayloadLen, an actor of
// escaped characters) is far shorter.
const MaxLineLen = 1 << 20

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifiers holds the keys trusted to sign checkpoints: usually only
	// the coordinator's public key.
	Verifiers note.Verifiers
	// Origin, if set, is the origin the export must have.
	Origin string
	// Rotate, if set, follows the coordinator's key rotations: Verify
	// calls it with every key_rotated event, in order, once the event's
	// hash and chain link are checked, and it returns the verifiers of
	// the keys the rotation introduces (after checking that the keys
	// trusted so far signed it), or an error that fails the export. The
	// keys of each checkpoint are then those in effect when its last event
	// was appended: Verifiers before the first rotation, and the keys of
	// the latest key_rotated event before that last event after it (see
	// "Key rotation" in the package documentation). Without Rotate,
	// key_rotated events are ordinary events and every checkpoint must
	// verify under Verifiers.
	Rotate func(ev *Event) (note.Verifiers, error)
	// Witnessed lists checkpoints that others saw the log's key sign (the
	// hospitals' witnesses, see package witness): the export must extend
	// each of them, or Verify fails with a *WitnessError naming it.
	Witnessed []Witnessed
	// OnEvent, if set, sees each event once its place in the chain is
	// checked, in order. Verify's result still decides: an event seen here
	// belongs to a verified export only if Verify returns no error. The
	// event's Payload is valid only during the call (copy it to keep it).
	// An error from OnEvent stops Verify and is returned.
	OnEvent func(Event) error
}

// Witnessed is a checkpoint as a witness saw it: signed by the log's key,
// vouched for by Witness. Verify does not check signatures on it; the
// caller does (package witness).
type Witnessed struct {
	// Witness names who saw it, for the error that says so.
	Witness string
	Origin  string
	Size    uint64
	Root    tlog.Hash
}

// WitnessError is an export that does not extend a witnessed checkpoint:
// it was cut back to fewer events than a witness saw signed, or it holds
// other events (a fork) at the witnessed size.
type WitnessError struct {
	Witness string
	// Size is the witnessed tree size; Events the export's.
	Size, Events uint64
	// CutBack: the export is shorter than the witnessed tree. Otherwise
	// the witnessed tree is not a prefix of the export's (a fork).
	CutBack bool
	Reason  string
}

// Error formats e as "audit: refuted by witness NAME: <reason>".
func (e *WitnessError) Error() string {
	return "audit: refuted by witness " + e.Witness + ": " + e.Reason
}

// Summary describes an export that Verify accepted.
type Summary struct {
	// Events is the number of events; Checkpoints the number of checkpoints.
	Events      uint64
	Checkpoints int
	// Covered is the size of the last checkpoint: events 0..Covered-1 are
	// signed. Uncovered counts the events after it, whose chain is checked
	// but which no signature vouches for yet.
	Covered   uint64
	Uncovered uint64
	Origin    string
	// Root is the Merkle root of the first Covered events, as signed.
	Root tlog.Hash
}

// VerifyError says where and why an export failed verification.
type VerifyError struct {
	// Line is the 1-based line number, or 0 for a fault of the whole export
	// (a count in the header that the lines do not match).
	Line int
	// Seq is the first event found at fault: the event out of place, the
	// event whose content or hash is wrong, the first missing event, or,
	// for a checkpoint whose root does not match, the first event it signs
	// that no earlier checkpoint signed. It is -1 if no event is at fault.
	Seq int64
	// CheckpointSize is the size of the checkpoint at fault, 0 if none.
	CheckpointSize uint64
	Reason         string
}

// Error formats e as "audit: line 58, event 56: <reason>".
func (e *VerifyError) Error() string {
	var parts []string
	if e.Line > 0 {
		parts = append(parts, "line "+strconv.Itoa(e.Line))
	}
	if e.CheckpointSize > 0 {
		parts = append(parts, "checkpoint "+strconv.FormatUint(e.CheckpointSize, 10))
	}
	if e.Seq >= 0 {
		parts = append(parts, "event "+strconv.FormatInt(e.Seq, 10))
	}
	if len(parts) == 0 {
		return "audit: " + e.Reason
	}
	return "audit: " + strings.Join(parts, ", ") + ": " + e.Reason
}

func verifyErr(line int, seq int64, size uint64, format string, args ...any) *VerifyError {
	return &VerifyError{Line: line, Seq: seq, CheckpointSize: size, Reason: fmt.Sprintf(format, args...)}
}

// Verify reads an export (see "Export format" in the package
// documentation) and checks all of it: the header; that events come in
// sequence order without gaps; that each event's hash is the SHA-256 of its
// content and its prev the hash of the event before; that each checkpoint
// is signed by a key in opts.Verifiers named after the origin, in
// increasing size order, and that its root is the Merkle root of the events
// it covers; and that at least one checkpoint signs something. Every line
// must also be exactly as Export writes it. It stops at the first fault and
// returns it as a *VerifyError; other errors are read errors of r.
//
// Verify streams r and needs about 64 bytes of memory per event (the
// Merkle tree's stored hashes).
func Verify(r io.Reader, opts VerifyOptions) (Summary, error) {
	v := &verifier{opts: opts}
	return v.run(r)
}

// verifier holds the state of one Verify.
type verifier struct {
	opts VerifyOptions

	header  *headerLine
	lines   int
	n       uint64 // events checked
	prev    Hash   // hash of event n-1
	tree    memTree
	cps     int
	covered uint64 // size of the last checkpoint
	root    tlog.Hash
	inTail  bool // a checkpoint line has been seen: no more events

	// epochs are the key rotations seen, in order: the verifiers in
	// effect for the events after seq.
	epochs []epoch

	// onEvent and onCheckpoint, when set (by tests), see what was accepted.
	onEvent      func(*Event)
	onCheckpoint func(*Checkpoint)
}

// epoch is a key rotation: the verifiers of the checkpoints whose last
// event comes after the key_rotated event seq.
type epoch struct {
	seq       uint64
	verifiers note.Verifiers
}

// verifiersFor returns the verifiers of a checkpoint of size: those in
// effect when its last event, size-1, was appended.
func (v *verifier) verifiersFor(size uint64) note.Verifiers {
	vs := v.opts.Verifiers
	for _, e := range v.epochs {
		if e.seq < size-1 {
			vs = e.verifiers
		}
	}
	return vs
}

type headerLine struct {
	Type        string `json:"type"`
	Format      string `json:"format"`
	Origin      string `json:"origin"`
	Events      uint64 `json:"events"`
	Checkpoints uint64 `json:"checkpoints"`
}

type checkpointLine struct {
	Type string `json:"type"`
	Size uint64 `json:"size"`
	Note string `json:"note"`
}

// run verifies the export read from r. A pipeline spreads the work that
// does not depend on order (parsing and hashing each event line) over all
// CPUs; this goroutine then checks the lines in order: sequence numbers,
// the chain, the Merkle tree and the checkpoints.
func (v *verifier) run(r io.Reader) (Summary, error) {
	p := startPipeline(r, runtime.GOMAXPROCS(0))
	defer p.stop()
	for c := range p.ordered {
		<-c.done
		for i, line := range c.lines {
			v.lines = c.first + i
			if err := v.line(line, &c.items[i]); err != nil {
				return Summary{}, err
			}
		}
		if c.err != nil {
			return Summary{}, c.err
		}
		p.release(c)
	}
	return v.finish()
}

// line checks one line (without its newline); it is the line decoded, if
// it is an event line.
func (v *verifier) line(line []byte, it *eventItem) error {
	switch {
	case v.header == nil:
		return v.headerLine(line)
	case bytes.HasPrefix(line, []byte(eventPrefix)):
		if v.inTail {
			return verifyErr(v.lines, int64(v.n), 0, "event line after the checkpoints: events must come first")
		}
		return v.event(it)
	case bytes.HasPrefix(line, []byte(checkpointPrefix)):
		v.inTail = true
		return v.checkpoint(line)
	case bytes.HasPrefix(line, []byte(headerPrefix)):
		return verifyErr(v.lines, -1, 0, "a second header line")
	}
	seq := int64(-1)
	if !v.inTail {
		seq = int64(v.n)
	}
	return verifyErr(v.lines, seq, 0, "not an event or checkpoint line of %s: %q", ExportFormat, truncate(line, 60))
}

func (v *verifier) headerLine(line []byte) error {
	var h headerLine
	if err := strictUnmarshal(line, &h); err != nil || h.Type != "header" {
		return verifyErr(v.lines, -1, 0, "not a header line of %s: %q", ExportFormat, truncate(line, 60))
	}
	if h.Format != ExportFormat {
		return verifyErr(v.lines, -1, 0, "export format %q, this build reads %q", h.Format, ExportFormat)
	}
	if err := checkOrigin(h.Origin); err != nil {
		return verifyErr(v.lines, -1, 0, "header: %v", err)
	}
	if h.Checkpoints > 1<<31 || !sameLine(appendHeaderLine(nil, h.Origin, h.Events, int(h.Checkpoints)), line) {
		return verifyErr(v.lines, -1, 0, "header line is not in canonical form")
	}
	if v.opts.Origin != "" && h.Origin != v.opts.Origin {
		return verifyErr(v.lines, -1, 0, "the export's origin is %q, not %q", h.Origin, v.opts.Origin)
	}
	v.header = &h
	return nil
}

// event checks a decoded event line in order.
func (v *verifier) event(it *eventItem) error {
	want := v.n
	if !it.seqOK {
		return verifyErr(v.lines, int64(want), 0, "%s", it.reason)
	}
	if it.ev.Seq != want {
		return verifyErr(v.lines, int64(want), 0, "expected event %d, found %d", want, it.ev.Seq)
	}
	if it.reason != "" {
		return verifyErr(v.lines, int64(want), 0, "%s", it.reason)
	}
	if !it.hashOK {
		return verifyErr(v.lines, int64(want), 0, "hash does not match the event's content")
	}
	if it.ev.Prev != v.prev {
		if want == 0 {
			return verifyErr(v.lines, 0, 0, "prev of the first event is %s, not zero", it.ev.Prev)
		}
		return verifyErr(v.lines, int64(want), 0, "prev %s is not the hash of event %d", it.ev.Prev, want-1)
	}
	if err := v.tree.add(int64(want), it.leaf); err != nil {
		return verifyErr(v.lines, int64(want), 0, "Merkle tree: %v", err)
	}
	if v.opts.Rotate != nil && it.ev.Kind == KindKeyRotated {
		vs, err := v.opts.Rotate(&it.ev)
		if err != nil {
			return verifyErr(v.lines, int64(want), 0, "key rotation: %v", err)
		}
		v.epochs = append(v.epochs, epoch{seq: want, verifiers: vs})
	}
	v.prev = it.ev.Hash
	v.n++
	if v.onEvent != nil {
		v.onEvent(&it.ev)
	}
	if v.opts.OnEvent != nil {
		if err := v.opts.OnEvent(it.ev); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint checks a checkpoint line against the events before it.
func (v *verifier) checkpoint(line []byte) error {
	var cl checkpointLine
	if err := strictUnmarshal(line, &cl); err != nil {
		return verifyErr(v.lines, -1, 0, "malformed checkpoint line: %v", err)
	}
	size := cl.Size
	if !sameLine(appendCheckpointLine(nil, &Checkpoint{Size: size, Note: []byte(cl.Note)}), line) {
		return verifyErr(v.lines, -1, size, "checkpoint line is not in canonical form")
	}
	if size == 0 {
		return verifyErr(v.lines, -1, 0, "a checkpoint of size 0 signs nothing")
	}
	cp, err := OpenCheckpoint([]byte(cl.Note), v.verifiersFor(size))
	if err != nil {
		return verifyErr(v.lines, -1, size, "%v", err)
	}
	if cp.Size != size {
		return verifyErr(v.lines, -1, size, "the signed note is for size %d", cp.Size)
	}
	if cp.Origin != v.header.Origin {
		return verifyErr(v.lines, -1, size, "the signed origin %q is not the export's %q", cp.Origin, v.header.Origin)
	}
	if size <= v.covered {
		return verifyErr(v.lines, -1, size, "comes after checkpoint %d: checkpoints must be in increasing size order", v.covered)
	}
	if size > v.n {
		if v.n == 0 {
			return verifyErr(v.lines, 0, size, "signs events 0..%d, but the export has no events: the tail was cut", size-1)
		}
		return verifyErr(v.lines, int64(v.n), size, "signs events 0..%d, but the export ends after event %d: events %d..%d are missing (the tail was cut)", size-1, v.n-1, v.n, size-1)
	}
	root, err := tlog.TreeHash(int64(size), &v.tree)
	if err != nil {
		return verifyErr(v.lines, -1, size, "Merkle tree: %v", err)
	}
	if root != cp.Root {
		since := "the start of the log"
		if v.covered > 0 {
			since = "checkpoint " + strconv.FormatUint(v.covered, 10)
		}
		return verifyErr(v.lines, int64(v.covered), size, "the signed root does not match events %d..%d: the history was rewritten after %s", v.covered, size-1, since)
	}
	v.covered, v.root = size, root
	v.cps++
	if v.onCheckpoint != nil {
		v.onCheckpoint(&cp)
	}
	return nil
}

func (v *verifier) finish() (Summary, error) {
	if v.header == nil {
		return Summary{}, verifyErr(0, -1, 0, "empty export: no header line")
	}
	h := v.header
	if v.n < h.Events {
		return Summary{}, verifyErr(0, int64(v.n), 0, "the header says %d events, but the export holds only %d: events %d..%d are missing", h.Events, v.n, v.n, h.Events-1)
	}
	if v.n > h.Events {
		return Summary{}, verifyErr(0, int64(h.Events), 0, "the header says %d events, but the export has %d", h.Events, v.n)
	}
	if v.cps == 0 {
		return Summary{}, verifyErr(0, -1, 0, "no checkpoint: nothing in the export is signed")
	}
	if uint64(v.cps) != h.Checkpoints {
		return Summary{}, verifyErr(0, -1, 0, "the header says %d checkpoints, but the export has %d", h.Checkpoints, v.cps)
	}
	if err := v.witnessed(); err != nil {
		return Summary{}, err
	}
	return Summary{
		Events:      v.n,
		Checkpoints: v.cps,
		Covered:     v.covered,
		Uncovered:   v.n - v.covered,
		Origin:      h.Origin,
		Root:        v.root,
	}, nil
}

// witnessed checks that the export's tree (all its events, whose chain
// and signed prefix were checked) extends every witnessed checkpoint: a
// tlog consistency proof from the witnessed tree to the export's, made
// from the export's own hashes, must check against the witnessed root.
func (v *verifier) witnessed() error {
	if len(v.opts.Witnessed) == 0 {
		return nil
	}
	head, err := tlog.TreeHash(int64(v.n), &v.tree)
	if err != nil {
		return verifyErr(0, -1, 0, "Merkle tree: %v", err)
	}
	for _, w := range v.opts.Witnessed {
		fail := func(cut bool, format string, args ...any) error {
			return &WitnessError{Witness: w.Witness, Size: w.Size, Events: v.n, CutBack: cut, Reason: fmt.Sprintf(format, args...)}
		}
		switch {
		case w.Origin != v.header.Origin:
			return fail(false, "it saw the log %q, the export is of %q", w.Origin, v.header.Origin)
		case w.Size == 0:
			continue
		case w.Size > v.n:
			return fail(true, "it saw a signed checkpoint of %d events, the export holds only %d: the export was cut back (events %d..%d are missing)", w.Size, v.n, v.n, w.Size-1)
		}
		proof, err := tlog.ProveTree(int64(v.n), int64(w.Size), &v.tree)
		if err != nil {
			return verifyErr(0, -1, 0, "Merkle tree: %v", err)
		}
		if err := tlog.CheckTree(proof, int64(v.n), head, int64(w.Size), w.Root); err != nil {
			return fail(false, "it saw a signed checkpoint of %d events whose root is not the export's at that size: the export's history forks from the witnessed one", w.Size)
		}
	}
	return nil
}

// sameLine reports whether rendered, a line with its newline, is line.
func sameLine(rendered, line []byte) bool {
	return bytes.Equal(rendered[:len(rendered)-1], line)
}

// strictUnmarshal decodes one JSON object, refusing unknown fields and
// anything after it (strictjson's rule, in this package's words).
func strictUnmarshal(data []byte, v any) error {
	err := strictjson.Unmarshal(data, v)
	if errors.Is(err, strictjson.ErrTrailing) {
		return errors.New("data after the object")
	}
	return err
}

// eventItem is an event line decoded and hashed, with what went wrong.
type eventItem struct {
	ev     Event
	seqOK  bool   // ev.Seq was read
	reason string // why the line is malformed or the event invalid
	hashOK bool   // ev.Hash is the SHA-256 of the event's encoding
	leaf   tlog.Hash
}

// decode parses an event line and hashes the event, using buf for the
// encoding; it returns buf for reuse. The payload of it.ev aliases line.
func (it *eventItem) decode(line, buf []byte) []byte {
	*it = eventItem{}
	ns, err := parseEventLine(line, &it.ev, &it.seqOK)
	if err != nil {
		it.reason = "malformed event line: " + err.Error()
		return buf
	}
	if err := checkFields(it.ev.Kind, it.ev.Actor, it.ev.Payload); err != nil {
		it.reason = "invalid event: " + err.Error()
		return buf
	}
	buf = appendEncoding(buf[:0], &it.ev, ns)
	it.hashOK = Hash(sha256.Sum256(buf)) == it.ev.Hash
	it.leaf = tlog.RecordHash(buf)
	return buf
}

// parseEventLine parses an event line in exactly the form appendEventLine
// writes, returning the event time in Unix nanoseconds. Anything else,
// even the same content spelled differently, is an error.
func parseEventLine(line []byte, e *Event, seqOK *bool) (int64, error) {
	p := lineParser{b: line}
	p.literal(eventPrefix)
	e.Seq = p.uint()
	if p.err != nil {
		return 0, p.err
	}
	*seqOK = true
	p.literal(`,"kind":"`)
	e.Kind = string(p.until('"'))
	p.literal(`","actor":`)
	e.Actor = p.jsonString()
	p.literal(`,"round":`)
	e.Round = p.uint()
	p.literal(`,"time":"`)
	ts := p.until('"')
	p.literal(`","payload":`)
	if p.err != nil {
		return 0, p.err
	}
	if len(p.b) < eventLineSuffixLen {
		return 0, errors.New("line ends before its prev and hash")
	}
	e.Payload = p.b[:len(p.b)-eventLineSuffixLen]
	p.b = p.b[len(e.Payload):]
	p.literal(`,"prev":"`)
	p.hash(&e.Prev)
	p.literal(`","hash":"`)
	p.hash(&e.Hash)
	p.literal(`"}`)
	if p.err != nil {
		return 0, p.err
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return 0, fmt.Errorf("time %q is not RFC 3339", truncate(ts, 40))
	}
	ns, err := unixNano(t)
	if err != nil {
		return 0, err
	}
	e.Time = time.Unix(0, ns).UTC()
	var tb [40]byte
	if !bytes.Equal(e.Time.AppendFormat(tb[:0], time.RFC3339Nano), ts) {
		return 0, fmt.Errorf("time %q is not in canonical form (UTC, RFC 3339 with nanoseconds)", truncate(ts, 40))
	}
	return ns, nil
}

// lineParser reads the fields of an event line, remembering the first
// error.
type lineParser struct {
	b   []byte
	err error
}

func (p *lineParser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf(format, args...)
	}
	p.b = nil
}

func (p *lineParser) literal(s string) {
	if p.err != nil {
		return
	}
	if !bytes.HasPrefix(p.b, []byte(s)) {
		p.fail("expected %s at %q", s, truncate(p.b, 30))
		return
	}
	p.b = p.b[len(s):]
}

// uint reads a decimal uint64 without leading zeros.
func (p *lineParser) uint() uint64 {
	if p.err != nil {
		return 0
	}
	i := 0
	for i < len(p.b) && '0' <= p.b[i] && p.b[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(string(p.b[:i]), 10, 64)
	if err != nil || (i > 1 && p.b[0] == '0') {
		p.fail("%q is not a canonical decimal number", truncate(p.b, 24))
		return 0
	}
	p.b = p.b[i:]
	return n
}

// until returns the bytes before the next c, leaving c unread.
func (p *lineParser) until(c byte) []byte {
	if p.err != nil {
		return nil
	}
	i := bytes.IndexByte(p.b, c)
	if i < 0 {
		p.fail("unterminated field at %q", truncate(p.b, 30))
		return nil
	}
	s := p.b[:i]
	p.b = p.b[i:]
	return s
}

// jsonString reads a JSON string spelled as appendJSONString spells it.
func (p *lineParser) jsonString() string {
	if p.err != nil {
		return ""
	}
	if len(p.b) == 0 || p.b[0] != '"' {
		p.fail("expected a string at %q", truncate(p.b, 30))
		return ""
	}
	escaped := false
	end := -1
	for i := 1; i < len(p.b); i++ {
		if c := p.b[i]; c == '\\' {
			escaped = true
			i++
		} else if c == '"' {
			end = i
			break
		}
	}
	if end < 0 {
		p.fail("unterminated string")
		return ""
	}
	quoted := p.b[:end+1]
	var s string
	if !escaped {
		s = string(quoted[1:end])
	} else if err := json.Unmarshal(quoted, &s); err != nil {
		p.fail("bad string %q", truncate(quoted, 30))
		return ""
	}
	if !bytes.Equal(appendJSONString(nil, s), quoted) {
		p.fail("string %q is not in canonical form", truncate(quoted, 30))
		return ""
	}
	p.b = p.b[end+1:]
	return s
}

func (p *lineParser) hash(h *Hash) {
	if p.err != nil {
		return
	}
	if len(p.b) < 64 || !decodeHexHash(h, p.b[:64]) {
		p.fail("expected 64 lowercase hex digits at %q", truncate(p.b, 30))
		return
	}
	p.b = p.b[64:]
}

// lineReader reads newline-terminated lines of at most MaxLineLen bytes.
type lineReader struct {
	r       *bufio.Reader
	long    []byte // a line longer than r's buffer, being assembled
	line    int
	started bool // the input's start was checked for binary data
}

// next returns the next line without its newline, valid until the next
// call, or io.EOF at the end.
func (lr *lineReader) next() ([]byte, error) {
	if !lr.started {
		lr.started = true
		// An export is text. A NUL byte at its start is most often the
		// audit database itself, which would otherwise read as one long
		// or unterminated line.
		if head, _ := lr.r.Peek(512); bytes.IndexByte(head, 0) >= 0 {
			return nil, verifyErr(1, -1, 0, "the file is binary, not an export of %s (an audit database? export it first: fedguard audit export --db FILE --out audit.jsonl)", ExportFormat)
		}
	}
	lr.long = lr.long[:0]
	for {
		b, err := lr.r.ReadSlice('\n')
		switch {
		case err == nil && len(lr.long) == 0:
			lr.line++
			if len(b) > MaxLineLen {
				return nil, verifyErr(lr.line, -1, 0, "line is longer than %d bytes", MaxLineLen)
			}
			return b[:len(b)-1], nil
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
			if len(lr.long)+len(b) > MaxLineLen {
				return nil, verifyErr(lr.line+1, -1, 0, "line is longer than %d bytes", MaxLineLen)
			}
			lr.long = append(lr.long, b...)
			if err == nil {
				lr.line++
				return lr.long[:len(lr.long)-1], nil
			}
		case err == io.EOF:
			if len(b) == 0 && len(lr.long) == 0 {
				return nil, io.EOF
			}
			return nil, verifyErr(lr.line+1, -1, 0, "the last line has no newline: the export is truncated")
		default:
			return nil, fmt.Errorf("audit: verify: read line %d: %w", lr.line+1, err)
		}
	}
}

// memTree holds the stored hashes of the Merkle tree being rebuilt, in
// tlog's storage order: about two per event.
type memTree struct {
	hashes []tlog.Hash
}

var _ tlog.HashReader = (*memTree)(nil)

// ReadHashes implements tlog.HashReader.
func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("stored hash %d is not there yet", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// add stores the hashes that record n with leaf hash leaf completes.
func (m *memTree) add(n int64, leaf tlog.Hash) error {
	if want := tlog.StoredHashIndex(0, n); want != int64(len(m.hashes)) {
		return fmt.Errorf("record %d goes at stored index %d, not %d", n, want, len(m.hashes))
	}
	hs, err := tlog.StoredHashesForRecordHash(n, leaf, m)
	if err != nil {
		return err
	}
	m.hashes = append(m.hashes, hs...)
	return nil
}

// Pipeline sizes: chunks of lines are the unit of work, and a bounded
// number of them is in flight, which bounds memory whatever the input.
const (
	chunkLines = 1024
	chunkBytes = 256 << 10
)

// chunk is a run of consecutive lines, copied out of the reader's buffer.
type chunk struct {
	first int      // line number of lines[0]
	buf   []byte   // the lines' bytes
	lines [][]byte // without newlines
	items []eventItem
	err   error         // the read error after the last line, if any
	done  chan struct{} // closed when items are decoded
}

// pipeline reads lines in one goroutine and decodes event lines in
// workers; chunks arrive on ordered in input order.
type pipeline struct {
	ordered chan *chunk
	work    chan *chunk
	free    chan *chunk
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func startPipeline(r io.Reader, workers int) *pipeline {
	workers = max(workers, 1)
	inFlight := 2*workers + 2
	p := &pipeline{
		ordered: make(chan *chunk, inFlight),
		work:    make(chan *chunk, inFlight),
		free:    make(chan *chunk, inFlight+workers+1),
		quit:    make(chan struct{}),
	}
	p.wg.Add(1 + workers)
	go p.read(&lineReader{r: bufio.NewReaderSize(r, 64<<10)})
	for range workers {
		go p.decode()
	}
	return p
}

// stop ends the pipeline early (or after the end) and waits for its
// goroutines, so that none reads r after Verify returns.
func (p *pipeline) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

func (p *pipeline) get() *chunk {
	select {
	case c := <-p.free:
		c.buf, c.lines, c.err = c.buf[:0], c.lines[:0], nil
		c.done = make(chan struct{})
		return c
	default:
		return &chunk{buf: make([]byte, 0, chunkBytes), done: make(chan struct{})}
	}
}

func (p *pipeline) release(c *chunk) {
	select {
	case p.free <- c:
	default:
	}
}

// read splits r into chunks of lines and hands them out.
func (p *pipeline) read(lr *lineReader) {
	defer p.wg.Done()
	defer close(p.work)
	defer close(p.ordered)
	c := p.get()
	send := func() bool {
		select {
		case p.ordered <- c:
		case <-p.quit:
			return false
		}
		select {
		case p.work <- c:
		case <-p.quit:
			return false
		}
		c = p.get()
		return true
	}
	for {
		line, err := lr.next()
		if err == io.EOF {
			if len(c.lines) > 0 {
				send()
			}
			return
		}
		if err != nil {
			c.err = err
			send()
			return
		}
		if len(c.lines) > 0 && (len(c.lines) == chunkLines || len(c.buf)+len(line) > cap(c.buf)) {
			if !send() {
				return
			}
		}
		if len(c.lines) == 0 {
			c.first = lr.line
		}
		start := len(c.buf)
		c.buf = append(c.buf, line...)
		c.lines = append(c.lines, c.buf[start:len(c.buf):len(c.buf)])
	}
}

// decode parses and hashes the event lines of chunks.
func (p *pipeline) decode() {
	defer p.wg.Done()
	var buf []byte
	for c := range p.work {
		if cap(c.items) < len(c.lines) {
			c.items = make([]eventItem, len(c.lines))
		}
		c.items = c.items[:len(c.lines)]
		for i, line := range c.lines {
			if bytes.HasPrefix(line, []byte(eventPrefix)) {
				buf = c.items[i].decode(line, buf)
			}
		}
		close(c.done)
	}
}
