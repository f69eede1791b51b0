// Package doccheck holds tests that keep the repository's documents true to
// the code: a document that names a test as the evidence for a claim (the
// threat model does, control by control) must not outlive that test.
package doccheck
