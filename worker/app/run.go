package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/worker/transport"
)

// stopBudget bounds the closing steps that take no deadline of their own;
// the worker's shutdown_timeout bounds the whole stop anyway.
const stopBudget = 10 * time.Second

// Run starts the services, moves to RUNNING, blocks until ctx ends, then
// stops them. It returns nil after a clean stop. Run may be called once.
//
// Start order (DESIGN.md §1): monitor (created with the app), Kafka admin
// (reach the brokers within kafka.reach_timeout, create declared topics),
// producer, consumer (joins the group). Tables and agents join this list as
// they are built.
//
// Stop order, the reverse:
//  1. state STOPPING (health NOT_SERVING);
//  2. consumer: revoke the assignment (committing what is done) and leave
//     the group;
//  3. producer: flush outstanding records, then close;
//  4. admin client;
//  5. state STOPPED.
func (a *App) Run(ctx context.Context) (err error) {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("app: Run called twice")
	}
	defer a.setState(StateStopped)

	errLog := transport.NewErrorLog(0)
	a.mu.Lock()
	a.kafkaErrs = func() []KafkaError { return recentErrors(errLog) }
	a.mu.Unlock()
	tcfg := a.transportConfig()
	topts := []transport.Option{transport.WithLogger(a.log), transport.WithErrorLog(errLog)}

	admin, err := transport.NewAdmin(tcfg, topts...)
	if err != nil {
		return err
	}
	defer admin.Close()
	start := time.Now()
	if err := admin.Ping(ctx); err != nil {
		return err
	}
	a.log.Info("kafka reachable", "brokers", a.opts.Bootstrap, "took", time.Since(start).Round(time.Millisecond))
	if err := admin.EnsureTopics(ctx, a.topicSpecs()); err != nil {
		return fmt.Errorf("declared topics: %w", err)
	}

	producer, err := transport.NewProducer(tcfg, topts...)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), stopBudget)
		defer cancel()
		err = errors.Join(err, producer.Close(cctx))
	}()

	g, gctx := errgroup.WithContext(ctx)
	if topics := a.sourceTopics(); len(topics) > 0 {
		consumer, err := transport.NewConsumer(tcfg, topics, &consumerHandler{a: a}, topts...)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.consumer = consumer
		a.mu.Unlock()
		g.Go(func() error { return consumer.Run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-producer.Fatal():
			return fmt.Errorf("producer failed: %w", producer.Err())
		}
		return nil
	})

	a.casState(StateRunning, StateStarting, StateRecovering)
	<-gctx.Done()
	a.setState(StateStopping)
	return g.Wait()
}

// transportConfig derives the Kafka client settings from the app file.
func (a *App) transportConfig() transport.Config {
	c := transport.DefaultConfig()
	c.Brokers = a.opts.Bootstrap
	c.GroupID = a.cfg.App
	// Other workers find this one's control plane in the group description.
	c.ClientID = "eddy|" + a.cfg.WorkerID + "|" + a.opts.GRPCAddr
	if a.cfg.Kafka.StaticMembership {
		c.GroupInstanceID = a.cfg.WorkerID
	}
	c.SessionTimeout = a.cfg.Kafka.SessionTimeout.D()
	if c.MaxPollInterval < c.SessionTimeout {
		c.MaxPollInterval = c.SessionTimeout
	}
	c.ReachTimeout = a.cfg.Kafka.ReachTimeout.D()
	c.Overrides = a.cfg.Kafka.Properties
	return c
}

func (a *App) topicSpecs() []transport.TopicSpec {
	var specs []transport.TopicSpec
	for _, t := range a.cfg.Topics {
		specs = append(specs, transport.TopicSpec{
			Name:              t.Name,
			Partitions:        t.Partitions,
			ReplicationFactor: a.cfg.Kafka.ReplicationFactor,
		})
	}
	return specs
}

// sourceTopics are the topics of all agents, each once, in a stable order.
func (a *App) sourceTopics() []string {
	var out []string
	for _, ag := range a.cfg.Agents {
		for _, t := range ag.Topics {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

func recentErrors(l *transport.ErrorLog) []KafkaError {
	recent := l.Recent()
	out := make([]KafkaError, 0, len(recent))
	for i := len(recent) - 1; i >= 0; i-- { // newest first
		e := recent[i]
		out = append(out, KafkaError{At: e.Time, Code: e.CodeName, Message: e.Message, Fatal: e.Fatal})
	}
	return out
}

// consumerHandler receives the consumer's callbacks on its poll goroutine.
type consumerHandler struct{ a *App }

// Assigned records the partitions and pauses them: no agent instance is
// connected to receive their events yet, and a partition without an
// instance stays paused so nothing is consumed (or committed) for it.
func (h *consumerHandler) Assigned(parts []kafka.TopicPartition) {
	a := h.a
	a.mu.Lock()
	for _, tp := range parts {
		a.assigned[TopicPartition{Topic: *tp.Topic, Partition: tp.Partition}] = true
	}
	c := a.consumer
	a.mu.Unlock()
	if err := c.Pause(parts); err != nil {
		a.log.Error("pause partitions without an agent instance", "err", err)
	}
}

// Revoked forgets the partitions. Nothing was delivered for them, so there
// is nothing to commit.
func (h *consumerHandler) Revoked(parts []kafka.TopicPartition) { h.forget(parts) }

// Lost forgets the partitions; they may already belong to another worker.
func (h *consumerHandler) Lost(parts []kafka.TopicPartition) { h.forget(parts) }

func (h *consumerHandler) forget(parts []kafka.TopicPartition) {
	h.a.mu.Lock()
	defer h.a.mu.Unlock()
	for _, tp := range parts {
		delete(h.a.assigned, TopicPartition{Topic: *tp.Topic, Partition: tp.Partition})
	}
}

// Message should not happen while every partition is paused. The record is
// not committed, so it is consumed again later: nothing is lost.
func (h *consumerHandler) Message(msg *kafka.Message) {
	h.a.log.Debug("record for a partition without an agent instance; not committed",
		"topic", *msg.TopicPartition.Topic, "partition", msg.TopicPartition.Partition,
		"offset", int64(msg.TopicPartition.Offset))
}
