package tables_test

import (
	"testing"

	"github.com/eddy-streams/eddy/worker/tables"
)

// The vectors of Apache Kafka's UtilsTest.testMurmur2.
func TestMurmur2JavaVectors(t *testing.T) {
	tests := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tt := range tests {
		if got := tables.Murmur2([]byte(tt.in)); got != tt.want {
			t.Errorf("Murmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if got := tables.KeyPartition([]byte("foobar"), 50); got != 16 {
		t.Errorf("KeyPartition(foobar, 50) = %d, want 16", got)
	}
}
