package app

import (
	"strings"
	"sync/atomic"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

// partitioners is how each declared topic places keys (topics[].partitioner,
// validated by config).
func partitioners(cfg *config.Config) transport.TopicPartitioners {
	out := make(transport.TopicPartitioners, len(cfg.Topics))
	for _, t := range cfg.Topics {
		p, err := transport.ParsePartitioner(t.Partitioner)
		if err != nil {
			p = transport.Murmur2Random // unreachable: Validate refused it
		}
		out[t.Name] = transport.TopicPartitioning{Partitioner: p, Partitions: int32(t.Partitions)}
	}
	return out
}

// keyPartition is the partition of key in topic under the topic's
// partitioner (a table's source topic for table reads).
func (a *App) keyPartition(topic string, key []byte, n int32) int32 {
	p, _ := a.partitioners[topic].Partitioner.KeyPartition(key, n)
	return p
}

// routeCheck counts the consumed records of one source topic whose key the
// topic's declared partitioner puts elsewhere, and warns once.
type routeCheck struct {
	topic      string
	part       transport.TopicPartitioning
	misrouted  *atomic.Uint64
	warned     bool // poll goroutine only
	onMismatch func(rc *routeCheck, key []byte, got, want int32)
}

// routeChecks are the checks of the source topics, read on the poll
// goroutine only.
type routeChecks map[string]*routeCheck

// newRouteChecks makes a check per source topic, each counter at 0.
func (a *App) newRouteChecks() routeChecks {
	out := routeChecks{}
	for _, topic := range a.sourceTopics() {
		out[topic] = &routeCheck{topic: topic, part: a.partitioners[topic], misrouted: a.mon.Misrouted(topic), onMismatch: a.warnMisrouted}
	}
	return out
}

// check takes one consumed record: a key that the topic's partitioner
// hashes to another partition is counted, and the first is logged.
func (rc routeChecks) check(msg *transport.Message) {
	c := rc[msg.Topic]
	if c == nil {
		return
	}
	want, ok := c.part.Partitioner.KeyPartition(msg.Key, c.part.Partitions)
	if !ok || want == msg.Partition {
		return
	}
	c.misrouted.Add(1)
	if !c.warned {
		c.warned = true
		c.onMismatch(c, msg.Key, msg.Partition, want)
	}
}

// fittingPartitioners are the partitioners that put key on partition part
// of n, other than the declared one.
func fittingPartitioners(declared transport.Partitioner, key []byte, part, n int32) []string {
	var out []string
	for _, p := range transport.Partitioners {
		if got, ok := p.KeyPartition(key, n); ok && got == part && p != declared {
			out = append(out, p.String())
		}
	}
	return out
}

// warnMisrouted logs, once per topic, the first record whose key is not
// where the declared partitioner puts it, naming the partitioners that
// would fit it (docs/configuration.md, topics[].partitioner).
func (a *App) warnMisrouted(c *routeCheck, key []byte, got, want int32) {
	fit := fittingPartitioners(c.part.Partitioner, key, got, c.part.Partitions)
	hint := "no known partitioner fits it (records written to explicit partitions, or by a custom partitioner?)"
	if len(fit) > 0 {
		hint = "it fits partitioner " + strings.Join(fit, " or ") + ": declare it as topics[].partitioner"
	}
	a.log.Warn("records are not on the partition their key hashes to under the topic's partitioner: table reads by key will miss them; counted in eddy_misrouted_records_total; this is logged once",
		"topic", c.topic, "partitioner", c.part.Partitioner.String(), "key", shortKey(key), "partition", got,
		"hashed_partition", want, "hint", hint)
}

// shortKey is at most 64 bytes of a key, for a log line (the handler
// quotes what needs it).
func shortKey(key []byte) string {
	if len(key) > 64 {
		return string(key[:64]) + "..."
	}
	return string(key)
}
