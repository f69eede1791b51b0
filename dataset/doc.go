// Package dataset reads, checks and prepares the tabular data a hospital trains on.
//
// Nothing in this package sends data anywhere: a [Table] stays at the hospital. The
// only aggregate meant to leave it is [Stats] (count, per-feature sums and sums of
// squares), which the coordinator merges into a federation-wide [Scaling] so that
// every party standardizes its features identically.
//
// # Input format
//
// [ReadCSV] takes RFC 4180 CSV (encoding/csv) with a header row. One column is the
// label (any non-empty UTF-8 text without control characters); the feature columns
// are chosen by [ReadOptions] and must hold finite decimal numbers. Missing values
// (empty cells) are refused for now. Input is bounded: [MaxBytes] in total,
// [MaxLineBytes] per line and [ReadOptions].MaxRows rows; errors name the line
// (the header is line 1), the column and the offending value, and wrap the sentinel
// errors such as [ErrNotNumber] so callers can classify them with errors.Is.
//
// # Simulation helpers
//
// [Table.Split] (stratified hold-out) and [Table.Partition] (label-skewed split among
// parties, for non-IID experiments) take a seeded *rand.Rand from math/rand/v2 so
// that experiments are reproducible; neither is needed by a real hospital.
package dataset
