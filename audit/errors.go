package audit

import "errors"

// Sentinel errors. They are wrapped with context; test with errors.Is.
var (
	// ErrCorrupt reports a log database that contradicts itself: a head
	// that does not describe the stored events, a broken chain link, a
	// missing tree hash. It is never the result of a crash, since every
	// append is one transaction; it means the file was damaged or edited.
	ErrCorrupt = errors.New("audit: database is corrupt")

	// ErrClosed is returned by every method of a Log after Close, and by
	// appends that Close rejected.
	ErrClosed = errors.New("audit: log is closed")

	// ErrNotCovered reports a proof requested for an event that no
	// checkpoint covers yet; it can be proved after the next Checkpoint.
	ErrNotCovered = errors.New("audit: event not covered by a checkpoint")

	// ErrReadOnly is returned by Append and Checkpoint on a log opened
	// with Options.ReadOnly.
	ErrReadOnly = errors.New("audit: log is opened read-only")
)
