package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// DefaultAdminTimeout bounds Admin.EnsureTopics when its context has no
// deadline.
const DefaultAdminTimeout = 30 * time.Second

// TopicSpec declares a topic for Admin.EnsureTopics.
type TopicSpec struct {
	// Name is the topic name. Required.
	Name string
	// Partitions is the partition count. Required, at least 1.
	Partitions int
	// ReplicationFactor is the number of replicas. Default (0): the
	// broker's default.replication.factor.
	ReplicationFactor int
	// Config holds topic configs for creation (e.g. "cleanup.policy":
	// "compact" for changelogs). Existing topics are not altered. Default:
	// none (broker defaults).
	Config map[string]string
}

// Admin checks that Kafka is reachable and creates topics. It runs its
// requests on a dedicated librdkafka producer handle, whose error events it
// records (they give Ping's error its cause). Create it with NewAdmin and
// Close it when done. Its methods are safe for concurrent use, except Close,
// which must come after all other calls have returned.
type Admin struct {
	cfg      Config
	rep      reporter
	errs     *ErrorLog
	p        *kafka.Producer
	a        *kafka.AdminClient
	events   chan struct{} // closed when the events goroutine exits
	logsDone <-chan struct{}

	// The latest error events, for Ping's cause: the latest one that is
	// not ALL_BROKERS_DOWN (usually the refused connection, which says
	// more), and the latest of any kind.
	mu                    sync.Mutex
	lastSpecific, lastAny error
	specificAt, anyAt     time.Time
	lastAuth              error
	authAt                time.Time
	// authc is signalled (without blocking) on each authentication or TLS
	// error event, so that Ping gives up at once: librdkafka retries such
	// an error forever, and waiting out the reach timeout says no more.
	authc chan struct{}

	closeOnce sync.Once
}

// NewAdmin validates cfg and creates the admin client. It does not contact
// Kafka yet (librdkafka connects in the background); call Ping to find out
// whether the brokers answer.
func NewAdmin(cfg Config, opts ...Option) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	p, err := kafka.NewProducer(ptr(cfg.adminConfig()))
	if err != nil {
		return nil, fmt.Errorf("transport: create admin client: %w", err)
	}
	a, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("transport: create admin client: %w", err)
	}
	ad := &Admin{
		cfg:    cfg,
		rep:    reporter{client: "admin", logger: o.logger, errs: o.errs},
		errs:   o.errs,
		p:      p,
		a:      a,
		events: make(chan struct{}),
		authc:  make(chan struct{}, 1),
	}
	ad.logsDone = ForwardLogs(p.Logs(), o.logger, "admin")
	go ad.readEvents()
	return ad, nil
}

func ptr[T any](v T) *T { return &v }

// readEvents drains the producer handle's events (there are no deliveries:
// only errors and stats) until Close closes the channel.
func (ad *Admin) readEvents() {
	defer close(ad.events)
	for ev := range ad.p.Events() {
		kerr, ok := ev.(kafka.Error)
		if !ok {
			continue
		}
		ad.rep.report(kerr, "", -1)
		now := time.Now()
		ad.mu.Lock()
		ad.lastAny, ad.anyAt = kerr, now
		if kerr.Code() != kafka.ErrAllBrokersDown {
			ad.lastSpecific, ad.specificAt = kerr, now
		}
		auth := authFailure(kerr)
		if auth {
			ad.lastAuth, ad.authAt = kerr, now
		}
		ad.mu.Unlock()
		if auth {
			select {
			case ad.authc <- struct{}{}:
			default:
			}
		}
	}
}

// lastErrorSince returns the most telling error event seen at or after t.
func (ad *Admin) lastErrorSince(t time.Time) error {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	switch {
	case ad.lastSpecific != nil && !ad.specificAt.Before(t):
		return ad.lastSpecific
	case ad.lastAny != nil && !ad.anyAt.Before(t):
		return ad.lastAny
	}
	return nil
}

// authFailure reports whether e says the brokers refused this client's
// credentials or TLS: the SASL exchange failed, or the TLS handshake did
// (an unknown CA, a certificate the broker refused). Retrying does not
// mend either.
func authFailure(e kafka.Error) bool {
	return e.Code() == kafka.ErrAuthentication || e.Code() == kafka.ErrSsl
}

// authErrorSince returns the latest authentication error event seen at or
// after t, or nil.
func (ad *Admin) authErrorSince(t time.Time) error {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if ad.lastAuth != nil && !ad.authAt.Before(t) {
		return ad.lastAuth
	}
	return nil
}

// Errors returns the ErrorLog this client records into.
func (ad *Admin) Errors() *ErrorLog { return ad.errs }

// Ping asks the cluster to describe itself and waits at most
// Config.ReachTimeout (or until ctx ends) for an answer. A cluster that does
// not answer in time gives an *UnreachableError naming the brokers, the
// timeout and the last error librdkafka reported, e.g. "cannot reach Kafka
// brokers 127.0.0.1:1 within 10s: 127.0.0.1:1/bootstrap: Connect to
// ipv4#127.0.0.1:1 failed: Connection refused". A broker that refuses the
// credentials or the TLS handshake gives an *AuthError at once, with
// librdkafka's reason (which never holds the password). If ctx is
// cancelled first, its error is returned.
func (ad *Admin) Ping(ctx context.Context) error {
	timeout := ad.cfg.reachTimeout()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := ad.a.DescribeCluster(rctx, kafka.SetAdminRequestTimeout(timeout))
		errc <- err
	}()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-errc:
			waiting = false
		case <-ad.authc:
			if aerr := ad.authErrorSince(start); aerr != nil {
				cancel()
				<-errc
				return &AuthError{Brokers: ad.cfg.Brokers, Protocol: ad.cfg.Security.protocol(), Err: aerr}
			}
		}
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("transport: ping Kafka brokers %s: %w", ad.cfg.Brokers, ctx.Err())
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) && !kerr.IsTimeout() && kerr.Code() != kafka.ErrTransport && kerr.Code() != kafka.ErrAllBrokersDown {
		// An answer, just not a good one (e.g. authorization).
		return fmt.Errorf("transport: describe cluster at %s: %w", ad.cfg.Brokers, err)
	}
	cause := ad.lastErrorSince(start)
	if cause == nil {
		cause = err
	}
	return &UnreachableError{Brokers: ad.cfg.Brokers, Timeout: timeout, Err: cause}
}

// EnsureTopics creates the topics of specs that do not exist and waits until
// each is visible in the cluster's metadata with a leader for every
// partition. A topic that exists with a different partition count gives a
// *PartitionMismatchError (several are joined with errors.Join); a topic
// created concurrently by someone else (TOPIC_ALREADY_EXISTS) is fine if its
// partition count matches. Existing topics' configs are not altered.
// EnsureTopics is bounded by ctx, or by DefaultAdminTimeout when ctx has no
// deadline.
func (ad *Admin) EnsureTopics(ctx context.Context, specs []TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(specs))
	names := make([]string, 0, len(specs))
	for i, s := range specs {
		switch {
		case s.Name == "":
			return fmt.Errorf("transport: topics[%d].Name: required", i)
		case s.Partitions < 1:
			return fmt.Errorf("transport: topics[%d] (%q).Partitions: must be at least 1, got %d", i, s.Name, s.Partitions)
		case s.ReplicationFactor < 0:
			return fmt.Errorf("transport: topics[%d] (%q).ReplicationFactor: must not be negative, got %d", i, s.Name, s.ReplicationFactor)
		case seen[s.Name]:
			return fmt.Errorf("transport: topics[%d]: %q declared twice", i, s.Name)
		}
		seen[s.Name] = true
		names = append(names, s.Name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultAdminTimeout)
		defer cancel()
	}

	existing, err := ad.describe(ctx, names)
	if err != nil {
		return err
	}
	var errs []error
	var create []kafka.TopicSpecification
	for _, s := range specs {
		got, ok := existing[s.Name]
		if !ok {
			rf := s.ReplicationFactor
			if rf == 0 {
				rf = -1 // broker default (KIP-464)
			}
			create = append(create, kafka.TopicSpecification{
				Topic:             s.Name,
				NumPartitions:     s.Partitions,
				ReplicationFactor: rf,
				Config:            s.Config,
			})
			continue
		}
		if got.partitions != s.Partitions {
			errs = append(errs, &PartitionMismatchError{Topic: s.Name, Want: s.Partitions, Got: got.partitions})
		}
	}
	if len(create) > 0 {
		results, err := ad.a.CreateTopics(ctx, create,
			kafka.SetAdminRequestTimeout(ad.cfg.reachTimeout()),
			kafka.SetAdminOperationTimeout(ad.cfg.reachTimeout()))
		if err != nil {
			return fmt.Errorf("transport: create topics: %w", err)
		}
		for _, r := range results {
			if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
				errs = append(errs, fmt.Errorf("transport: create topic %q: %w", r.Topic, r.Error))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(create) == 0 {
		return nil
	}
	return ad.waitVisible(ctx, specs, create)
}

// waitVisible polls the metadata until every created topic is there with
// its partitions led, or ctx ends.
func (ad *Admin) waitVisible(ctx context.Context, specs []TopicSpec, created []kafka.TopicSpecification) error {
	want := make(map[string]int, len(created))
	names := make([]string, 0, len(created))
	for _, c := range created {
		want[c.Topic] = c.NumPartitions
		names = append(names, c.Topic)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := ad.describe(ctx, names)
		if err == nil {
			var errs []error
			ready := true
			for _, name := range names {
				d, ok := got[name]
				switch {
				case !ok || !d.led:
					ready = false
				case d.partitions != want[name]:
					// Someone else created it first, differently.
					errs = append(errs, &PartitionMismatchError{Topic: name, Want: want[name], Got: d.partitions})
				}
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("transport: wait for topics %v to appear in metadata: %w", names, err)
		case <-tick.C:
		}
	}
}

type topicState struct {
	partitions int
	led        bool // every partition has a leader
}

// describe returns the state of the named topics that exist.
func (ad *Admin) describe(ctx context.Context, names []string) (map[string]topicState, error) {
	res, err := ad.a.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames(names),
		kafka.SetAdminRequestTimeout(ad.cfg.reachTimeout()))
	if err != nil {
		return nil, fmt.Errorf("transport: describe topics %v: %w", names, err)
	}
	out := make(map[string]topicState, len(names))
	for _, d := range res.TopicDescriptions {
		switch d.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
			continue
		default:
			return nil, fmt.Errorf("transport: describe topic %q: %w", d.Name, d.Error)
		}
		st := topicState{partitions: len(d.Partitions), led: len(d.Partitions) > 0}
		for _, p := range d.Partitions {
			if p.Leader == nil || p.Leader.ID < 0 {
				st.led = false
			}
		}
		out[d.Name] = st
	}
	return out, nil
}

// PartitionCounts returns the partition count of each named topic that
// exists, in one metadata request bounded by ctx and Config.ReachTimeout.
// A topic missing from the result does not exist (or is not visible yet).
// The worker calls it every kafka.metadata_refresh to notice a source topic
// whose partition count changed under its tables (docs/tables.md#partitions).
func (ad *Admin) PartitionCounts(ctx context.Context, topics []string) (map[string]int, error) {
	states, err := ad.describe(ctx, topics)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(states))
	for name, st := range states {
		out[name] = st.partitions
	}
	return out, nil
}

// DeleteTopics deletes the named topics; topics that do not exist are
// ignored. It is bounded by ctx and Config.ReachTimeout per request. Tests
// and tools use it; the worker never deletes topics.
func (ad *Admin) DeleteTopics(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	res, err := ad.a.DeleteTopics(ctx, names,
		kafka.SetAdminRequestTimeout(ad.cfg.reachTimeout()),
		kafka.SetAdminOperationTimeout(ad.cfg.reachTimeout()))
	if err != nil {
		return fmt.Errorf("transport: delete topics: %w", err)
	}
	var errs []error
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrUnknownTopicOrPart {
			errs = append(errs, fmt.Errorf("transport: delete topic %q: %w", r.Topic, r.Error))
		}
	}
	return errors.Join(errs...)
}

// Close releases the admin client. It is idempotent; the Admin must not be
// used afterwards.
func (ad *Admin) Close() {
	ad.closeOnce.Do(func() {
		ad.a.Close() // derived: releases nothing of its own
		ad.p.Close() // closes Events and Logs
		<-ad.events
		<-ad.logsDone
	})
}

// GroupMember is one member of a consumer group, as the group coordinator
// describes it.
type GroupMember struct {
	// ClientID is the member's client.id (Eddy workers advertise
	// "eddy|<worker_id>|<grpc addr>" there).
	ClientID string
	// Host is the member's address as the broker saw it.
	Host string
	// Assignment is the partitions the member owns now.
	Assignment []TopicPartition
}

// DescribeGroup returns the members of consumer group and their
// assignments, at most 5s (or ctx) after asking. A group with no members
// (or that does not exist) has none.
func (ad *Admin) DescribeGroup(ctx context.Context, group string) ([]GroupMember, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	res, err := ad.a.DescribeConsumerGroups(ctx, []string{group})
	if err != nil {
		return nil, fmt.Errorf("transport: describe consumer group %q: %w", group, err)
	}
	var out []GroupMember
	for _, d := range res.ConsumerGroupDescriptions {
		if d.Error.Code() != kafka.ErrNoError {
			return nil, fmt.Errorf("transport: describe consumer group %q: %w", group, d.Error)
		}
		for _, m := range d.Members {
			out = append(out, GroupMember{ClientID: m.ClientID, Host: m.Host, Assignment: partitionsOf(m.Assignment.TopicPartitions)})
		}
	}
	return out, nil
}
