//go:build race

package tcp

// raceEnabled: sync.Pool drops items at random under the race detector.
const raceEnabled = true
