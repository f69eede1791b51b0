//go:build race

package secagg

// raceEnabled: see protocol_norace_test.go.
const raceEnabled = true
