//go:build !race

package cipherfile

const raceEnabled = false
