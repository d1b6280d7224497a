package tables_test

import (
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
)

// Apache Kafka's UtilsTest vector; the hash itself is tested in
// worker/transport.
func TestKeyPartition(t *testing.T) {
	if got := tables.KeyPartition([]byte("foobar"), 50); got != 16 {
		t.Errorf("KeyPartition(foobar, 50) = %d, want 16", got)
	}
}
