// Package report builds the provenance report of a federation's audit log
// (package audit): per round, which data sources shaped the model, who was
// left out and why, and whether the record it is read from is intact.
//
// It reads events only, as an export holds them ([Build]), so anyone with
// an export can rebuild it, and writes it as Markdown
// ([Report.WriteMarkdown]) or as a self-contained HTML page
// ([Report.WriteHTML]). The log itself (storage, checkpoints, export and
// verification) is package audit; this package never writes to it.
package report
