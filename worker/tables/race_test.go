//go:build race

package tables_test

// raceFactor stretches time budgets under the race detector.
const raceFactor = 2
