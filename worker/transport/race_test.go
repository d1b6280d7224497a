//go:build race

package transport_test

// raceFactor stretches time budgets under the race detector.
const raceFactor = 2
