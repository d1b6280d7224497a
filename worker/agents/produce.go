package agents

import (
	"errors"
	"sync"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// errPartitionGone fails a record whose partition left this worker (or was
// lost) before the record was handed to Kafka.
var errPartitionGone = errors.New("the partition left this worker before the record was produced")

// produceJob is one record for the producer goroutine.
type produceJob struct {
	p        *partition // the source partition it is produced for
	rec      transport.Record
	onDone   func(error)
	onOffset func(int64, error) // instead of onDone: ProduceOffset
	// barrier, if set, is closed when the producer goroutine reaches the
	// job: every record queued before it was handed over (prodBarrier).
	barrier chan struct{}
	// txn is the transaction the record is for (exactly-once; 0
	// otherwise): once it is over (Manager.openTxn moved on) the record is
	// failed, never handed to the next one.
	txn uint64
}

// prodBarrier returns true once the producer goroutine handed over (or
// failed) every record queued before the call; false if the manager stopped
// first, or within is not 0 and passed first (then the barrier stays
// queued: wait on the returned channel). Called off the Run goroutine.
func (m *Manager) prodBarrier(within time.Duration) (bool, <-chan struct{}) {
	b := make(chan struct{})
	m.enqueueProduce(produceJob{barrier: b})
	var timeout <-chan time.Time
	if within > 0 {
		t := time.NewTimer(within)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-b:
		return true, b
	case <-m.quit:
		return false, b
	case <-timeout:
		return false, b
	}
}

// errTxnOver fails a record queued for a transaction that ended before the
// producer goroutine reached it (exactly-once).
var errTxnOver = errors.New("the transaction the record was for is over")

// produceQueue hands records from the Run goroutine to the producer
// goroutine, so the cgo cost of Produce (and its blocking when librdkafka's
// queue is full) runs beside the bookkeeping instead of inside it. One
// goroutine keeps the order of records. Every output and changelog record
// in it is counted against Config.InflightBytes from its result until
// Kafka acknowledges it, and delivery stops at the cap, so the queue is
// bounded by it (dead letters are records of the partition buffers).
type produceQueue struct {
	mu   sync.Mutex
	jobs []produceJob
	wake chan struct{}
}

func (m *Manager) produce(p *partition, rec transport.Record, onDone func(error)) {
	m.enqueueProduce(produceJob{p: p, rec: rec, onDone: onDone})
}

// produceOffset is produce for records whose offset matters (changelogs).
func (m *Manager) produceOffset(p *partition, rec transport.Record, onDone func(int64, error)) {
	m.enqueueProduce(produceJob{p: p, rec: rec, onOffset: onDone})
}

func (m *Manager) enqueueProduce(j produceJob) {
	q := &m.prodQ
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	n := len(q.jobs)
	q.mu.Unlock()
	if n == 1 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// runProducer hands queued records to the producer until stop is closed,
// then hands over what is left (every callback must run).
func (m *Manager) runProducer(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	q := &m.prodQ
	var jobs []produceJob
	for {
		q.mu.Lock()
		jobs, q.jobs = q.jobs, jobs[:0]
		q.mu.Unlock()
		for i, j := range jobs {
			if j.barrier != nil {
				close(j.barrier)
				jobs[i] = produceJob{}
				continue
			}
			// Checked before every record: the process may stand still
			// between two of them (a whole batch is taken at once).
			if m.confirmOwnership(stop) {
				m.handOver(j)
			} else {
				m.txnFailure()
				fail(j, ErrShuttingDown)
			}
			jobs[i] = produceJob{}
		}
		if len(jobs) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-stop:
			q.mu.Lock()
			left := q.jobs
			q.jobs = nil
			q.mu.Unlock()
			for _, j := range left {
				if j.barrier != nil {
					close(j.barrier)
					continue
				}
				if m.confirmOwnership(nil) {
					m.handOver(j)
				} else {
					m.txnFailure()
					fail(j, ErrShuttingDown)
				}
			}
			return
		}
	}
}

// confirmOwnership returns once the worker may produce: at once, unless
// the process stood still long enough to have lost its partitions without
// knowing (freeze.go); then once the manager confirmed it still owns them,
// or they were lost. It returns false when stop is closed first.
func (m *Manager) confirmOwnership(stop <-chan struct{}) bool {
	if m.eos {
		// A worker that lost its partitions unknowingly cannot commit
		// what it produces: the group coordinator refuses the offsets of
		// its transaction (eos.go), so its writes are never visible.
		return true
	}
	for {
		// Asked again after each confirmation: the process may have
		// stood still once more while the check was under way.
		frozen, stood := m.freeze.suspect()
		if !frozen {
			return true
		}
		req := &suspectReq{resume: make(chan struct{}), stood: stood}
		if !m.in.push(req) {
			return false
		}
		select {
		case <-req.resume:
		case <-stop:
			return false
		}
	}
}

func fail(j produceJob, err error) {
	if j.onOffset != nil {
		j.onOffset(-1, err)
	} else if j.onDone != nil {
		j.onDone(err)
	}
}

func (m *Manager) handOver(j produceJob) {
	if j.txn != 0 && j.txn != m.openTxn.Load() {
		fail(j, errTxnOver) // its transaction aborted: nothing of it may join the next
		return
	}
	if j.p != nil && j.p.gone.Load() {
		m.txnFailure()
		fail(j, errPartitionGone)
		return
	}
	if j.p != nil && j.p.blocked.Load() {
		m.txnFailure()
		fail(j, errAgentBlocked)
		return
	}
	// A Produce waiting for room in librdkafka's queue may outlast a pause
	// of the process, or the loss of the partition: it must not queue the
	// record after either.
	switch {
	case m.eos:
		// No freeze guard under exactly-once (confirmOwnership): a
		// record waiting for room is withheld once its partition left or
		// its transaction is over (an abort purges the queue it waits on:
		// it must not then join the next transaction).
		p, txn := j.p, j.txn
		j.rec.Allowed = func() bool { return (p == nil || !p.gone.Load()) && m.openTxn.Load() == txn }
	case j.p != nil:
		j.rec.Allowed = j.p.allowed
	default:
		j.rec.Allowed = m.calm
	}
	if j.onOffset != nil {
		m.producer.ProduceOffset(j.rec, j.onOffset)
	} else {
		m.producer.Produce(j.rec, j.onDone)
	}
	if j.p != nil && j.p.lost.Load() {
		// The partition was lost while the record was handed over: the
		// manager's purge may have run before it was queued. Lost is the
		// whole assignment, so withdraw everything queued once more.
		if pq, ok := m.producer.(interface{ PurgeQueued() }); ok {
			pq.PurgeQueued()
		}
	}
}
