package tables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// Defaults of Config.
const (
	// DefaultProgressInterval is how often OnProgress hears from a running
	// restore or standby.
	DefaultProgressInterval = time.Second
	// DefaultLogInterval is how often a running restore logs its progress.
	DefaultLogInterval = 5 * time.Second
	// DefaultBatchSize is how many changelog records a restore applies per
	// store commit.
	DefaultBatchSize = 10000
	// DefaultMaxCheckpointAge is how stale a checkpoint may be and still be
	// continued from: DeleteRetention less a margin for clocks and for
	// the time a record takes from produce to compaction.
	DefaultMaxCheckpointAge = 20 * time.Hour
)

// ErrNoChangelog is returned when a table's changelog topic does not exist
// or lacks the partition (create it with Changelog.Spec first).
var ErrNoChangelog = errors.New("tables: changelog topic or partition does not exist")

// errOutOfRange: the reader's position fell below the changelog's low
// watermark (records were deleted while reading).
var errOutOfRange = errors.New("tables: changelog offset out of range")

// Config configures a Restorer, and through it every restore and standby it
// runs. Zero fields take the documented default.
type Config struct {
	// App is the app name: changelog topics are <App>-<table>-changelog.
	// Required.
	App string
	// Dir is the data directory (the app file's data_dir); stores live in
	// <Dir>/<table>/<partition>.db. Required.
	Dir string
	// Reader reads the changelogs for every restore and standby: the
	// worker's one transport.ChangelogReader (TransportReader), or a fake
	// in tests. Default: a transport.ChangelogReader built from Kafka,
	// created by NewRestorer and closed by Restorer.Close.
	Reader ChangelogReader
	// Kafka holds the Kafka client settings of the default Reader:
	// Brokers (required without a Reader), ClientID, IsolationLevel
	// (transport.ReadCommitted for processing_guarantee exactly_once, so
	// only committed changelog records are restored), ReachTimeout (bounds
	// each metadata request) and Overrides (those the reader owns are
	// skipped, docs/kafka.md). GroupID is not used: the reader is assigned
	// partitions and joins no group. Unused when Reader is set.
	Kafka transport.Config
	// Logger receives lifecycle, progress and error logs (keys table,
	// partition, topic, offset, err). Default: discard.
	Logger *slog.Logger
	// Errors, if set, records the Kafka errors the default Reader reports, for
	// the status RPC. Default: not recorded (still logged).
	Errors *transport.ErrorLog
	// OnProgress, if set, is called with the progress of each restore and
	// standby: when it starts, every ProgressInterval, and when a restore
	// is done (Done set). It runs on the restoring goroutine and must
	// return quickly. Default: none.
	OnProgress func(Progress)
	// ProgressInterval is how often OnProgress is called while records
	// are read. Default: 1s.
	ProgressInterval time.Duration
	// LogInterval is how often a running restore logs its progress at
	// Info. Default: 5s.
	LogInterval time.Duration
	// BatchSize is how many changelog records are applied per store
	// commit. Default: 10000.
	BatchSize int
	// MaxCheckpointAge bounds how long ago a store may last have been
	// known current (caught up with its changelog) for a restore to
	// continue from its checkpoint when records were written since: past
	// it, a tombstone the store never saw may have been removed by
	// compaction (tombstones are kept DeleteRetention), so the partition
	// is rebuilt. Negative disables the check. Default: 20h.
	MaxCheckpointAge time.Duration
	// Sync opens stores WithSync (fsync every commit). Default: false.
	Sync bool
}

func (c Config) validate() error {
	switch {
	case c.App == "":
		return errors.New("tables: Config.App: required")
	case c.Dir == "":
		return errors.New("tables: Config.Dir: required")
	case c.BatchSize < 0:
		return fmt.Errorf("tables: Config.BatchSize: must not be negative, got %d", c.BatchSize)
	case c.ProgressInterval < 0 || c.LogInterval < 0:
		return errors.New("tables: Config.ProgressInterval, LogInterval: must not be negative")
	}
	if c.Reader != nil {
		return nil
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("tables: Config.Kafka: %w", err)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.LogInterval == 0 {
		c.LogInterval = DefaultLogInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxCheckpointAge == 0 {
		c.MaxCheckpointAge = DefaultMaxCheckpointAge
	}
	if c.Kafka.ReachTimeout == 0 {
		c.Kafka.ReachTimeout = transport.DefaultReachTimeout
	}
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = transport.DefaultClientID
	}
}

// Progress is the state of one restore or standby of a table partition.
// Offsets are changelog offsets. Compaction leaves gaps in the offsets, so
// Remaining is an upper bound on the records still to read.
type Progress struct {
	// Table and Partition name the table partition.
	Table     string
	Partition int32
	// Standby is set for a standby replica's tailing.
	Standby bool
	// Rebuild is set when the store is rebuilt from the beginning of the
	// changelog rather than continued from its checkpoint; Reason says
	// why (e.g. "no local state", "local checkpoint 912 is ahead of the
	// changelog end 300").
	Rebuild bool
	Reason  string
	// From is the first offset replayed; To the offset the restore stops
	// at (the changelog's end when it started; exclusive). For a standby,
	// To is the latest end seen.
	From, To int64
	// Position is the next offset to read.
	Position int64
	// Records counts the changelog records read (and applied).
	Records int64
	// Elapsed is the time since the restore started.
	Elapsed time.Duration
	// Rate is Records per second over Elapsed.
	Rate float64
	// ETA estimates the time left from the offsets covered so far; -1
	// when unknown.
	ETA time.Duration
	// Done is set on a restore's last report.
	Done bool
	// Err, on the last report of a restore that failed, says why.
	Err string
}

// Remaining returns To - Position (at least 0): an upper bound on the
// records still to read.
func (p Progress) Remaining() int64 { return max(p.To-p.Position, 0) }

// Restorer restores table partitions from their changelogs and runs
// standby replicas. Every Restore and Standby reads through the one
// Config.Reader, which has the partition assigned while it reads (no
// consumer group). A Restorer is safe for concurrent use: restore several
// partitions at once by calling Restore from several goroutines.
type Restorer struct {
	cfg    Config
	reader ChangelogReader
	own    *transport.ChangelogReader // the default Reader, closed by Close
}

// NewRestorer validates cfg and returns a Restorer. It does not contact
// Kafka (the default Reader connects on its first restore).
func NewRestorer(cfg Config) (*Restorer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	r := &Restorer{cfg: cfg, reader: cfg.Reader}
	if r.reader == nil {
		tr, err := transport.NewChangelogReader(cfg.Kafka, nil,
			transport.WithLogger(cfg.Logger), transport.WithErrorLog(cfg.Errors))
		if err != nil {
			return nil, fmt.Errorf("tables: Config.Kafka: %w", err)
		}
		r.reader, r.own = TransportReader(tr), tr
	}
	return r, nil
}

// Close closes the default Reader, if NewRestorer created one; call it
// once every Restore and Standby has ended. A Reader passed in Config is
// the caller's to close. Idempotent.
func (r *Restorer) Close() error {
	if r.own == nil {
		return nil
	}
	return r.own.Close()
}

func (r *Restorer) storeOpts() []StoreOption { return []StoreOption{WithSync(r.cfg.Sync)} }

// openForRecovery opens a table partition's store; a corrupt file is
// logged, deleted and replaced by an empty store, and reason says why.
func (r *Restorer) openForRecovery(table string, partition int32) (st *Store, reason string, err error) {
	st, err = openStore(r.cfg.Dir, table, partition, func(err error) bool {
		reason = "local store unusable: " + err.Error()
		if ce := (*CorruptError)(nil); errors.As(err, &ce) {
			reason = "local store unusable: " + ce.Reason
			if ce.Err != nil {
				reason += ": " + ce.Err.Error()
			}
		}
		r.cfg.Logger.Warn("table store unusable; deleting it to rebuild from the changelog",
			"table", table, "partition", partition, "err", err)
		return true
	}, r.storeOpts()...)
	return st, reason, err
}

// Restore opens the store of a table partition (creating it if missing)
// and brings it up to the end its changelog had when Restore started,
// reading from the store's checkpoint on. It rebuilds the store from the
// beginning of the changelog, logging why, when the local state cannot be
// trusted: the file is missing or corrupt (deleted first), the changelog
// topic was recreated (its topic id changed), the checkpoint is at or past
// the changelog's end, records after the checkpoint were deleted (low
// watermark above it), or the store was last known current longer than
// Config.MaxCheckpointAge ago. See docs/tables.md for why each case is
// safe.
//
// It returns the open store (the caller owns it and must Close it), and
// the final Progress: Records is the number of changelog records read. On
// error the store is closed and nil is returned; what was applied stays
// checkpointed, so the next Restore continues from there when it can.
// Restore is bounded by ctx only: an unreachable broker makes it wait.
func (r *Restorer) Restore(ctx context.Context, table string, partition int32) (*Store, Progress, error) {
	st, reason, err := r.openForRecovery(table, partition)
	if err != nil {
		return nil, Progress{Table: table, Partition: partition}, err
	}
	p, err := r.resume(ctx, st, reason)
	if err != nil {
		return nil, p, errors.Join(err, st.Close())
	}
	return st, p, nil
}

// Resume is Restore for a store that is already open, e.g. the one a
// Standby's Stop handed over: only the tail past its checkpoint is read
// (or the store is reset and rebuilt, for the reasons Restore gives). The
// store stays open, and the caller's, whatever the outcome.
func (r *Restorer) Resume(ctx context.Context, st *Store) (Progress, error) {
	return r.resume(ctx, st, "")
}

func (r *Restorer) resume(ctx context.Context, st *Store, reason string) (Progress, error) {
	log := r.cfg.Logger.With("table", st.table, "partition", st.partition)
	sess := r.newSession(st, log)

	var records int64
	for attempt := 0; ; attempt++ {
		pl, err := sess.plan(ctx, reason)
		if err != nil {
			return Progress{Table: st.table, Partition: st.partition, Records: records}, err
		}
		tr := newTracker(&r.cfg, log, Progress{
			Table: st.table, Partition: st.partition,
			Rebuild: pl.rebuild, Reason: pl.reason,
			From: pl.from, To: pl.end, Position: pl.from, Records: records,
		}, nil)
		logPlan(log, pl, false)
		tr.report(time.Now(), true)
		if pl.from < pl.end {
			err = sess.consume(ctx, pl.from, pl.end, tr, false)
			records = tr.p.Records
			if errors.Is(err, errOutOfRange) && attempt < 2 {
				reason = "changelog records were deleted while they were read"
				log.Warn("changelog offsets out of range during restore; starting over", "topic", sess.topic)
				continue
			}
			if err != nil {
				tr.p.Done, tr.p.Err = true, err.Error()
				tr.report(time.Now(), true)
				return tr.p, err
			}
		}
		// The store now holds every record written before the end was
		// measured.
		if err := st.markSynced(pl.topicID, pl.at); err != nil {
			return tr.p, err
		}
		tr.p.Position = max(tr.p.Position, pl.end)
		tr.p.Done = true
		tr.report(time.Now(), true)
		log.Info("table partition restored", "topic", sess.topic,
			"records", tr.p.Records, "offset", st.LastOffset(),
			"took", tr.p.Elapsed.Round(time.Millisecond), "rate", int64(tr.p.Rate))
		return tr.p, nil
	}
}

func logPlan(log *slog.Logger, pl plan, standby bool) {
	what := "restoring table partition"
	if standby {
		what = "standby replica tailing table partition"
	}
	attrs := []any{"topic", pl.topic, "from", pl.from, "to", pl.end, "behind", max(pl.end-pl.from, 0)}
	switch {
	case pl.rebuild && pl.reset:
		log.Warn(what+" from the beginning: local state not trusted", append(attrs, "reason", pl.reason)...)
	case pl.rebuild:
		log.Info(what+" from the beginning", append(attrs, "reason", pl.reason)...)
	default:
		log.Info(what+" from its checkpoint", attrs...)
	}
}

// session is one restore or standby's reading of one changelog partition
// into one store, through the Restorer's Reader.
type session struct {
	r     *Restorer
	st    *Store
	topic string
	log   *slog.Logger
}

func (r *Restorer) newSession(st *Store, log *slog.Logger) *session {
	return &session{r: r, st: st, topic: ChangelogTopic(r.cfg.App, st.table), log: log}
}

// plan is where a replay starts and ends, and why.
type plan struct {
	topic   string
	topicID string    // "" if the broker reports none
	at      time.Time // when the end was measured
	low     int64     // the changelog partition's low watermark
	end     int64     // its end (high watermark, or LSO for read_committed)
	from    int64     // first offset to read
	rebuild bool      // from the beginning
	reset   bool      // the store was emptied first
	reason  string
}

// plan measures the changelog partition and decides whether the store's
// checkpoint can be continued from; if not, it empties the store. forced,
// when set, is a reason to rebuild regardless.
func (s *session) plan(ctx context.Context, forced string) (plan, error) {
	pl := plan{topic: s.topic, at: time.Now()}
	id, err := s.describe(ctx)
	if err != nil {
		return pl, err
	}
	pl.topicID = id
	if pl.low, pl.end, err = s.r.reader.Watermarks(ctx, s.topic, s.st.partition); err != nil {
		if errors.Is(err, transport.ErrUnknownTopic) {
			return pl, fmt.Errorf("%w: %v", ErrNoChangelog, err)
		}
		return pl, fmt.Errorf("tables: watermarks of %s[%d]: %w", s.topic, s.st.partition, err)
	}
	m := s.st.checkpoint()
	count, err := s.st.Count()
	if err != nil {
		return pl, err
	}
	var why string
	switch {
	case forced != "":
		why = forced
	case m.Offset == NoOffset && count == 0:
		// Nothing local to distrust: read everything there is.
		pl.from = pl.low
		if m.TopicID == "" || m.TopicID != id {
			pl.rebuild, pl.reason = true, "no local state"
		}
		return pl, s.st.markSynced(id, time.Time{})
	case m.Offset == NoOffset:
		why = fmt.Sprintf("%d local values but no checkpoint", count)
	case m.TopicID == "" && id != "":
		why = "the local checkpoint does not name its changelog topic"
	case id != "" && m.TopicID != id:
		why = fmt.Sprintf("the changelog topic was recreated (topic id %s, the store was built from %s)", id, m.TopicID)
	case m.Offset >= pl.end:
		why = fmt.Sprintf("local checkpoint %d is ahead of the changelog end %d", m.Offset, pl.end)
	case m.Offset+1 < pl.low:
		why = fmt.Sprintf("changelog records %d..%d after the local checkpoint were deleted (low watermark %d)", m.Offset+1, pl.low-1, pl.low)
	case s.r.cfg.MaxCheckpointAge > 0 && m.Offset+1 < pl.end && m.SyncedAt == 0:
		why = "the store was never known to be current (an interrupted rebuild), and records were written since"
	case s.r.cfg.MaxCheckpointAge > 0 && m.Offset+1 < pl.end &&
		pl.at.Sub(time.UnixMilli(m.SyncedAt)) > s.r.cfg.MaxCheckpointAge:
		why = fmt.Sprintf("the store was last current %s ago (max %s): a tombstone may have been compacted away since",
			pl.at.Sub(time.UnixMilli(m.SyncedAt)).Round(time.Minute), s.r.cfg.MaxCheckpointAge)
	default:
		pl.from = m.Offset + 1
		return pl, s.st.markSynced(id, time.Time{})
	}
	if err := s.st.reset(id); err != nil {
		return pl, err
	}
	pl.rebuild, pl.reset, pl.reason, pl.from = true, true, why, pl.low
	return pl, nil
}

// describe returns the changelog topic's id ("" if the broker has none)
// and checks that the partition exists.
func (s *session) describe(ctx context.Context) (string, error) {
	info, err := s.r.reader.DescribeTopic(ctx, s.topic)
	switch {
	case errors.Is(err, transport.ErrUnknownTopic):
		return "", fmt.Errorf("%w: %q", ErrNoChangelog, s.topic)
	case err != nil:
		return "", fmt.Errorf("tables: describe changelog %q: %w", s.topic, err)
	case int(s.st.partition) >= info.Partitions:
		return "", fmt.Errorf("%w: %q has %d partitions, table partition %d does not exist",
			ErrNoChangelog, s.topic, info.Partitions, s.st.partition)
	}
	return info.ID, nil
}

// consume reads the changelog partition from offset from and applies it to
// the store in batches, until the position reaches until (a restore) or,
// with until < 0 (a standby), until ctx ends. Pending records are applied
// before it returns, also on error and cancellation, so the store's
// checkpoint covers everything read.
func (s *session) consume(ctx context.Context, from, until int64, tr *tracker, standby bool) (err error) {
	stream, err := s.r.reader.Add(s.topic, s.st.partition, from)
	if err != nil {
		return fmt.Errorf("tables: read %s[%d]: %w", s.topic, s.st.partition, err)
	}
	defer s.r.reader.Remove(s.topic, s.st.partition)

	batchSize := s.r.cfg.BatchSize
	batch := make([]Mutation, 0, min(batchSize, 4096))
	last := NoOffset       // offset of the last record in batch
	var syncedAt time.Time // a standby's latest catch-up, not yet recorded
	var lastSynced time.Time
	flush := func() error {
		if len(batch) == 0 && syncedAt.IsZero() {
			return nil
		}
		if err := s.st.apply(batch, last, syncedAt); err != nil {
			return err
		}
		clear(batch) // drop references to the records' bytes
		batch = batch[:0]
		tr.committed(time.Now())
		if !syncedAt.IsZero() {
			lastSynced = syncedAt
		}
		syncedAt = time.Time{}
		return nil
	}
	defer func() { err = errors.Join(err, flush()) }()

	var skipped int64
	caughtUp := false
	for until < 0 || tr.p.Position < until {
		if err := ctx.Err(); err != nil {
			return err
		}
		evs, err := stream.Fetch(ctx, idleWait)
		if err != nil {
			return s.readError(ctx, err)
		}
		if len(evs) == 0 && standby && len(batch) > 0 {
			// Idle: a standby commits what it has, so its store is fresh.
			if err := flush(); err != nil {
				return err
			}
		}
		for _, e := range evs {
			if until >= 0 && tr.p.Position >= until {
				break
			}
			if e.EOF {
				tr.p.Position = max(tr.p.Position, e.Offset)
				if !standby {
					continue
				}
				tr.p.To = max(tr.p.To, e.Offset)
				now := time.Now()
				if !caughtUp {
					caughtUp = true
					s.log.Info("standby replica caught up", "topic", s.topic, "offset", e.Offset,
						"records", tr.p.Records, "took", now.Sub(tr.start).Round(time.Millisecond))
				}
				// Caught up: record it with the next commit, or on its
				// own once a minute when nothing else is written.
				syncedAt = now
				if len(batch) > 0 || now.Sub(lastSynced) > time.Minute {
					if err := flush(); err != nil {
						return err
					}
				}
				continue
			}
			if until >= 0 && e.Offset >= until {
				tr.p.Position = until
				continue
			}
			if len(e.Key) == 0 {
				// Not written by Eddy (compacted topics refuse null
				// keys, Changelog refuses empty ones): nothing to apply.
				if skipped++; skipped == 1 {
					s.log.Warn("changelog record without a key ignored", "topic", s.topic, "offset", e.Offset)
				}
			} else {
				batch = append(batch, mutationOf(e.Key, e.Value))
			}
			last = e.Offset
			tr.p.Position = e.Offset + 1
			tr.p.Records++
			if len(batch) >= batchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		tr.report(time.Now(), false)
	}
	return nil
}

// idleWait is how long a consume waits for records before it counts the
// changelog as idle (a standby then commits what it holds).
const idleWait = 100 * time.Millisecond

// readError maps the error that ended a stream to the package's.
func (s *session) readError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, transport.ErrOffsetOutOfRange):
		return fmt.Errorf("%w: %v", errOutOfRange, err)
	case errors.Is(err, transport.ErrUnknownTopic):
		return fmt.Errorf("%w: %q: %v", ErrNoChangelog, s.topic, err)
	}
	return fmt.Errorf("tables: read %s[%d]: %w", s.topic, s.st.partition, err)
}

// tracker computes and publishes a Progress.
type tracker struct {
	cfg        *Config
	log        *slog.Logger
	p          Progress
	start      time.Time
	lastReport time.Time
	lastLog    time.Time
	publish    func(Progress) // besides cfg.OnProgress; may be nil
}

func newTracker(cfg *Config, log *slog.Logger, p Progress, publish func(Progress)) *tracker {
	now := time.Now()
	return &tracker{cfg: cfg, log: log, p: p, start: now, lastReport: now, lastLog: now, publish: publish}
}

// derive updates the fields computed from the others.
func (t *tracker) derive(now time.Time) {
	t.p.Elapsed = now.Sub(t.start)
	t.p.Rate, t.p.ETA = 0, -1
	if secs := t.p.Elapsed.Seconds(); secs > 0 {
		t.p.Rate = float64(t.p.Records) / secs
		if covered := t.p.Position - t.p.From; covered > 0 {
			t.p.ETA = time.Duration(float64(t.p.Remaining()) / (float64(covered) / secs) * float64(time.Second))
		}
	}
	if t.p.Done {
		t.p.ETA = 0
	}
}

// committed publishes the progress (not to OnProgress, which is
// rate-limited) once the store holds it, so a standby's Progress matches
// its store.
func (t *tracker) committed(now time.Time) {
	if t.publish != nil {
		t.derive(now)
		t.publish(t.p)
	}
}

// report updates the derived fields and, if due (or force), publishes
// them and logs progress.
func (t *tracker) report(now time.Time, force bool) {
	due := force || now.Sub(t.lastReport) >= t.cfg.ProgressInterval
	logDue := !t.p.Done && now.Sub(t.lastLog) >= t.cfg.LogInterval
	if !due && !logDue {
		return
	}
	t.derive(now)
	if due {
		t.lastReport = now
		if t.publish != nil {
			t.publish(t.p)
		}
		if t.cfg.OnProgress != nil {
			t.cfg.OnProgress(t.p)
		}
	}
	if logDue {
		t.lastLog = now
		msg := "restore progress"
		if t.p.Standby {
			msg = "standby replica progress"
		}
		t.log.Info(msg, "offset", t.p.Position, "records", t.p.Records, "remaining", t.p.Remaining(),
			"rate", int64(t.p.Rate), "eta", t.p.ETA.Round(time.Second))
	}
}
