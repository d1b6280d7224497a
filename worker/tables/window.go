package tables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Window types, as spelled in the app file.
const (
	Tumbling = "tumbling"
	Hopping  = "hopping"
)

// Window describes the windows of a windowed table, on event time, aligned
// to the Unix epoch like Kafka Streams' windows: window k covers
// [k*Step, k*Step+Size). A tumbling window has Step == Size (windows tile
// time); a hopping window has 0 < Step < Size (windows overlap, an event
// falls into about Size/Step of them). All arithmetic is in milliseconds,
// the resolution of Kafka timestamps. A Window is a plain value, safe for
// concurrent use.
type Window struct {
	// Size is the window length. At least 1ms, whole milliseconds.
	Size time.Duration
	// Step is how far apart window starts are. Zero means Size
	// (tumbling). Otherwise at most Size, whole milliseconds.
	Step time.Duration
	// Expires is how long a window is kept after it ends (stream time
	// past start+Size+Expires drops it). At least 0.
	Expires time.Duration
}

// NewWindow builds a Window from the app file's fields: kind is Tumbling
// (step must be 0 or equal size) or Hopping (0 < step <= size).
func NewWindow(kind string, size, step, expires time.Duration) (Window, error) {
	w := Window{Size: size, Step: step, Expires: expires}
	switch kind {
	case Tumbling:
		if step != 0 && step != size {
			return Window{}, fmt.Errorf("tables: tumbling window: step %s: only hopping windows have a step", step)
		}
		w.Step = size
	case Hopping:
		if step <= 0 {
			return Window{}, errors.New("tables: hopping window: step: required")
		}
	default:
		return Window{}, fmt.Errorf("tables: window type %q: want %q or %q", kind, Tumbling, Hopping)
	}
	return w, w.Validate()
}

// Validate reports the first invalid field.
func (w Window) Validate() error {
	wholeMs := func(d time.Duration) bool { return d%time.Millisecond == 0 }
	switch {
	case w.Size < time.Millisecond || !wholeMs(w.Size):
		return fmt.Errorf("tables: window size %s: want whole milliseconds, at least 1ms", w.Size)
	case w.Step < 0 || !wholeMs(w.Step) || (w.Step > 0 && w.Step < time.Millisecond):
		return fmt.Errorf("tables: window step %s: want whole milliseconds", w.Step)
	case w.Step > w.Size:
		return fmt.Errorf("tables: window step %s is longer than the window size %s", w.Step, w.Size)
	case w.Expires < 0:
		return fmt.Errorf("tables: window expires %s: must not be negative", w.Expires)
	}
	return nil
}

// IsHopping reports whether windows overlap (Step < Size).
func (w Window) IsHopping() bool { return w.Step != 0 && w.Step != w.Size }

func (w Window) stepMs() int64 {
	if w.Step == 0 {
		return w.Size.Milliseconds()
	}
	return w.Step.Milliseconds()
}

// Starts returns the starts of the windows that event time ts falls into,
// oldest first: one for a tumbling window, about Size/Step for a hopping
// one. ts is truncated to the millisecond (towards the past); times before
// the epoch work the same way.
func (w Window) Starts(ts time.Time) []time.Time { return w.AppendStarts(nil, ts) }

// AppendStarts is Starts appending to dst.
func (w Window) AppendStarts(dst []time.Time, ts time.Time) []time.Time {
	t, size, step := ts.UnixMilli(), w.Size.Milliseconds(), w.stepMs()
	if size <= 0 || step <= 0 {
		return dst
	}
	// Window k covers [k*step, k*step+size): it holds t when
	// (t-size)/step < k <= t/step.
	for k := floorDiv(t-size, step) + 1; k <= floorDiv(t, step); k++ {
		dst = append(dst, time.UnixMilli(k*step))
	}
	return dst
}

// End returns the end (exclusive) of the window starting at start.
func (w Window) End(start time.Time) time.Time { return start.Add(w.Size) }

// Expired reports whether the window starting at start has expired at now:
// now is at or past its end plus Expires. now should be the partition's
// stream time (the highest event time seen), so that replays expire
// windows the same way.
func (w Window) Expired(start, now time.Time) bool {
	return !now.Before(start.Add(w.Size + w.Expires))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// ErrWindowKey reports a stored key that is not a window key.
var ErrWindowKey = errors.New("tables: not a window key")

// Windowed-table keys: escape(key) 0x00 0x01 start, where escape doubles
// every 0x00 byte of key as 0x00 0xFF, and start is the window start in
// Unix milliseconds as 8 big-endian bytes with the sign bit flipped (so
// earlier starts, negative ones included, sort first).
//
// The encoding keeps bytewise order: window keys sort by key (bytewise,
// as plain keys do) and then by window start. It is prefix-free: no key's
// escape(key) 0x00 0x01 begins another key's encoding (after escape(key),
// another key continues with a non-zero byte or 0x00 0xFF, never 0x00
// 0x01), so WindowKeyPrefix(key) scans exactly one key's windows, in
// time order, and WindowScanPrefix(p) every window of every key starting
// with p.
const (
	escByte   = 0xFF
	termByte  = 0x01
	startSize = 8
)

// WindowKey returns the store key of key's window starting at start
// (millisecond resolution).
func WindowKey(key []byte, start time.Time) []byte {
	out := appendEscaped(make([]byte, 0, len(key)+2+startSize+4), key)
	out = append(out, 0x00, termByte)
	return binary.BigEndian.AppendUint64(out, uint64(start.UnixMilli())^(1<<63))
}

// WindowKeyPrefix returns the prefix shared by the store keys of all of
// key's windows, and by no other key's: Store.Scan(WindowKeyPrefix(k), ...)
// lists k's windows, oldest first.
func WindowKeyPrefix(key []byte) []byte {
	return append(appendEscaped(make([]byte, 0, len(key)+2), key), 0x00, termByte)
}

// WindowScanPrefix returns the prefix of the store keys of the windows of
// every key that starts with keyPrefix, ordered by key, then window start.
func WindowScanPrefix(keyPrefix []byte) []byte {
	return appendEscaped(make([]byte, 0, len(keyPrefix)), keyPrefix)
}

// SplitWindowKey returns the key and window start encoded by WindowKey, or
// an error wrapping ErrWindowKey.
func SplitWindowKey(wk []byte) (key []byte, start time.Time, err error) {
	key = make([]byte, 0, len(wk))
	for i := 0; i < len(wk); i++ {
		b := wk[i]
		if b != 0x00 {
			key = append(key, b)
			continue
		}
		if i+1 >= len(wk) {
			break
		}
		switch wk[i+1] {
		case escByte:
			key = append(key, 0x00)
			i++
		case termByte:
			rest := wk[i+2:]
			if len(rest) != startSize {
				return nil, time.Time{}, fmt.Errorf("%w: %d bytes after the key, want %d", ErrWindowKey, len(rest), startSize)
			}
			ms := int64(binary.BigEndian.Uint64(rest) ^ (1 << 63))
			return key, time.UnixMilli(ms), nil
		default:
			return nil, time.Time{}, fmt.Errorf("%w: byte 0x%02x after 0x00 at %d", ErrWindowKey, wk[i+1], i+1)
		}
	}
	return nil, time.Time{}, fmt.Errorf("%w: no key terminator", ErrWindowKey)
}

func appendEscaped(dst, key []byte) []byte {
	for _, b := range key {
		if b == 0x00 {
			dst = append(dst, 0x00, escByte)
		} else {
			dst = append(dst, b)
		}
	}
	return dst
}
