package agents_test

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/worker/monitor"
)

// partSnap is the monitor's snapshot of in[0].
func partSnap(t *testing.T, m *monitor.Monitor) monitor.PartitionSnapshot {
	t.Helper()
	for _, p := range m.Snapshot().Partitions {
		if p.Topic == "in" && p.Partition == 0 {
			return p
		}
	}
	t.Fatal("no snapshot of in[0]")
	return monitor.PartitionSnapshot{}
}

// An event is counted processed (eddy_events_processed_total, ListAgents'
// acked) once it is done with an OK result, or dead-lettered, never both:
// an OK result whose output Kafka refuses for good is only dead-lettered;
// one whose output is produced again after a retriable failure is
// processed once, and neither is a RETRY (eddy_events_retried_total counts
// the agent's RETRY results; the worker's produce retries are
// eddy_produce_retries_total).
func TestProcessedCountedOnceWhenDone(t *testing.T) {
	cfg := keyConfig()
	cfg.Monitor = monitor.New("app", "", true)
	h := start(t, cfg)
	h.m.Assigned(tps("in", 0))
	h.send(msg("in", 0, 0, "a", "v0"))
	h.send(msg("in", 0, 1, "b", "v1"))
	h.send(msg("in", 0, 2, "c", "v2"))
	h.settle()
	a := h.open("count", "a", 100)
	a.reply(a.nextBatch(), ok(0, out("x")), ok(1, out("y")), ok(2))
	h.prod.waitCalls(t, 2)
	h.settle()
	if got := partSnap(t, cfg.Monitor); got.Processed != 1 {
		t.Errorf("processed %d before Kafka answered, want 1 (only the event without outputs)", got.Processed)
	}
	h.prod.answer(t, 0, kafkaErr(kafka.ErrMsgSizeTooLarge)) // offset 0: dead-lettered
	h.prod.answer(t, 1, kafkaErr(kafka.ErrMsgTimedOut))     // offset 1: produced again
	h.prod.waitCalls(t, 4)
	h.prod.answer(t, 2, nil)
	h.prod.answer(t, 3, nil)
	expectCommitted(t, h, a, 0, 3)
	got := partSnap(t, cfg.Monitor)
	if got.Received != 3 || got.Processed != 2 || got.DeadLettered != 1 || got.Retried != 0 {
		t.Errorf("received %d processed %d dead-lettered %d retried %d; want 3, 2, 1, 0 (processed + dead-lettered = received)",
			got.Received, got.Processed, got.DeadLettered, got.Retried)
	}
	if info := h.info("count"); info.Acked != 2 || info.DeadLettered != 1 || info.Retried != 0 || info.ProduceRetries != 1 {
		t.Errorf("agent info acked %d dead-lettered %d retried %d produce retries %d; want 2, 1, 0, 1",
			info.Acked, info.DeadLettered, info.Retried, info.ProduceRetries)
	}
}
