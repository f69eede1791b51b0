//go:build race

package simulation

// raceEnabled: see norace_test.go.
const raceEnabled = true
