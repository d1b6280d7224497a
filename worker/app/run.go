package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/eddy-streams/eddy/worker/agents"
	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/monitor"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// stopBudget bounds the closing steps that take no deadline of their own;
// the worker's shutdown_timeout bounds the whole stop anyway.
const stopBudget = 10 * time.Second

// Run starts the services, moves to RUNNING, blocks until ctx ends, then
// stops them. It returns nil after a clean stop. Run may be called once.
//
// Start order (docs/architecture.md): monitor (created with the app), Kafka admin
// (reach the brokers within kafka.reach_timeout, create declared topics,
// dead-letter and changelog topics), producer, table restorer (with the
// worker's one changelog reader, which every restore and standby shares;
// its consumer starts with the first restore), agents manager, consumer
// (joins the group). Table partitions are restored by
// the manager as their source partitions are assigned.
//
// Standby replicas (tables with standby_replicas) are placed from the
// group description by a loop of their own, started with the consumer;
// another loop checks the source topics' partition counts every
// kafka.metadata_refresh (partitions.go).
//
// Stop order, the reverse:
//  1. state STOPPING (health NOT_SERVING);
//  2. consumer: revoke the assignment (committing what is done) and leave
//     the group; the standby placement and partition count loops end;
//  3. agents manager;
//  4. standby replicas: each store closed, checkpointed;
//  5. changelog reader (restores and standbys have ended);
//  6. producer: flush outstanding records, then close;
//  7. admin client;
//  8. state STOPPED.
func (a *App) Run(ctx context.Context) (err error) {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("app: Run called twice")
	}
	defer a.setState(StateStopped)

	errLog := a.newErrorLog()
	a.mu.Lock()
	a.kafkaErrs = func() []KafkaError { return recentErrors(errLog) }
	a.mu.Unlock()
	tcfg, err := a.transportConfig(os.Getenv)
	if err != nil {
		return err
	}
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
	if n, err := admin.BrokerCount(ctx); err != nil {
		a.log.Warn("cannot count the cluster's brokers to check kafka.replication_factor", "err", err)
	} else if w := replicationWarning(n, a.cfg.Kafka.ReplicationFactor); w != "" {
		a.log.Warn(w, "cluster_brokers", n, "replication_factor", a.cfg.Kafka.ReplicationFactor)
		a.mu.Lock()
		a.startWarns = append(a.startWarns, w)
		a.mu.Unlock()
	}
	if err := admin.EnsureTopics(ctx, a.topicSpecs()); err != nil {
		return fmt.Errorf("declared topics: %w", err)
	}

	pcfg := tcfg
	eos := a.cfg.ProcessingGuarantee == config.ExactlyOnce
	if eos {
		if err := a.checkIdentity(ctx, admin); err != nil {
			return err
		}
		// One transactional producer per worker, its id stable across
		// restarts: a successor's InitTransactions aborts what a crashed
		// predecessor left open (docs/kafka.md#exactly-once).
		pcfg.TransactionalID = a.transactionalID()
		pcfg.TransactionTimeout = a.cfg.EffectiveTransactionTimeout()
		a.log.Info("exactly-once: initialising transactions", "transactional_id", pcfg.TransactionalID,
			"transaction_timeout", pcfg.TransactionTimeout, "commit_interval", a.cfg.EffectiveCommitInterval())
	}
	producer, err := transport.NewProducer(pcfg, topts...)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), stopBudget)
		defer cancel()
		err = errors.Join(err, producer.Close(cctx))
	}()
	// workerctl send writes through a producer of its own under
	// exactly_once: a record sent by hand is no event's effect, and inside
	// the worker's transaction an abort would discard it after Send had
	// reported its offset.
	sendProducer := producer
	if eos {
		sendProducer, err = transport.NewProducer(tcfg, topts...)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), stopBudget)
			defer cancel()
			err = errors.Join(err, sendProducer.Close(cctx))
		}()
	}

	// One changelog reader for every restore and standby, asking the
	// admin client for topic ids and watermarks (docs/tables.md#recovery).
	reader, err := transport.NewChangelogReader(tcfg, admin, topts...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reader.Close()) }()
	restorer, err := tables.NewRestorer(tables.Config{
		App: a.cfg.App, Dir: a.cfg.DataDir, Kafka: tcfg, Logger: a.log, Errors: errLog,
		Reader: tables.TransportReader(reader), OnProgress: a.onRestoreProgress,
	})
	if err != nil {
		return err
	}

	// Standby replicas: closed after the manager stops (defers run in
	// reverse), so a takeover under way still finds its replica.
	var sbs *tables.Standbys
	mcfg := agents.Config{
		App: a.cfg.App, Agents: a.cfg.Agents, Outputs: a.outputTopics(), Partitioners: a.partitioners, Logger: a.log,
		Monitor: a.mon, StallTimeout: a.cfg.Monitor.StallTimeout.D(),
		CommitInterval: a.cfg.EffectiveCommitInterval(), CommitEvery: a.cfg.Commit.Every,
		ExactlyOnce:    eos,
		RevokeTimeout:  a.cfg.Commit.RevokeTimeout.D(),
		MessageTimeout: a.cfg.EffectiveMessageTimeout(),
		// A pause of a third of the session timeout is suspect: losing the
		// partitions takes at least the session timeout less one heartbeat
		// interval (at most a third).
		FreezeGap:     a.cfg.Kafka.SessionTimeout.D() / 3,
		InflightBytes: int64(a.cfg.Limits.InflightBytes),
		Restorer:      restorer,
		Windows:       map[string]tables.Window{},
		// Table partition p is changelog partition p: a source partition
		// beyond the count the app started with has none.
		SourcePartitions: a.sourcePartitions(),
	}
	for _, t := range a.cfg.Tables {
		if w := t.Window; w != nil {
			win, err := tables.NewWindow(w.Type, w.Size.D(), w.Step.D(), w.Expires.D())
			if err != nil {
				return fmt.Errorf("tables: %q: %w", t.Name, err)
			}
			mcfg.Windows[t.Name] = win
		}
	}
	if a.wantsStandbys() {
		sbs = tables.NewStandbys(restorer, a.log, 0)
		defer func() { err = errors.Join(err, sbs.Close()) }()
		mcfg.Standbys = sbs
	}
	mgr := agents.New(mcfg, producer)
	g, gctx := errgroup.WithContext(ctx)
	if topics := a.sourceTopics(); len(topics) > 0 {
		consumer, err := transport.NewConsumer(tcfg, topics, &consumerHandler{a: a, mgr: mgr, routes: a.newRouteChecks()}, topts...)
		if err != nil {
			return err
		}
		mgr.Attach(consumer)
		g.Go(func() error { return consumer.Run(gctx) })
	}
	// The manager outlives the consumer: the consumer's final revocations
	// drain in-flight work through it.
	mctx, mcancel := context.WithCancel(context.Background())
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(mctx) }()
	defer func() {
		mcancel()
		err = errors.Join(err, <-mgrDone)
	}()
	a.mu.Lock()
	a.mgr = mgr
	a.describer = admin
	a.standbys = sbs
	a.producer = sendProducer
	a.mu.Unlock()
	defer func() { // the admin client and the producer close when Run returns
		a.mu.Lock()
		a.describer = nil
		a.producer = nil
		a.mu.Unlock()
	}()
	a.syncPause()
	if sbs != nil {
		g.Go(func() error { return a.runStandbys(gctx, sbs, a.standbyKick) })
	}
	g.Go(func() error { return a.watchPartitions(gctx, admin, mgr) })

	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-producer.Fatal():
			return fmt.Errorf("producer failed: %w", producer.Err())
		}
		return nil
	})

	a.casState(StateRunning, StateStarting)
	<-gctx.Done()
	a.setState(StateStopping)
	return g.Wait()
}

// advertised is the gRPC address other workers dial to reach this one.
func (a *App) advertised() string {
	if a.opts.Advertise != "" {
		return a.opts.Advertise
	}
	return a.opts.GRPCAddr
}

// transportConfig derives the Kafka client settings from the app file,
// reading the SASL password through getenv or its file
// (docs/kafka.md#security). Its errors name the setting at fault and never
// hold the password.
func (a *App) transportConfig(getenv func(string) string) (transport.Config, error) {
	c := transport.DefaultConfig()
	c.Brokers = a.opts.Bootstrap
	c.GroupID = a.cfg.App
	// Other workers find this one's control plane in the group description:
	// the advertised address, never a wildcard bound one, which they would
	// dial as themselves (docs/configuration.md, listen.advertise).
	c.ClientID = "eddy|" + a.cfg.WorkerID + "|" + a.advertised()
	if a.cfg.Kafka.StaticMembership {
		c.GroupInstanceID = a.cfg.WorkerID
	}
	c.SessionTimeout = a.cfg.Kafka.SessionTimeout.D()
	if c.MaxPollInterval < c.SessionTimeout {
		c.MaxPollInterval = c.SessionTimeout
	}
	c.ReachTimeout = a.cfg.Kafka.ReachTimeout.D()
	if a.cfg.ProcessingGuarantee == config.ExactlyOnce {
		// Inputs, restores and standbys see committed transactions only.
		c.IsolationLevel = transport.ReadCommitted
	}
	c.MessageTimeout = a.cfg.EffectiveMessageTimeout()
	if a.cfg.Monitor.Enabled {
		c.StatsInterval = a.cfg.Monitor.StatsInterval.D()
	}
	c.Overrides = a.cfg.Kafka.Properties
	sec := a.cfg.Kafka.Security
	if sec.Protocol == "" {
		return c, nil
	}
	c.Security = transport.Security{Protocol: sec.Protocol, TLS: transport.TLSFiles{
		CAFile: sec.SSL.CAFile, CertFile: sec.SSL.CertFile, KeyFile: sec.SSL.KeyFile}}
	for _, f := range []struct{ name, path string }{
		{"ca_file", sec.SSL.CAFile}, {"cert_file", sec.SSL.CertFile}, {"key_file", sec.SSL.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return c, fmt.Errorf("kafka.security.ssl.%s: %w", f.name, err)
		}
		fh.Close()
	}
	if sec.SASLUsed() {
		pw, err := sec.Password(getenv)
		if err != nil {
			return c, err
		}
		c.Security.SASL = transport.SASL{Mechanism: sec.SASL.Mechanism, Username: sec.SASL.Username,
			Password: transport.Secret(pw)}
	}
	return c, nil
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
	for _, ag := range a.cfg.Agents {
		// A dead letter carries a record consumed from any source topic,
		// which may allow more than the broker's default message size.
		specs = append(specs, transport.TopicSpec{
			Name:              agents.DLQTopic(a.cfg.App, ag.Name),
			Partitions:        1,
			ReplicationFactor: a.cfg.Kafka.ReplicationFactor,
			Config:            map[string]string{"max.message.bytes": strconv.Itoa(transport.MaxMessageBytes)},
		})
	}
	// Changelogs: compacted, partitioned like their tables' source topics.
	for _, t := range a.cfg.Tables {
		n := a.cfg.TablePartitions(t.Name)
		if n == 0 {
			continue // no agent uses it: nothing would ever write it
		}
		specs = append(specs, tables.Changelog{App: a.cfg.App, Table: t.Name}.Spec(n, a.cfg.Kafka.ReplicationFactor))
	}
	return specs
}

// outputTopics are the topics agents may write: the declared topics
// minus the internal ones (changelogs and dead-letter topics), which only
// the worker writes.
func (a *App) outputTopics() []string {
	internal := map[string]bool{}
	for _, ag := range a.cfg.Agents {
		internal[agents.DLQTopic(a.cfg.App, ag.Name)] = true
	}
	for _, t := range a.cfg.Tables {
		internal[tables.ChangelogTopic(a.cfg.App, t.Name)] = true
	}
	var out []string
	for _, t := range a.cfg.Topics {
		if !internal[t.Name] {
			out = append(out, t.Name)
		}
	}
	return out
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

// consumerHandler receives the consumer's callbacks on its poll goroutine
// and hands them to the agents manager.
type consumerHandler struct {
	a      *App
	mgr    *agents.Manager
	routes routeChecks
}

func (h *consumerHandler) Assigned(parts []transport.TopicPartition) {
	h.a.track(parts, true)
	h.a.kickStandbys()
	h.mgr.Assigned(parts)
}

// Revoked returns once in-flight work is drained and the frontier committed.
func (h *consumerHandler) Revoked(parts []transport.TopicPartition) {
	h.mgr.Revoked(parts)
	h.a.track(parts, false)
	h.a.kickStandbys()
}

// Lost drops the partitions without committing; another worker owns them.
func (h *consumerHandler) Lost(parts []transport.TopicPartition) {
	h.mgr.Lost(parts)
	h.a.track(parts, false)
	h.a.kickStandbys()
}

func (h *consumerHandler) Message(msg *transport.Message) {
	h.routes.check(msg)
	h.mgr.Message(msg)
}

// Position passes the consumer's position on (transport.PositionHandler).
func (h *consumerHandler) Position(tp transport.TopicPartition, next transport.Offset) {
	h.mgr.Position(tp, next)
}

// Stats takes librdkafka's statistics and records the consumer lag and the
// fetch state of each owned partition.
func (h *consumerHandler) Stats(js string) {
	var st struct {
		Topics map[string]struct {
			Partitions map[string]struct {
				Partition   int32  `json:"partition"`
				ConsumerLag int64  `json:"consumer_lag"`
				FetchState  string `json:"fetch_state"`
				NextOffset  int64  `json:"next_offset"`
				LSOffset    int64  `json:"ls_offset"`
				HiOffset    int64  `json:"hi_offset"`
				FetchqCnt   int64  `json:"fetchq_cnt"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		h.a.log.Debug("librdkafka statistics", "err", err)
		return
	}
	for topic, t := range st.Topics {
		for _, p := range t.Partitions {
			if p.Partition >= 0 { // -1 is librdkafka's internal UA partition
				h.a.mon.SetConsumerView(topic, p.Partition, p.ConsumerLag, monitor.Fetch{State: p.FetchState,
					Next: p.NextOffset, Stable: p.LSOffset, High: p.HiOffset, Queued: p.FetchqCnt})
			}
		}
	}
}

// track records the assignment for status.
func (a *App) track(parts []transport.TopicPartition, add bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, tp := range parts {
		k := TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
		if add {
			a.assigned[k] = true
		} else {
			delete(a.assigned, k)
		}
	}
}

// newErrorLog is the log of the Kafka clients' errors that status lists;
// each error recorded also counts in eddy_kafka_errors_total{code}, by
// librdkafka's symbolic name of its code.
func (a *App) newErrorLog() *transport.ErrorLog {
	l := transport.NewErrorLog(0)
	l.OnError(func(e transport.KafkaError) { a.mon.KafkaError(e.Name) })
	return l
}
