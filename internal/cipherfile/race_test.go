//go:build race

package cipherfile

// raceEnabled: the race detector makes sync.Pool drop buffers at random, so
// allocation-counting tests cannot hold under -race.
const raceEnabled = true
