//go:build !race

package simulation

// raceEnabled says whether the race detector is on. It makes the
// simulator's float64 training loops five to seven times slower, and a
// data race in Run (its workers, its shared data) shows in the first
// rounds as surely as in the thirtieth: the MNIST runs that check numbers
// (TestPresetMatchesAuthorsCode, TestRunMNIST) run in full without it,
// and `make test` runs them so after its -race pass.
const raceEnabled = false
