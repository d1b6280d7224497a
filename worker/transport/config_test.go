package transport_test

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

func TestConfigValidate(t *testing.T) {
	ok := transport.DefaultConfig()
	ok.Brokers = "127.0.0.1:9092,kafka-1:9093"
	tests := []struct {
		name    string
		mod     func(*transport.Config)
		wantErr string // "" for valid
	}{
		{"defaults", func(*transport.Config) {}, ""},
		{"zero durations mean defaults", func(c *transport.Config) {
			c.SessionTimeout, c.MaxPollInterval, c.ReachTimeout, c.Linger = 0, 0, 0, 0
		}, ""},
		{"no brokers", func(c *transport.Config) { c.Brokers = " " }, "Brokers: required"},
		{"broker without port", func(c *transport.Config) { c.Brokers = "localhost" }, `Brokers: "localhost" is not host:port`},
		{"bad port", func(c *transport.Config) { c.Brokers = "a:1,b:0" }, `Brokers: "b:0": port must be 1..65535`},
		{"negative reach timeout", func(c *transport.Config) { c.ReachTimeout = -time.Second }, "ReachTimeout: must not be negative"},
		{"tiny session timeout", func(c *transport.Config) { c.SessionTimeout = time.Millisecond }, "SessionTimeout: must be at least 1s"},
		{"poll interval below session", func(c *transport.Config) {
			c.SessionTimeout, c.MaxPollInterval = time.Minute, 30*time.Second
		}, "MaxPollInterval: 30s is shorter than SessionTimeout 1m0s"},
		{"bad isolation", func(c *transport.Config) { c.IsolationLevel = "dirty" }, `IsolationLevel: "dirty"`},
		{"read committed", func(c *transport.Config) { c.IsolationLevel = transport.ReadCommitted }, ""},
		{"override ok", func(c *transport.Config) { c.Overrides = map[string]string{"compression.type": "lz4"} }, ""},
		{"override go.*", func(c *transport.Config) {
			c.Overrides = map[string]string{"go.events.channel.enable": "true"}
		}, `Overrides["go.events.channel.enable"]: go.* properties`},
		{"override auto commit", func(c *transport.Config) {
			c.Overrides = map[string]string{"enable.auto.commit": "true"}
		}, `Overrides["enable.auto.commit"]: may not be overridden`},
		{"override strategy", func(c *transport.Config) {
			c.Overrides = map[string]string{"partition.assignment.strategy": "range"}
		}, `Overrides["partition.assignment.strategy"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewClientsRejectInvalidConfig(t *testing.T) {
	var bad transport.Config // no brokers
	if _, err := transport.NewAdmin(bad); err == nil {
		t.Error("NewAdmin with empty config: got nil error")
	}
	if _, err := transport.NewProducer(bad); err == nil {
		t.Error("NewProducer with empty config: got nil error")
	}
	good := transport.DefaultConfig()
	good.Brokers = "127.0.0.1:9092"
	if _, err := transport.NewConsumer(good, []string{"t"}, newRecorder()); err == nil || !strings.Contains(err.Error(), "GroupID") {
		t.Errorf("NewConsumer without GroupID: got %v, want an error naming GroupID", err)
	}
	good.TransactionalID = "tx"
	good.MessageTimeout = time.Minute
	good.TransactionTimeout = 10 * time.Second
	if _, err := transport.NewProducer(good); err == nil || !strings.Contains(err.Error(), "TransactionTimeout") {
		t.Errorf("NewProducer with MessageTimeout > TransactionTimeout: got %v, want an error naming TransactionTimeout", err)
	}
}
