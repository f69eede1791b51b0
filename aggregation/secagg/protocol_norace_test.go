//go:build !race

package secagg

// raceEnabled says whether the race detector is on. It makes the pure-Go
// parts of the cryptography (all of it with -tags purego) tens of times
// slower, so the exhaustive dropout tests then run a deterministic sample
// of their patterns: data races do not depend on the dropout pattern,
// and the runs without -race cover every pattern.
const raceEnabled = false
