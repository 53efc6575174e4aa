//go:build race

package balancer

// qualityKeys is the number of random keys the quality tests map. The race
// detector makes every atomic load several times slower, so it gets 200,000
// instead of 1,000,000; keys come from fixed seeds, so results stay
// deterministic either way.
const qualityKeys = 200_000
