//go:build race

package offline

// raceEnabled: the race detector slows every round of the cut-point sweep
// about tenfold; under it the sweep samples each block.
const raceEnabled = true
