package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// partition processes the events of one assigned topic-partition under one
// epoch, one at a time and in offset order, on a goroutine of its own (run).
type partition struct {
	s     *session
	key   tp
	epoch uint64
	prev  *partition // earlier assignment of the same partition, still finishing

	ctx    context.Context // the handlers' context
	cancel context.CancelFunc

	mu       sync.Mutex
	queue    []queued
	batchSeq uint64 // batches enqueued so far
	stopped  bool
	stop     chan struct{} // closed by halt
	wake     chan struct{} // an event was queued
	done     chan struct{} // closed when run has returned

	// Owned by run.
	overlay stateOverlay

	// Results not yet sent, under resMu: run adds to them, flush takes
	// them, from run or from flushTimer.
	resMu        sync.Mutex
	pending      []*eddyv1.Result
	pendingBytes int64
	flushTimer   *time.Timer // flushes resultsFlushInterval after the first pending result

	// flushMu is held while results are taken and sent, so that flushes
	// from run and from flushTimer send in offset order, and so that abandon
	// can wait for a send in progress: nothing is sent after a RevokeAck.
	flushMu   sync.Mutex
	abandoned atomic.Bool // results are no longer sent
}

func newPartition(s *session, key tp, epoch uint64, prev *partition) *partition {
	ctx, cancel := context.WithCancel(s.handlerCtx)
	return &partition{
		s:      s,
		key:    key,
		epoch:  epoch,
		prev:   prev,
		ctx:    ctx,
		cancel: cancel,
		stop:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// enqueue adds events to the queue; false if the partition is halted.
func (p *partition) enqueue(evs []*eddyv1.Event) bool {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	p.batchSeq++
	for _, ev := range evs {
		p.queue = append(p.queue, queued{ev: ev, batch: p.batchSeq})
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// halt makes the partition start no more events and drops the queued ones,
// returning how many (and their key+value bytes). The event in progress,
// if any, finishes and its result is sent. Idempotent.
func (p *partition) halt() (events int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return 0, 0
	}
	p.stopped = true
	close(p.stop)
	for _, q := range p.queue {
		events++
		bytes += eventBytes(q.ev)
	}
	p.queue = nil
	return events, bytes
}

// abandon halts the partition, cancels its handler and stops sending its
// results: nobody will use them. With waitSend, it returns only once a send
// of results in progress has finished, so that no result follows what the
// caller sends next.
func (p *partition) abandon(waitSend bool) {
	p.halt()
	p.abandoned.Store(true)
	p.cancel()
	if waitSend {
		// Taking the lock waits for a send in progress to finish.
		p.flushMu.Lock()
		p.flushMu.Unlock()
	}
}

// finish waits until the halted partition's goroutine has sent its last
// results, or until deadline, or until closing is closed (nil: never). The
// handler's context is cancelled shortly before the deadline, so a handler
// that watches it can return in time for its result to be sent. It returns
// false if the goroutine did not finish; the caller then abandons the
// partition.
func (p *partition) finish(deadline time.Time, closing <-chan struct{}) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	remaining := time.Until(deadline)
	margin := min(remaining/10, time.Second)
	stopHandler := time.AfterFunc(remaining-margin, p.cancel)
	defer stopHandler.Stop()
	timer := time.NewTimer(remaining)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
	case <-closing:
	}
	return false
}

func (p *partition) run() {
	defer p.s.wg.Done()
	defer close(p.done)
	defer p.cancel()
	if p.prev != nil {
		// Keep the partition's events strictly one at a time across
		// assignments: the previous one's event in progress ends first.
		select {
		case <-p.prev.done:
		case <-p.ctx.Done():
			return
		}
		p.prev = nil
	}
	for {
		ev, batch, ok := p.next()
		if !ok {
			break
		}
		if !p.acquire() {
			// Halted before the event started: it is dropped like the
			// queued ones.
			p.s.finished(1, eventBytes(ev))
			break
		}
		p.overlay.startEvent(batch)
		res := p.s.a.process(p.ctx, p.s, p.key.topic, p.key.partition, p.epoch, ev, &p.overlay)
		p.release()
		if p.addResult(res, eventBytes(ev)) >= maxResultsPerMessage || p.queueLen() == 0 {
			p.flush()
		}
	}
	p.flush()
}

// addResult adds a result to the pending ones and returns how many are
// pending. The first one arms flushTimer: however long the next events take,
// or wait for a WithConcurrency slot, the worker gets the results within
// resultsFlushInterval and sees the partition progress, rather than taking
// the instance as hung at its processing_timeout
// (docs/protocol.md#events-and-results).
func (p *partition) addResult(res *eddyv1.Result, bytes int64) int {
	p.resMu.Lock()
	defer p.resMu.Unlock()
	p.pending = append(p.pending, res)
	p.pendingBytes += bytes
	if len(p.pending) == 1 {
		if p.flushTimer == nil {
			p.flushTimer = time.AfterFunc(resultsFlushInterval, p.flush)
		} else {
			p.flushTimer.Reset(resultsFlushInterval)
		}
	}
	return len(p.pending)
}

// queued is an event waiting to be processed, with the number of the
// batch it came in.
type queued struct {
	ev    *eddyv1.Event
	batch uint64
}

// next returns the next event and its batch number, waiting for one;
// false once halted or cancelled.
func (p *partition) next() (*eddyv1.Event, uint64, bool) {
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return nil, 0, false
		}
		if len(p.queue) > 0 {
			q := p.queue[0]
			p.queue[0] = queued{}
			p.queue = p.queue[1:]
			p.mu.Unlock()
			return q.ev, q.batch, true
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.stop:
		case <-p.ctx.Done():
			return nil, 0, false
		}
	}
}

func (p *partition) queueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// acquire takes a WithConcurrency slot; false if the partition was halted
// or cancelled first.
func (p *partition) acquire() bool {
	if p.s.a.sem != nil {
		select {
		case p.s.a.sem <- struct{}{}:
		case <-p.stop:
			return false
		case <-p.ctx.Done():
			return false
		}
	}
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped {
		p.release()
		return false
	}
	return true
}

func (p *partition) release() {
	if p.s.a.sem != nil {
		<-p.s.a.sem
	}
}

// flush sends the pending results, unless the partition was abandoned, and
// gives their credit back. Safe for concurrent use: run and flushTimer both
// call it. The credit is returned under flushMu too, so that once run's
// last flush returns, nothing of the partition is left to send.
func (p *partition) flush() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.resMu.Lock()
	results, events, bytes := p.pending, len(p.pending), p.pendingBytes
	p.pending, p.pendingBytes = nil, 0
	if p.flushTimer != nil {
		// A timer already firing finds nothing, or the next results early.
		p.flushTimer.Stop()
	}
	p.resMu.Unlock()
	if events == 0 {
		return
	}
	if !p.abandoned.Load() {
		p.s.sendResults(p.key, p.epoch, results)
	}
	p.s.finished(events, bytes)
}
