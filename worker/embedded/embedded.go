// Package embedded runs an in-process, in-memory, Kafka-compatible broker
// (franz-go's kfake) for development: `brokers: embedded` or `worker --dev`
// make the worker start one, so a machine without Kafka can run the demo.
//
// It is dev-only. Everything is kept in memory and lost on Close; there is
// one broker and no replication; kfake implements the Kafka protocol for
// client testing, not for production durability or performance.
//
// The worker's librdkafka clients (package transport) work against it
// unchanged: topic creation through the admin API, idempotent produce,
// consumer groups with cooperative-sticky assignment and offset commits are
// exercised by this package's tests. See docs/kafka.md.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configures Start. The zero value is ready to use.
type Options struct {
	// Port is the TCP port to listen on, on 127.0.0.1. Default (0): a free
	// port chosen by the kernel; read it back with Broker.Addr.
	Port int
	// ClusterID is the cluster id reported in metadata. Default: "eddy-embedded".
	ClusterID string
}

// Broker is a running embedded broker. Its methods are safe for concurrent
// use.
type Broker struct {
	c      *kfake.Cluster
	addr   string
	logger *slog.Logger
	closed atomic.Bool
}

// Start starts a single in-memory broker listening on 127.0.0.1 and logs a
// warning that it is dev-only. The broker runs until Close; ctx only bounds
// the start. A nil logger discards logs.
//
// kfake options used, and why:
//   - NumBrokers(1): one broker, so every partition leader and the group
//     coordinator are the address that Addr returns.
//   - Ports: 127.0.0.1 and a free port (or Options.Port).
//   - no AllowAutoTopicCreation: like the real broker configuration the
//     worker expects, topics are created explicitly (transport.Admin).
func Start(ctx context.Context, logger *slog.Logger, opts Options) (*Broker, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("embedded: Port: must be 0..65535, got %d", opts.Port)
	}
	clusterID := opts.ClusterID
	if clusterID == "" {
		clusterID = "eddy-embedded"
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(opts.Port),
		kfake.ClusterID(clusterID),
		kfake.WithLogger(kfakeLogger{logger}),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded: start broker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, errors.New("embedded: broker reports no listen address")
	}
	b := &Broker{c: c, addr: addrs[0], logger: logger}
	logger.Warn("embedded Kafka broker started: DEV ONLY, in-memory, all data is lost when the worker stops",
		"addr", b.addr, "cluster_id", clusterID)
	return b, nil
}

// Addr returns the broker's bootstrap address, "127.0.0.1:PORT".
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and drops all its data. It is idempotent.
func (b *Broker) Close() {
	if !b.closed.CompareAndSwap(false, true) {
		return
	}
	b.c.Close()
	b.logger.Info("embedded Kafka broker stopped", "addr", b.addr)
}

// kfakeLogger adapts slog to kfake.Logger. kfake logs every request at
// info, so its info becomes slog debug and its debug goes below that.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo:
		sl = slog.LevelDebug
	default:
		sl = slog.LevelDebug - 4
	}
	ctx := context.Background()
	if !k.l.Enabled(ctx, sl) {
		return
	}
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	k.l.Log(ctx, sl, msg, "component", "kfake")
}
