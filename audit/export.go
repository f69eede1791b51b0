package audit

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// ExportFormat names the export format in its header line. A change to any
// line's layout takes a new name; Verify refuses names it does not know.
const ExportFormat = "fedguard-audit-export-v1"

// Export writes the log as JSON lines (see "Export format" in the package
// documentation): a header, every event committed when Export starts, and
// the checkpoints stored then. Appends may continue meanwhile; the export
// is a consistent snapshot of the moment it started.
func (l *Log) Export(w io.Writer) error {
	if l.isClosed() {
		return ErrClosed
	}
	// The checkpoints first: none covers more than the head read after.
	stored, err := l.store.Checkpoints()
	var cps []Checkpoint
	for _, sc := range stored {
		if err != nil {
			break
		}
		var cp Checkpoint
		if cp, err = parseStoredCheckpoint(sc.Note); err != nil {
			err = corruptf("checkpoint %x: %v", u64Key(sc.Size), err)
		}
		cps = append(cps, cp)
	}
	var size uint64
	if err == nil {
		size, _, err = l.store.Head()
	}
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := appendHeaderLine(nil, l.origin, size, len(cps))
	if _, err := bw.Write(buf); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	var writeErr error
	err = l.events(0, size, func(e Event) error {
		buf = appendEventLine(buf[:0], &e)
		_, writeErr = bw.Write(buf)
		return writeErr
	})
	if err != nil {
		if err == writeErr {
			return fmt.Errorf("audit: export: %w", err)
		}
		return err
	}
	for i := range cps {
		buf = appendCheckpointLine(buf[:0], &cps[i])
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

// The fixed parts of export lines. Verify matches them byte for byte.
const (
	headerPrefix     = `{"type":"header","format":"`
	eventPrefix      = `{"type":"event","seq":`
	checkpointPrefix = `{"type":"checkpoint","size":`
)

// appendHeaderLine appends the export's header line.
func appendHeaderLine(b []byte, origin string, events uint64, checkpoints int) []byte {
	b = append(b, headerPrefix+ExportFormat+`","origin":`...)
	b = appendJSONString(b, origin)
	b = append(b, `,"events":`...)
	b = strconv.AppendUint(b, events, 10)
	b = append(b, `,"checkpoints":`...)
	b = strconv.AppendInt(b, int64(checkpoints), 10)
	return append(b, "}\n"...)
}

// appendEventLine appends e's export line. The payload is copied verbatim:
// it is already in its stored, compact form.
func appendEventLine(b []byte, e *Event) []byte {
	b = append(b, eventPrefix...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, e.Kind)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, e.Actor)
	b = append(b, `,"round":`...)
	b = strconv.AppendUint(b, e.Round, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","payload":`...)
	b = append(b, e.Payload...)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, e.Prev[:])
	b = append(b, `","hash":"`...)
	b = hex.AppendEncode(b, e.Hash[:])
	return append(b, "\"}\n"...)
}

// eventLineSuffixLen is the length of an event line after its payload:
// `,"prev":"<64 hex>","hash":"<64 hex>"}`.
const eventLineSuffixLen = len(`,"prev":"`) + 64 + len(`","hash":"`) + 64 + len(`"}`)

// appendCheckpointLine appends c's export line.
func appendCheckpointLine(b []byte, c *Checkpoint) []byte {
	b = append(b, checkpointPrefix...)
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, `,"note":`...)
	b = appendJSONString(b, string(c.Note))
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it (with its default HTML escaping), so that an export line has
// one spelling whichever JSON tool made it. s is valid UTF-8 wherever this
// package calls it; invalid bytes become \ufffd, as in encoding/json.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
