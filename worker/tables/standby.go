package tables

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Standby backoff bounds: after a failure, tailing starts again after
// standbyBackoffMin, doubling up to standbyBackoffMax.
const (
	standbyBackoffMin = 500 * time.Millisecond
	standbyBackoffMax = 30 * time.Second
)

// Standby is a standby replica of a table partition owned by another
// worker: it tails the partition's changelog into a local store, so that
// when the partition moves here the takeover (Restorer.Resume on the store
// Stop returns) reads only the tail. Records are committed to the store in
// batches as they arrive (at the latest when the changelog goes quiet for
// 100ms), each batch with its checkpoint.
//
// The tailing goroutine survives errors (broker down, changelog deleted,
// store write failures): it logs them, waits (0.5s doubling to 30s) and
// starts again, re-checking the store as a restore does. Its methods are
// safe for concurrent use.
//
// Shutdown (Stop):
//  1. Stop reading; apply the records already read, with their checkpoint.
//  2. Remove the partition from the Restorer's changelog reader.
//  3. Hand the open store to the caller (Stop) or close it (Close).
type Standby struct {
	r    *Restorer
	st   *Store
	stop context.CancelFunc
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	prog Progress
	err  error
}

// StartStandby opens the store of a table partition (a corrupt file is
// deleted, logged, and rebuilt) and starts tailing its changelog in a
// goroutine of its own: first a restore as Restore would do it, then
// continuously. The store is locked until Stop or Close.
func (r *Restorer) StartStandby(table string, partition int32) (*Standby, error) {
	st, reason, err := r.openForRecovery(table, partition)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sb := &Standby{
		r: r, st: st, stop: cancel, done: make(chan struct{}),
		prog: Progress{Table: table, Partition: partition, Standby: true, ETA: -1},
	}
	go sb.run(ctx, reason)
	return sb, nil
}

func (sb *Standby) run(ctx context.Context, reason string) {
	defer close(sb.done)
	log := sb.r.cfg.Logger.With("table", sb.st.table, "partition", sb.st.partition, "standby", true)
	backoff := standbyBackoffMin
	var records int64
	for {
		began := time.Now()
		err := sb.tail(ctx, log, reason, &records)
		reason = ""
		if ctx.Err() != nil {
			return
		}
		sb.mu.Lock()
		sb.err = err
		sb.mu.Unlock()
		if time.Since(began) > time.Minute {
			backoff = standbyBackoffMin
		}
		log.Warn("standby replica stopped tailing the changelog; starting again", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, standbyBackoffMax)
	}
}

// tail plans like a restore and then reads until ctx ends or an error.
func (sb *Standby) tail(ctx context.Context, l *slog.Logger, reason string, records *int64) error {
	sess := sb.r.newSession(sb.st, l)
	pl, err := sess.plan(ctx, reason)
	if err != nil {
		return err
	}
	logPlan(l, pl, true)
	tr := newTracker(&sb.r.cfg, l, Progress{
		Table: sb.st.table, Partition: sb.st.partition, Standby: true,
		Rebuild: pl.rebuild, Reason: pl.reason,
		From: pl.from, To: pl.end, Position: pl.from, Records: *records,
	}, sb.publish)
	tr.report(time.Now(), true)
	sb.mu.Lock()
	sb.err = nil
	sb.mu.Unlock()
	err = sess.consume(ctx, pl.from, -1, tr, true)
	*records = tr.p.Records
	tr.report(time.Now(), true)
	return err
}

func (sb *Standby) publish(p Progress) {
	sb.mu.Lock()
	sb.prog = p
	sb.mu.Unlock()
}

// Progress returns the latest progress of the tailing: Position is the next
// changelog offset to read, To the latest end seen, Records the records
// read since StartStandby.
func (sb *Standby) Progress() Progress {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.prog
}

// Err returns the error that last stopped the tailing, or nil while it
// runs normally.
func (sb *Standby) Err() error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.err
}

// Store returns the standby's store, for reads (e.g. TableService queries
// served from a replica). The Standby keeps writing to it; do not Close it.
func (sb *Standby) Store() *Store { return sb.st }

// Stop stops tailing, commits what was read with its checkpoint and returns
// the open store, which now belongs to the caller: pass it to
// Restorer.Resume to take the partition over (only the tail is read), or
// Close it. A second Stop (or a Stop after Close) returns nil and
// ErrClosed.
func (sb *Standby) Stop() (*Store, error) {
	var st *Store
	sb.once.Do(func() {
		sb.stop()
		<-sb.done
		st = sb.st
	})
	if st == nil {
		return nil, ErrClosed
	}
	return st, nil
}

// Close stops tailing (as Stop does) and closes the store, leaving it
// checkpointed on disk, so that a later Restore continues from it. It is
// idempotent, and a no-op after Stop (the store is the caller's then).
func (sb *Standby) Close() error {
	var err error
	sb.once.Do(func() {
		sb.stop()
		<-sb.done
		err = sb.st.Close()
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}
