package app

import (
	"strings"
	"testing"
)

func TestReplicationWarning(t *testing.T) {
	tests := []struct {
		brokers, factor int
		want            string // "" for no warning
	}{
		{1, 1, ""},
		{0, 1, ""}, // unknown
		{2, 1, "replication_factor 1 on a cluster of 2 brokers"},
		{3, 1, "set kafka.replication_factor to 3 and min.insync.replicas to 2"},
		{3, 2, "replication_factor 2 on a cluster of 3 brokers"},
		{3, 3, ""},
		{5, 3, ""},
		{5, 1, "set kafka.replication_factor to 3"},
	}
	for _, tt := range tests {
		got := replicationWarning(tt.brokers, tt.factor)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("replicationWarning(%d brokers, factor %d) = %q, want %q", tt.brokers, tt.factor, got, tt.want)
		}
	}
}
