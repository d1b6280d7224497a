package live

import (
	"context"
	"errors"
	"time"

	"github.com/eddy-streams/eddy/worker/tables"
)

// Restorer brings a table partition's local store up to its changelog's
// end; tables.Restorer is the real one. Restore is called off the
// manager's goroutine, several at once; the returned store is the
// caller's, which closes it when the partition leaves.
type Restorer interface {
	Restore(ctx context.Context, table string, partition int32) (*tables.Store, tables.Progress, error)
	// Resume brings an open store (a standby replica's, handed over) up to
	// its changelog's end; the store stays the caller's.
	Resume(ctx context.Context, st *tables.Store) (tables.Progress, error)
}

// Standbys are the worker's standby replicas (tables.Standbys is the real
// one). Take is called off the manager's goroutine when a partition's
// tables are recovered: it stops the table partition's local replica, if
// any, and hands its open store over (nil when there is none), so that
// the recovery reads only the tail of the changelog; until Release (the
// partition left), no replica of it is started. ctx is the restore's: the
// manager cancels it before Release, and a Take whose ctx is done must
// claim nothing (the restore goroutine may reach Take only after the
// partition left and was released).
type Standbys interface {
	Take(ctx context.Context, table string, partition int32) *tables.Store
	Release(table string, partition int32)
}

// Recovery restores the table partitions of a newly assigned source
// partition. Safe for concurrent use (its fields are read only).
type Recovery struct {
	Restorer Restorer
	// Standbys, if set, hands over the stores of standby replicas.
	Standbys Standbys
	// Backoff is the first wait after a failed restore; it doubles up to
	// 30 times itself.
	Backoff time.Duration
}

// Restore restores one table partition, trying again until ctx ends; each
// failure is logged (Warn) on log.
func (r Recovery) Restore(ctx context.Context, log interface {
	Warn(string, ...any)
}, table string, partition int32) (*tables.Store, tables.Progress, error) {
	wait := r.Backoff
	for {
		st, prog, err := r.takeOrRestore(ctx, table, partition)
		if err == nil {
			return st, prog, nil
		}
		if ctx.Err() != nil {
			return nil, tables.Progress{}, ctx.Err()
		}
		log.Warn("table restore failed; trying again", "table", table, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, tables.Progress{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*r.Backoff)
	}
}

// takeOrRestore continues from the store of the partition's standby
// replica when one runs here (its store is handed over, never opened a
// second time: stores lock their file), else restores from the local
// store on disk.
func (r Recovery) takeOrRestore(ctx context.Context, table string, partition int32) (*tables.Store, tables.Progress, error) {
	if r.Standbys != nil {
		if st := r.Standbys.Take(ctx, table, partition); st != nil {
			prog, err := r.Restorer.Resume(ctx, st)
			if err != nil {
				return nil, prog, errors.Join(err, st.Close())
			}
			return st, prog, nil
		}
	}
	return r.Restorer.Restore(ctx, table, partition)
}
