//go:build race

package testutil

// RaceFactor stretches time budgets under the race detector: 2 with -race,
// else 1.
const RaceFactor = 2
