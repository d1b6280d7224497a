package app

import (
	"log/slog"
	"testing"

	"github.com/eddy-streams/eddy/worker/config"
)

func TestParseClientID(t *testing.T) {
	tests := []struct {
		in       string
		id, addr string
		ok       bool
	}{
		{"eddy|w1|127.0.0.1:7000", "w1", "127.0.0.1:7000", true},
		{"eddy|w|[::1]:1|x", "w", "[::1]:1|x", true},
		{"rdkafka", "", "", false},
		{"other|w|a", "", "", false},
	}
	for _, tt := range tests {
		id, addr, ok := ParseClientID(tt.in)
		if id != tt.id || addr != tt.addr || ok != tt.ok {
			t.Errorf("ParseClientID(%q) = %q, %q, %v; want %q, %q, %v", tt.in, id, addr, ok, tt.id, tt.addr, tt.ok)
		}
	}
}

// TestClientIDAdvertises checks that the client.id other workers find this
// one by carries the advertised address, not a wildcard bound one.
func TestClientIDAdvertises(t *testing.T) {
	tests := []struct {
		name             string
		bound, advertise string
		want             string // the address in client.id
	}{
		{"advertised", "[::]:40000", "w1.internal:40000", "w1.internal:40000"},
		{"nothing advertised", "127.0.0.1:6066", "", "127.0.0.1:6066"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.DefaultConfig()
			cfg.WorkerID = "w-1"
			a := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), GRPCAddr: tt.bound, Advertise: tt.advertise})
			tc, err := a.transportConfig(func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			id := tc.ClientID
			workerID, addr, ok := ParseClientID(id)
			if !ok || workerID != "w-1" || addr != tt.want {
				t.Errorf("client.id %q: got worker %q, address %q; want w-1, %q", id, workerID, addr, tt.want)
			}
		})
	}
}
