package tables

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/buntdb"
)

// NoOffset is the checkpoint of a store that has applied no changelog record
// yet, and the offset to pass to Store.Apply for a batch that must not move
// the checkpoint.
const NoOffset int64 = -1

// Errors of Store. Classify with errors.Is.
var (
	// ErrClosed is returned by the methods of a closed Store.
	ErrClosed = errors.New("tables: store closed")
	// ErrLocked is returned by Open when the store file is already open,
	// in this process or another (a second writer would corrupt it).
	ErrLocked = errors.New("tables: store is open elsewhere")
	// ErrEmptyKey rejects a mutation with an empty key: changelog records
	// need a key for compaction, so tables have no empty key.
	ErrEmptyKey = errors.New("tables: empty key")
	// ErrOffsetBehind rejects Store.Apply with a changelog offset below the
	// store's checkpoint: the batch would be older than state already
	// recorded as applied.
	ErrOffsetBehind = errors.New("tables: changelog offset behind the checkpoint")
	// ErrCorrupt matches a *CorruptError.
	ErrCorrupt = errors.New("tables: store file unusable")
	// ErrBroken is a write that left buntdb unusable (it panics when it
	// cannot truncate a partial write, holding its write lock): the Store
	// recovers the panic into this error and reopens the file at its next
	// use (see Store).
	ErrBroken = errors.New("tables: store handle broken by a failed write")
)

// CorruptError reports a store file that cannot be trusted: it does not
// parse, its checkpoint record is missing or malformed, it belongs to
// another table partition, or the host restarted while it was open. The
// Restorer deletes such a file and rebuilds the partition from its
// changelog. It matches ErrCorrupt with errors.Is.
type CorruptError struct {
	// Path is the store file.
	Path string
	// Reason says what is wrong, e.g. "invalid database".
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error names the file and the reason.
func (e *CorruptError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("tables: store %s unusable: %s: %v", e.Path, e.Reason, e.Err)
	}
	return fmt.Sprintf("tables: store %s unusable: %s", e.Path, e.Reason)
}

// Unwrap returns the underlying error.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Mutation is one change to a table: set Key to Value, or delete Key.
type Mutation struct {
	// Key is the table key. Required (non-empty); any bytes.
	Key []byte
	// Value is the new value; ignored when Delete is set. A nil or empty
	// Value sets an empty value (present, zero length).
	Value []byte
	// Delete removes Key.
	Delete bool
}

// Entry is one key and its value, as returned by Store.Scan.
type Entry struct {
	Key   []byte
	Value []byte
}

// StoreOption configures Open.
type StoreOption func(*storeOptions)

type storeOptions struct {
	sync   bool
	bootID func() string
	fault  func(path string) error
}

// WithWriteFault injects disk faults, for tests of what uses a Store:
// fault is called with the store's path before each write transaction
// commits, while buntdb holds its write lock. An error fails that write as
// a full or read-only disk does (nothing is written; the error is
// returned wrapped); a panic is what buntdb does when it cannot truncate a
// partial write (its write lock stays held). Default: none.
func WithWriteFault(fault func(path string) error) StoreOption {
	return func(o *storeOptions) { o.fault = fault }
}

// WithSync makes every commit wait for fsync (buntdb SyncPolicy Always).
// Default: false — the file is fsynced once a second and at Close, which
// survives process crashes (kill -9) exactly; a host crash is detected on
// the next Open (see Open) and the partition rebuilt.
func WithSync(on bool) StoreOption { return func(o *storeOptions) { o.sync = on } }

// Key namespaces inside the buntdb file. User keys are stored as
// dataPrefix+key, so the checkpoint record can never collide with one, and
// buntdb's bytewise string order of stored keys is the bytewise order of
// user keys.
const (
	dataPrefix = "d"
	metaKey    = "m"
	// metaFormat is the version of the meta record; another value makes
	// the file unusable (rebuilt from the changelog).
	metaFormat = 1
)

// meta is the checkpoint record, stored as JSON under metaKey.
type meta struct {
	Format    int    `json:"format"`
	Table     string `json:"table"`
	Partition int32  `json:"partition"`
	// Offset is the last applied changelog offset, or NoOffset.
	Offset int64 `json:"offset"`
	// TopicID is the changelog topic's id when the store was restored
	// from it; a different id means the topic was deleted and recreated.
	TopicID string `json:"topic_id,omitempty"`
	// SyncedAt (Unix ms) is a time at which the store held every
	// changelog record written before it (0: unknown).
	SyncedAt int64 `json:"synced_at,omitempty"`
	// Clean is set by Close and cleared by Open.
	Clean bool `json:"clean"`
	// BootID is the host's boot id when the store was last opened.
	BootID string `json:"boot_id,omitempty"`
}

// Store is the local state of one table partition: a buntdb file holding
// the values and the checkpoint (the last applied changelog offset).
//
// Keys and values are arbitrary bytes. buntdb keys are Go strings compared
// with <, i.e. bytewise, and its file format length-prefixes every string,
// so binary keys (NUL, 0xFF, "\r\n") are stored and ordered exactly; Scan's
// prefix and paging follow bytewise order.
//
// The checkpoint never covers a value that is not in the file: Apply
// commits the values first and the checkpoint after them, in a second
// buntdb commit (a buntdb commit writes its records in map order, so one
// commit cut short by a crash could keep the checkpoint and lose values).
// A crash between the two leaves the store ahead of its checkpoint, which
// a replay from the checkpoint corrects, since replaying a changelog record
// is idempotent.
//
// A write that fails (a full or read-only disk) changes nothing: buntdb
// rolls the transaction back, in memory and in the file, and Apply returns
// the error; the caller keeps the batch and applies it again. buntdb panics
// instead when it cannot cut a partial write off the file, with its write
// lock held for ever: the Store recovers the panic (ErrBroken), abandons
// that handle (its lock, file descriptor and memory are never released)
// and, at its next use, loads the file again, which buntdb trims to its
// last whole command; until that works, every call returns the error.
//
// A Store is safe for concurrent use. Close it when done; the file stays
// locked (ErrLocked for a second Open) until then.
type Store struct {
	path      string
	table     string
	partition int32
	opts      storeOptions
	unlock    func() error

	// wmu serialises writers (Apply, reset, Close): each one
	// read-modifies-writes the meta record. Only wmu holders change m.
	wmu sync.Mutex

	mu     sync.RWMutex // guards db (replaced by reset and repair) and closed
	db     *buntdb.DB
	closed bool
	// broken is set when a write left db unusable (ErrBroken); brokenErr
	// says why. Set and cleared under mu's write lock.
	broken    atomic.Bool
	brokenErr atomic.Pointer[error]

	metaMu sync.Mutex // guards m for readers outside wmu
	m      meta
}

// validTable is what Kafka accepts in a topic name, which table names
// become part of ("." and ".." are rejected separately: they are paths).
var validTable = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

// StorePath returns the file of a table partition's store:
// <dir>/<table>/<partition>.db.
func StorePath(dir, table string, partition int32) string {
	return filepath.Join(dir, table, strconv.Itoa(int(partition))+".db")
}

func checkName(table string, partition int32) error {
	if !validTable.MatchString(table) || table == "." || table == ".." {
		return fmt.Errorf("tables: table name %q: want 1-200 of [a-zA-Z0-9._-], not . or ..", table)
	}
	if partition < 0 {
		return fmt.Errorf("tables: table %q: partition %d: must not be negative", table, partition)
	}
	return nil
}

// Open opens the store of a table partition at StorePath(dir, table,
// partition), creating the directory and an empty store if needed, and
// locks it against a second Open.
//
// A file that cannot be trusted gives a *CorruptError (ErrCorrupt): it does
// not parse, it has values but no checkpoint record, its checkpoint record
// is malformed or names another table partition, or it was not closed and
// the host has restarted since it was opened (Linux boot id): unsynced
// writes may then have been lost in any order. A process crash alone
// (kill -9) keeps every completed write, so the file stays trusted.
// Restorer.Restore deletes such a file and rebuilds; Open never does.
func Open(dir, table string, partition int32, opts ...StoreOption) (*Store, error) {
	return openStore(dir, table, partition, nil, opts...)
}

// openStore is Open; when onCorrupt is set, a corrupt file is passed to it
// and, if it returns true, deleted and replaced by an empty store while the
// lock is held.
func openStore(dir, table string, partition int32, onCorrupt func(error) bool, opts ...StoreOption) (*Store, error) {
	if err := checkName(table, partition); err != nil {
		return nil, err
	}
	o := storeOptions{bootID: hostBootID}
	for _, opt := range opts {
		opt(&o)
	}
	path := StorePath(dir, table, partition)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("tables: open table %q partition %d: %w", table, partition, err)
	}
	unlock, err := lockFile(strings.TrimSuffix(path, ".db") + ".lock")
	if err != nil {
		return nil, fmt.Errorf("tables: open table %q partition %d: %w", table, partition, err)
	}
	s := &Store{path: path, table: table, partition: partition, opts: o, unlock: unlock}
	err = s.load()
	if err != nil && errors.Is(err, ErrCorrupt) && onCorrupt != nil && onCorrupt(err) {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		} else {
			err = s.load()
		}
	}
	if err != nil {
		return nil, errors.Join(err, unlock())
	}
	return s, nil
}

// load opens the buntdb file, checks its meta record and marks the store
// open (not clean).
func (s *Store) load() error {
	if err := checkFile(s.path); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("tables: open %s: %w", s.path, err)
		}
		return &CorruptError{Path: s.path, Reason: "invalid database file", Err: err}
	}
	db, err := openBunt(s.path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("tables: open %s: %w", s.path, err)
		}
		return &CorruptError{Path: s.path, Reason: "invalid database file", Err: err}
	}
	policy := buntdb.SyncPolicy(buntdb.EverySecond)
	if s.opts.sync {
		policy = buntdb.Always
	}
	var cfg buntdb.Config
	if err := db.ReadConfig(&cfg); err == nil {
		cfg.SyncPolicy = policy
		err = db.SetConfig(cfg)
	}
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("tables: configure %s: %w", s.path, err)
	}
	m, err := readMeta(db, s.path)
	if err == nil && m.Format != 0 { // 0: a new, empty file
		switch {
		case m.Format != metaFormat:
			err = &CorruptError{Path: s.path, Reason: fmt.Sprintf("checkpoint format %d, want %d", m.Format, metaFormat)}
		case m.Table != s.table || m.Partition != s.partition:
			err = &CorruptError{Path: s.path, Reason: fmt.Sprintf("file belongs to table %q partition %d", m.Table, m.Partition)}
		case !m.Clean && m.BootID != "" && s.opts.bootID() != "" && m.BootID != s.opts.bootID():
			err = &CorruptError{Path: s.path, Reason: "the host restarted while the store was open (boot id changed): writes not yet synced to disk may be lost"}
		}
	}
	if err != nil {
		_ = db.Close()
		return err
	}
	if m.Format == 0 { // new file
		m = meta{Format: metaFormat, Table: s.table, Partition: s.partition, Offset: NoOffset}
	}
	m.Clean = false
	m.BootID = s.opts.bootID()
	if err := s.writeMeta(db, m); err != nil {
		if !errors.Is(err, ErrBroken) {
			_ = db.Close() // (a broken handle is locked for ever: Close would wait)
		}
		return fmt.Errorf("tables: write checkpoint of %s: %w", s.path, err)
	}
	s.db = db
	s.setMeta(m)
	return nil
}

// openBunt is buntdb.Open, turning a panic into an error: buntdb's loader
// indexes into command names without checking their length, so some
// malformed files (e.g. an empty command name) panic instead of failing.
func openBunt(path string) (db *buntdb.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("buntdb panicked loading the file: %v", p)
		}
	}()
	return buntdb.Open(path)
}

// readMeta returns the meta record, or a zero meta for an empty file.
func readMeta(db *buntdb.DB, path string) (meta, error) {
	var m meta
	err := db.View(func(tx *buntdb.Tx) error {
		raw, err := tx.Get(metaKey)
		if errors.Is(err, buntdb.ErrNotFound) {
			n, err := tx.Len()
			if err != nil {
				return err
			}
			if n > 0 {
				return &CorruptError{Path: path, Reason: fmt.Sprintf("%d values but no checkpoint record", n)}
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return &CorruptError{Path: path, Reason: "malformed checkpoint record", Err: err}
		}
		if m.Format == 0 {
			return &CorruptError{Path: path, Reason: "checkpoint record without format"}
		}
		return nil
	})
	return m, err
}

func (s *Store) writeMeta(db *buntdb.DB, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.update(db, func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(metaKey, string(b), nil)
		return err
	})
}

// update is db.Update with the fault hook (WithWriteFault) before the
// commit and buntdb's panics turned into ErrBroken: the handle is then
// marked broken (repair replaces it).
func (s *Store) update(db *buntdb.DB, fn func(tx *buntdb.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBroken, p)
			s.brokenErr.Store(&err)
			s.broken.Store(true)
		}
	}()
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if s.opts.fault != nil {
		if err := s.opts.fault(s.path); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// usable returns nil when db may be used, or why not (a broken handle that
// repair could not replace yet). The caller holds mu.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	if s.broken.Load() {
		if p := s.brokenErr.Load(); p != nil {
			return *p
		}
		return ErrBroken
	}
	return nil
}

// repair replaces a broken handle (ErrBroken) by a new one on the same
// file, once no call uses it; the old one is abandoned, never closed (its
// write lock is held for ever). buntdb trims a partial last command off
// the file as it loads it; the checkpoint is the file's: values and
// checkpoint are written in separate commits (see Store), so whatever of
// the failed write reached the file leaves the store at most ahead of its
// checkpoint. A repair that fails leaves the store broken, for the next
// call to try again.
func (s *Store) repair() error {
	if !s.broken.Load() {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.broken.Load() {
		return nil
	}
	broken := s.usable()
	if err := s.load(); err != nil {
		return fmt.Errorf("tables: reopen %s after a failed write (%v): %w", s.path, broken, err)
	}
	s.brokenErr.Store(nil)
	s.broken.Store(false)
	return nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// Partition returns the table partition.
func (s *Store) Partition() int32 { return s.partition }

// LastOffset returns the checkpoint: the last changelog offset applied, or
// NoOffset. A restore continues from LastOffset()+1.
func (s *Store) LastOffset() int64 { return s.checkpoint().Offset }

// checkpoint returns a copy of the meta record.
func (s *Store) checkpoint() meta {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	return s.m
}

// setMeta replaces m; the caller holds wmu (or owns s exclusively).
func (s *Store) setMeta(m meta) {
	s.metaMu.Lock()
	s.m = m
	s.metaMu.Unlock()
}

// Get returns the value of key, and whether it is present (an empty value
// is present).
func (s *Store) Get(key []byte) (value []byte, found bool, err error) {
	if err := s.repair(); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	err = s.db.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get(dataPrefix + string(key))
		if err != nil {
			return err
		}
		value, found = []byte(v), true
		return nil
	})
	if errors.Is(err, buntdb.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("tables: get from %s: %w", s.path, err)
	}
	return value, found, nil
}

// Apply writes a batch of mutations, in order (a later mutation of the same
// key wins), and moves the checkpoint to changelogOffset, the offset of the
// last changelog record the batch contains. changelogOffset NoOffset leaves
// the checkpoint where it is (the store is then ahead of its checkpoint,
// which is safe: see Store). An offset below the checkpoint is refused
// (ErrOffsetBehind); empty keys are refused (ErrEmptyKey) before anything
// is written.
//
// Apply is the owner's write path: the owner of a partition is the only
// writer of its changelog, so once its acknowledged records are applied
// with their offset the store is current, and Apply records the time as
// such (see Config.MaxCheckpointAge).
func (s *Store) Apply(muts []Mutation, changelogOffset int64) error {
	var now time.Time
	if changelogOffset != NoOffset {
		now = time.Now()
	}
	return s.apply(muts, changelogOffset, now)
}

// apply is Apply; syncedAt, when not zero, is recorded as a time at which
// the store held every changelog record written before it.
func (s *Store) apply(muts []Mutation, offset int64, syncedAt time.Time) error {
	for i := range muts {
		if len(muts[i].Key) == 0 {
			return fmt.Errorf("tables: apply to %s: mutation %d: %w", s.path, i, ErrEmptyKey)
		}
	}
	if offset < NoOffset {
		return fmt.Errorf("tables: apply to %s: changelog offset %d: must be at least %d", s.path, offset, NoOffset)
	}
	if err := s.repair(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Exclusive, though a reader could share mu: buntdb's write
	// transaction excludes readers anyway, and a reader waiting inside
	// buntdb when a write panics would wait for ever (see Store).
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if offset != NoOffset && offset < s.m.Offset {
		return fmt.Errorf("tables: apply to %s: offset %d < checkpoint %d: %w", s.path, offset, s.m.Offset, ErrOffsetBehind)
	}
	if len(muts) > 0 {
		err := s.update(s.db, func(tx *buntdb.Tx) error {
			for _, m := range muts {
				k := dataPrefix + string(m.Key)
				if m.Delete {
					if _, err := tx.Delete(k); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
						return err
					}
					continue
				}
				if _, _, err := tx.Set(k, string(m.Value), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("tables: apply to %s: %w", s.path, err)
		}
	}
	m := s.m
	if offset != NoOffset {
		m.Offset = offset
	}
	if !syncedAt.IsZero() {
		m.SyncedAt = syncedAt.UnixMilli()
	}
	if m == s.m {
		return nil
	}
	if err := s.writeMeta(s.db, m); err != nil {
		return fmt.Errorf("tables: write checkpoint of %s: %w", s.path, err)
	}
	s.setMeta(m)
	return nil
}

// markSynced records the changelog topic id and a time at which the store
// was current, without changing values or the checkpoint.
func (s *Store) markSynced(topicID string, at time.Time) error {
	if err := s.repair(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Exclusive, though a reader could share mu: buntdb's write
	// transaction excludes readers anyway, and a reader waiting inside
	// buntdb when a write panics would wait for ever (see Store).
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	m := s.m
	m.TopicID = topicID
	if !at.IsZero() {
		m.SyncedAt = at.UnixMilli()
	}
	if m == s.m {
		return nil
	}
	if err := s.writeMeta(s.db, m); err != nil {
		return fmt.Errorf("tables: write checkpoint of %s: %w", s.path, err)
	}
	s.setMeta(m)
	return nil
}

// reset deletes every value and the checkpoint, replacing the file by an
// empty one that records topicID.
func (s *Store) reset(topicID string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.broken.Load() {
		s.broken.Store(false) // abandoned: the file is replaced below
	} else if err := s.db.Close(); err != nil {
		return fmt.Errorf("tables: reset %s: %w", s.path, err)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.closed = true // the db handle is gone
		return fmt.Errorf("tables: reset %s: %w", s.path, err)
	}
	if err := s.load(); err != nil {
		s.closed = true
		return fmt.Errorf("tables: reset %s: %w", s.path, err)
	}
	m := s.m
	m.TopicID = topicID
	if err := s.writeMeta(s.db, m); err != nil {
		return fmt.Errorf("tables: reset %s: %w", s.path, err)
	}
	s.setMeta(m)
	return nil
}

// Scan returns, in bytewise key order, the entries whose key starts with
// prefix (nil or empty: every key) and is greater than after (nil: from the
// first), at most limit of them (limit <= 0: all). more reports whether
// further entries match; pass the last returned key as after to get the
// next page.
func (s *Store) Scan(prefix, after []byte, limit int) (entries []Entry, more bool, err error) {
	err = s.Range(prefix, after, func(k, v []byte) bool {
		if limit > 0 && len(entries) == limit {
			more = true
			return false
		}
		entries = append(entries, Entry{Key: k, Value: v})
		return true
	})
	if err != nil {
		return nil, false, err
	}
	return entries, more, nil
}

// Range calls fn for each entry Scan(prefix, after, 0) would return, in
// order, until fn returns false. key and value are fn's to keep. fn runs
// inside a read transaction: it must not call the Store's write methods
// (Apply), which would wait for it forever.
func (s *Store) Range(prefix, after []byte, fn func(key, value []byte) bool) error {
	if err := s.repair(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	pivot := dataPrefix + string(prefix)
	skip := ""
	if after != nil && bytes.Compare(after, prefix) >= 0 {
		pivot = dataPrefix + string(after)
		skip = pivot
	}
	full := dataPrefix + string(prefix)
	err := s.db.View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", pivot, func(k, v string) bool {
			if !strings.HasPrefix(k, full) {
				return false
			}
			if skip != "" && k == skip {
				return true
			}
			return fn([]byte(k[len(dataPrefix):]), []byte(v))
		})
	})
	if err != nil {
		return fmt.Errorf("tables: scan %s: %w", s.path, err)
	}
	return nil
}

// Count returns the number of keys.
func (s *Store) Count() (int, error) {
	if err := s.repair(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return 0, err
	}
	var n int
	err := s.db.View(func(tx *buntdb.Tx) error {
		var err error
		n, err = tx.Len()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tables: count %s: %w", s.path, err)
	}
	return n - 1, nil // the meta record
}

// Close marks the store closed cleanly, syncs and closes the file and
// releases its lock. It is idempotent: later calls return nil.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.broken.Load() {
		// Abandoned (its write lock is held for ever); the file stays
		// marked not clean, which a process restart trusts.
		err := s.usable()
		return errors.Join(fmt.Errorf("tables: close %s: %w", s.path, err), s.unlock())
	}
	m := s.m
	m.Clean = true
	err := s.writeMeta(s.db, m)
	if err == nil {
		s.setMeta(m)
	}
	if errors.Is(err, ErrBroken) {
		return errors.Join(fmt.Errorf("tables: close %s: %w", s.path, err), s.unlock())
	}
	err = errors.Join(err, s.db.Close(), s.unlock())
	if err != nil {
		return fmt.Errorf("tables: close %s: %w", s.path, err)
	}
	return nil
}

// hostBootID returns the Linux boot id (a new random id on every boot), or
// "" where there is none.
var hostBootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})
