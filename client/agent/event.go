package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// Header is one Kafka record header. Keys may repeat. A plain value with
// no methods: safe to read concurrently.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record for the worker to produce when the event's outcome is
// OK. The worker produces it with the same guarantee as the app's
// (at-least-once or exactly-once) and commits the event only once Kafka has
// acknowledged it. A plain value with no methods: safe to read
// concurrently.
type Record struct {
	// Topic is the destination topic. Required.
	Topic string
	// Key is the record key; nil or empty means no key. The worker partitions
	// by key like the Java client (murmur2).
	Key []byte
	// Value is the record value.
	Value []byte
	// Headers are the record headers.
	Headers []Header
	// Timestamp is the record's timestamp. Zero (default): the input
	// event's, as in Kafka Streams.
	Timestamp time.Time
}

// Event is one Kafka record delivered to the handler, with what the handler
// asks the worker to do with it.
//
// The fields are the record as read from Kafka; the handler must not modify
// them. Emit, EmitRecord, SetState and DeleteState are safe for concurrent
// use, so a handler may fan out work to goroutines, but only until the
// handler returns: calls made after that are ignored and logged.
//
// Events are created by the SDK. Tests of a handler may create one as a
// literal (&agent.Event{Topic: "orders", Value: v}) and read what the
// handler emitted with Emitted.
type Event struct {
	// Topic is the source topic.
	Topic string
	// Partition is the source partition.
	Partition int32
	// Offset is the record's offset in its partition.
	Offset int64
	// Key is the record key; empty when the record has none.
	Key []byte
	// Value is the record value.
	Value []byte
	// Headers are the record headers, in order.
	Headers []Header
	// Timestamp is the record timestamp; the zero Time when the record has
	// none.
	Timestamp time.Time
	// Attempt counts deliveries of this event: 1 the first time, 2 after one
	// Retry, and so on. The worker dead-letters an event after its
	// configured maximum of retries.
	Attempt int

	mu        sync.Mutex
	closed    bool
	errs      []error
	produced  []*eddyv1.Record
	mutations []*eddyv1.Mutation
	state     map[string]*eddyv1.TableState // by stateKey
	windows   map[string][]time.Time        // windowed table → its delivered window starts, oldest first
	onLate    func(what string)             // called for uses after the handler returned
	// get sends a StateGet for the event's partition; nil for literals.
	get func(ctx context.Context, table string, key []byte) ([]byte, bool, error)
}

// ErrNoWorker is returned by Event.Get for an event not delivered by a
// worker (an Event literal in a test).
var ErrNoWorker = errors.New("agent: Event.Get needs an event delivered by the worker")

// Get reads key of table in the event's partition, for keys other than the
// event's own (whose value comes with the event: use State). It asks the
// worker (StateGet in the protocol) and waits for the answer, or for ctx;
// found is false when the key has no value. table must be one of the
// agent's tables in the app file.
//
// Get sees acknowledged state only: the values the worker holds for the
// partition, i.e. the mutations of events whose outcome was OK and whose
// changelog records Kafka acknowledged. It does not see mutations still
// pending: neither this event's SetState and DeleteState, nor those of
// events in progress or whose results are not yet acknowledged. Handlers
// may only write the event's own key: writes to other keys are not
// supported, since only the event's key is kept busy while its mutations
// are applied (the busy-key rule, docs/protocol.md).
//
// Errors: ctx's error; an error of the worker (the table is not declared,
// the key is empty, the partition is still restoring, or "stale epoch"
// when the partition was revoked or reassigned since the event was
// delivered), as an error starting with "state get: "; an error when the
// session with the worker ended before the answer; ErrNoWorker for an
// Event literal. Safe for concurrent use while the handler runs.
func (e *Event) Get(ctx context.Context, table string, key []byte) (value []byte, found bool, err error) {
	if e.get == nil {
		return nil, false, ErrNoWorker
	}
	return e.get(ctx, table, key)
}

func newEvent(topic string, partition int32, pe *eddyv1.Event) *Event {
	ev := &Event{
		Topic:     topic,
		Partition: partition,
		Offset:    pe.GetOffset(),
		Key:       pe.GetKey(),
		Value:     pe.GetValue(),
		Attempt:   int(pe.GetAttempt()),
	}
	if ts := pe.GetTimestamp(); ts != nil {
		ev.Timestamp = ts.AsTime()
	}
	if hs := pe.GetHeaders(); len(hs) > 0 {
		ev.Headers = make([]Header, len(hs))
		for i, h := range hs {
			ev.Headers[i] = Header{Key: h.GetKey(), Value: h.GetValue()}
		}
	}
	if st := pe.GetState(); len(st) > 0 {
		ev.state = make(map[string]*eddyv1.TableState, len(st))
		for _, s := range st {
			var start time.Time
			if ws := s.GetWindowStart(); ws != nil {
				start = ws.AsTime()
				if ev.windows == nil {
					ev.windows = map[string][]time.Time{}
				}
				ev.windows[s.GetTable()] = append(ev.windows[s.GetTable()], start)
			}
			ev.state[stateKey(s.GetTable(), start)] = s
		}
	}
	return ev
}

// stateKey names the state of a table (start zero) or of one window of a
// windowed table.
func stateKey(table string, start time.Time) string {
	if start.IsZero() {
		return table
	}
	return table + "\x00" + strconv.FormatInt(start.UnixNano(), 10)
}

// Emit asks the worker to produce a record with key and value to topic if
// the handler's outcome is OK; records emitted before a Retry, DeadLetter,
// other error or panic are discarded. Records are produced in the order they
// are emitted.
//
// key and value are not copied: they are sent after the handler returns, so
// they must not be modified after the call. Passing ev.Key or ev.Value on
// is fine. An empty topic makes the event's outcome RETRY with an error
// saying so.
func (e *Event) Emit(topic string, key, value []byte) {
	e.EmitRecord(Record{Topic: topic, Key: key, Value: value})
}

// EmitRecord is Emit for a record with headers. The same rules apply: the
// record is produced only if the outcome is OK, and its slices must not be
// modified after the call.
func (e *Event) EmitRecord(r Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.late("Emit")
		return
	}
	if r.Topic == "" {
		e.errs = append(e.errs, errors.New("Emit: empty topic"))
		return
	}
	rec := &eddyv1.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
	if !r.Timestamp.IsZero() {
		rec.Timestamp = timestamppb.New(r.Timestamp)
	}
	if len(r.Headers) > 0 {
		rec.Headers = make([]*eddyv1.Header, len(r.Headers))
		for i, h := range r.Headers {
			rec.Headers[i] = &eddyv1.Header{Key: h.Key, Value: h.Value}
		}
	}
	e.produced = append(e.produced, rec)
}

// Emitted returns the records emitted so far, in order. It is meant for
// tests of handlers. Safe for concurrent use.
func (e *Event) Emitted() []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Record, len(e.produced))
	for i, p := range e.produced {
		out[i] = Record{Topic: p.GetTopic(), Key: p.GetKey(), Value: p.GetValue()}
		if ts := p.GetTimestamp(); ts != nil {
			out[i].Timestamp = ts.AsTime()
		}
		for _, h := range p.GetHeaders() {
			out[i].Headers = append(out[i].Headers, Header{Key: h.GetKey(), Value: h.GetValue()})
		}
	}
	return out
}

// State returns the value of table for the event's key, as delivered with
// the event and changed by SetState and DeleteState since. ok is false when
// the key has no value in the table or the table is not one of the agent's
// tables. The returned slice must not be modified. Safe for concurrent use.
func (e *Event) State(table string) (value []byte, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.state[table]
	if s == nil || !s.GetHasValue() {
		return nil, false
	}
	return s.GetValue(), true
}

// SetState sets the value of table for the event's key, applied by the
// worker (changelog first, then its store) if the outcome is OK. table must
// be one of the agent's tables in the app file. value is not copied and must
// not be modified after the call. Safe for concurrent use until the handler
// returns.
func (e *Event) SetState(table string, value []byte) {
	e.mutate(&eddyv1.Mutation{Table: table, Key: e.Key, Value: value})
}

// DeleteState removes the event's key from table if the outcome is OK. Safe
// for concurrent use until the handler returns.
func (e *Event) DeleteState(table string) {
	e.mutate(&eddyv1.Mutation{Table: table, Key: e.Key, Delete: true})
}

func (e *Event) mutate(m *eddyv1.Mutation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.late("SetState/DeleteState")
		return
	}
	if m.GetTable() == "" {
		e.errs = append(e.errs, errors.New("SetState/DeleteState: empty table"))
		return
	}
	var start time.Time
	_, plain := e.state[m.GetTable()]
	switch ws := m.GetWindowStart(); {
	case ws == nil && len(e.windows[m.GetTable()]) > 0:
		e.errs = append(e.errs, fmt.Errorf("SetState/DeleteState: table %q is windowed: use SetWindowState/DeleteWindowState", m.GetTable()))
		return
	case ws != nil && plain:
		e.errs = append(e.errs, fmt.Errorf("SetWindowState/DeleteWindowState: table %q is not windowed: use SetState/DeleteState", m.GetTable()))
		return
	case ws != nil:
		start = ws.AsTime()
		if !slices.ContainsFunc(e.windows[m.GetTable()], start.Equal) {
			e.errs = append(e.errs, fmt.Errorf("SetWindowState/DeleteWindowState: %s is not the start of a window of table %q delivered with the event (see Windows)",
				start.UTC().Format(time.RFC3339Nano), m.GetTable()))
			return
		}
	}
	e.mutations = append(e.mutations, m)
	if e.state == nil {
		e.state = map[string]*eddyv1.TableState{}
	}
	e.state[stateKey(m.GetTable(), start)] = &eddyv1.TableState{Table: m.GetTable(), HasValue: !m.GetDelete(), Value: m.GetValue(), WindowStart: m.GetWindowStart()}
}

// Window is one window of a windowed table for the event's key: its start
// and value (Found is false when the window has no value yet).
type Window struct {
	Start time.Time
	Value []byte
	Found bool
}

// Windows returns the windows of a windowed table that the event's
// timestamp falls in and that have not expired (one for a tumbling
// window, about size/step for a hopping one), oldest first, with their
// values as delivered and changed by SetWindowState and DeleteWindowState
// since. Empty for a plain table (use State) and for a keyless event.
func (e *Event) Windows(table string) []Window {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Window
	for _, start := range e.windows[table] {
		s := e.state[stateKey(table, start)]
		out = append(out, Window{Start: start, Value: s.GetValue(), Found: s.GetHasValue()})
	}
	return out
}

// DeliverWindows sets the windows of a windowed table an Event literal was
// delivered with, oldest first: for tests of handlers (the worker delivers
// them with real events).
func (e *Event) DeliverWindows(table string, ws ...Window) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == nil {
		e.state = map[string]*eddyv1.TableState{}
	}
	if e.windows == nil {
		e.windows = map[string][]time.Time{}
	}
	for _, w := range ws {
		e.windows[table] = append(e.windows[table], w.Start)
		e.state[stateKey(table, w.Start)] = &eddyv1.TableState{Table: table, HasValue: w.Found, Value: w.Value, WindowStart: timestamppb.New(w.Start)}
	}
}

// SetWindowState sets the value of the window of table starting at start
// (one of Windows) for the event's key, applied by the worker if the
// outcome is OK. A start that is not one of the event's windows fails the
// event (the worker would refuse it). Safe for concurrent use until the
// handler returns.
func (e *Event) SetWindowState(table string, start time.Time, value []byte) {
	e.mutate(&eddyv1.Mutation{Table: table, Key: e.Key, Value: value, WindowStart: timestamppb.New(start)})
}

// DeleteWindowState removes the event's key from the window of table
// starting at start if the outcome is OK.
func (e *Event) DeleteWindowState(table string, start time.Time) {
	e.mutate(&eddyv1.Mutation{Table: table, Key: e.Key, Delete: true, WindowStart: timestamppb.New(start)})
}

// late must be called with e.mu held.
func (e *Event) late(what string) {
	if e.onLate != nil {
		e.onLate(what)
	}
}

// close ends the handler's use of the event and returns what it asked for.
func (e *Event) close() (produced []*eddyv1.Record, mutations []*eddyv1.Mutation, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return e.produced, e.mutations, errors.Join(e.errs...)
}

// Status is the outcome of one event, as the worker sees it. Its methods
// are safe for concurrent use.
type Status int

// The outcomes. The zero Status is not an outcome.
const (
	// StatusOK: processed; the emitted records are produced and state
	// changes applied.
	StatusOK Status = iota + 1
	// StatusRetry: the event is delivered again after a backoff, until the
	// worker's maximum of retries, then dead-lettered.
	StatusRetry
	// StatusDeadLetter: the event goes to the agent's dead-letter topic
	// with the error in its headers, and processing moves on.
	StatusDeadLetter
)

// String returns "OK", "RETRY" or "DEAD_LETTER".
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusRetry:
		return "RETRY"
	case StatusDeadLetter:
		return "DEAD_LETTER"
	default:
		return fmt.Sprintf("Status(%d)", int(s))
	}
}

func (s Status) proto() eddyv1.ResultStatus {
	switch s {
	case StatusOK:
		return eddyv1.ResultStatus_RESULT_STATUS_OK
	case StatusDeadLetter:
		return eddyv1.ResultStatus_RESULT_STATUS_DEAD_LETTER
	default:
		return eddyv1.ResultStatus_RESULT_STATUS_RETRY
	}
}

// outcomeError carries an explicit outcome through a handler's error.
type outcomeError struct {
	status Status
	err    error
}

func (e *outcomeError) Error() string {
	if e.err == nil {
		return e.status.String() + " requested"
	}
	return e.err.Error()
}

func (e *outcomeError) Unwrap() error { return e.err }

// Retry returns an error that makes the event's outcome RETRY: the worker
// delivers the event again after a backoff (with Attempt increased), and
// dead-letters it after its maximum of retries. err says why and may be nil.
// Returning any error other than one from DeadLetter has the same effect;
// Retry makes the intent explicit.
func Retry(err error) error { return &outcomeError{status: StatusRetry, err: err} }

// DeadLetter returns an error that makes the event's outcome DEAD_LETTER:
// the worker writes the event to the agent's dead-letter topic, with err's
// text in the headers, and moves on. Use it for events that can never
// succeed (invalid input). err says why and may be nil. The result may be
// wrapped (fmt.Errorf("...: %w", agent.DeadLetter(err))). Safe for
// concurrent use, like Retry and StatusOf.
func DeadLetter(err error) error { return &outcomeError{status: StatusDeadLetter, err: err} }

// StatusOf returns the outcome a handler's returned error stands for: OK for
// nil, DEAD_LETTER for an error from DeadLetter (wrapped or not), RETRY for
// any other error. Useful in tests of handlers.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var oe *outcomeError
	if errors.As(err, &oe) {
		return oe.status
	}
	return StatusRetry
}
