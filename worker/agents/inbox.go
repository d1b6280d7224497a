package agents

import (
	"sync"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/tables/live"
	"github.com/eddy-streams/eddy/worker/transport"
)

// inbox is the manager's non-blocking input: records from the poll loop,
// everything else as control items. Control items are handled before
// records of the same round, so an assignment is in place before its
// records.
type inbox struct {
	mu     sync.Mutex
	msgs   []inMsg // copies: the consumer reuses what it passes
	ctl    []any
	wake   chan struct{}
	closed bool // Run returned: nothing will be taken any more
}

func (b *inbox) notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// inMsg is a record from the poll loop, or (pos) the consumer's position
// in a partition, in order with its records: Offset is then the position.
type inMsg struct {
	transport.Message
	pos bool
}

func (b *inbox) pushMsg(msg *transport.Message, pos bool) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.msgs = append(b.msgs, inMsg{Message: *msg, pos: pos})
	n := len(b.msgs)
	b.mu.Unlock()
	if n == 1 {
		b.notify()
	}
}

// push queues a control item; false once the inbox is closed.
func (b *inbox) push(item any) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.ctl = append(b.ctl, item)
	b.mu.Unlock()
	b.notify()
	return true
}

// close refuses further items and returns the control items never taken.
func (b *inbox) close() []any {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	ctl := b.ctl
	b.msgs, b.ctl = nil, nil
	return ctl
}

func (b *inbox) take(msgs []inMsg, ctl []any) ([]inMsg, []any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gotM, gotC := b.msgs, b.ctl
	b.msgs, b.ctl = msgs[:0], ctl[:0]
	return gotM, gotC
}

// Control items.
type (
	assignReq struct{ parts []transport.TopicPartition }
	revokeReq struct {
		parts []transport.TopicPartition
		lost  bool
		// ps are the partitions it gives up, as they were when it began:
		// a partition assigned again meanwhile is a new one (see assign).
		ps      []*partition
		started time.Time
		// deadline ends the agents' time to finish their events;
		// drainBy ends the wait for Kafka's acknowledgements of what they
		// produced and for the final commit (see checkRevokes).
		deadline time.Time
		drainBy  time.Time
		drained  bool
		lastTry  time.Time // the last final commit started
		done     chan struct{}
	}
	openReq  struct{ s *session }
	closeReq struct {
		s   *session
		err error
	}
	creditReq struct {
		s      *session
		events uint32
		bytes  uint64
	}
	resultsReq struct {
		s *session
		r *Results
		n int64 // counted against the cap (resultsBytes)
	}
	ackReq struct {
		s      *session
		ref    PartitionRef
		revoke bool
	}
	produceAck struct {
		p   *partition
		r   *rec
		w   *write // what was produced, to produce it again
		err error
		n   int64 // held bytes the acknowledgement releases
	}
	recoveredReq struct {
		p       *partition
		stores  []*tables.Store
		ends    []int64 // each store's changelog end at its restore
		records int64
		took    time.Duration
		err     error
	}
	changelogAck struct {
		p   *partition
		r   *rec
		tp  *live.Part
		mut tables.Mutation
		off int64
		err error
		n   int64 // held bytes, released at the ack or once applied to the store
	}
	pauseReq struct {
		agent  string
		paused bool
	}
	infoReq struct{ reply chan []AgentInfo }
	// funcReq runs f on the Run goroutine (tests look at its state).
	funcReq struct{ f func() }
)
