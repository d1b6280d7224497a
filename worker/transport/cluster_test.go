package transport_test

import (
	"context"
	"testing"
)

// TestBrokerCount: the test cluster is one broker.
func TestBrokerCount(t *testing.T) {
	a := newAdmin(t, testConfig(t))
	n, err := a.BrokerCount(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("BrokerCount = %d, %v; want 1", n, err)
	}
}
