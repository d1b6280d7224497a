package dashboard

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/eddy-streams/eddy/worker/monitor"
)

// maxEvents bounds the recent warnings and errors kept.
const maxEvents = 200

// sample is one point of the charts.
type sample struct {
	t      time.Time
	in     float64 // records received per second
	out    float64 // OK results per second
	lag    int64   // consumer lag summed over the partitions that know it
	e2eP99 time.Duration
	dlq    uint64 // dead letters since the previous sample
}

// Event is a recent warning or error the page lists.
type Event struct {
	At    int64  `json:"at"` // Unix ms
	Level string `json:"level"`
	Text  string `json:"text"`
}

type partKey struct {
	agent, topic string
	partition    int32
}

type partCount struct{ received, acked, dlq uint64 }

// sampler fills the ring buffer of samples and the list of events, and
// keeps the other workers' last status. Its buffers are read by the
// handlers under mu.
type sampler struct {
	core Core
	cfg  Config

	// Only the run goroutine touches these.
	prev       map[partKey]partCount
	prevAt     time.Time
	kafkaSeen  time.Time
	stallsSeen map[string]bool
	seenText   map[string]bool
	restores   map[string]int64 // FinishedAt (ms) of the last restore reported, by table partition
	commitFail uint64

	mu     sync.Mutex
	ring   []sample // len = capacity
	next   int      // index of the next write
	filled bool
	evs    []Event // oldest first
	peers  []WorkerView
}

func newSampler(core Core, cfg Config) *sampler {
	n := int(cfg.History / cfg.Interval)
	return &sampler{core: core, cfg: cfg, ring: make([]sample, max(n, 2)), prev: map[partKey]partCount{},
		stallsSeen: map[string]bool{}, seenText: map[string]bool{}, restores: map[string]int64{}}
}

func (s *sampler) run(ctx context.Context) error {
	s.commitFail = s.core.CommitFailures()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var lastPeers time.Time
	for {
		now := time.Now()
		s.take(now, s.core.Snapshot())
		if now.Sub(lastPeers) >= s.cfg.PeerInterval {
			lastPeers = now
			s.refreshPeers(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// take records one sample from snap and the events since the last one.
func (s *sampler) take(now time.Time, snap monitor.Snapshot) {
	var in, out, dlq uint64
	var lag int64
	var e2e time.Duration
	cur := make(map[partKey]partCount, len(snap.Partitions))
	var evs []Event
	for _, p := range snap.Partitions {
		k := partKey{p.Agent, p.Topic, p.Partition}
		c := partCount{p.Received, p.Processed, p.DeadLettered}
		cur[k] = c
		if p.Lag > 0 {
			lag += p.Lag
		}
		e2e = max(e2e, p.EndToEndP99)
		prev, ok := s.prev[k]
		if !ok || c.received < prev.received || c.acked < prev.acked || c.dlq < prev.dlq {
			continue // new here (or counters restarted): no rate yet
		}
		in += c.received - prev.received
		out += c.acked - prev.acked
		if d := c.dlq - prev.dlq; d > 0 {
			dlq += d
			evs = append(evs, Event{At: now.UnixMilli(), Level: "warn",
				Text: fmt.Sprintf("%d dead letter(s) from %s[%d] (agent %s, topic %s-%s-dlq)", d, p.Topic, p.Partition, p.Agent, s.appName(), p.Agent)})
		}
	}
	smp := sample{t: now, lag: lag, e2eP99: e2e, dlq: dlq}
	if !s.prevAt.IsZero() {
		if secs := now.Sub(s.prevAt).Seconds(); secs > 0 {
			smp.in, smp.out = float64(in)/secs, float64(out)/secs
		}
	}
	s.prev, s.prevAt = cur, now

	evs = append(evs, s.statusEvents(now, snap)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	if s.next == 0 {
		s.filled = true
	}
	s.evs = append(s.evs, evs...)
	if n := len(s.evs) - maxEvents; n > 0 {
		s.evs = append(s.evs[:0], s.evs[n:]...)
	}
}

func (s *sampler) appName() string { return s.core.Status().App }

// statusEvents finds what is new since the last sample: Kafka errors,
// stalls starting and ending, the worker's errors and warnings, failed
// restores and commit failures.
func (s *sampler) statusEvents(now time.Time, snap monitor.Snapshot) []Event {
	st := s.core.Status()
	var evs []Event
	newest := s.kafkaSeen
	for _, ke := range st.KafkaErrors { // newest first
		if !ke.At.After(s.kafkaSeen) {
			continue
		}
		newest = maxTime(newest, ke.At)
		lvl := "error"
		if !ke.Fatal {
			lvl = "warn"
		}
		evs = append(evs, Event{At: ke.At.UnixMilli(), Level: lvl, Text: "Kafka " + ke.Code + ": " + ke.Message})
	}
	s.kafkaSeen = newest

	now1 := map[string]bool{}
	for _, st := range snap.Stalled {
		what := fmt.Sprintf("%s %s[%d]", st.Agent, st.Topic, st.Partition)
		if st.InstanceID != "" {
			what = fmt.Sprintf("%s instance %s", st.Agent, st.InstanceID)
		}
		now1[what] = true
		if !s.stallsSeen[what] {
			evs = append(evs, Event{At: st.Since.UnixMilli(), Level: "warn", Text: "stalled: " + what + ": " + st.Reason})
		}
	}
	for what := range s.stallsSeen {
		if !now1[what] {
			evs = append(evs, Event{At: now.UnixMilli(), Level: "info", Text: "no longer stalled: " + what})
		}
	}
	s.stallsSeen = now1

	for _, e := range st.Errors {
		if !s.seenText["e"+e] {
			s.seenText["e"+e] = true
			evs = append(evs, Event{At: now.UnixMilli(), Level: "error", Text: e})
		}
	}
	for _, w := range st.Warnings {
		if !s.seenText["w"+w] {
			s.seenText["w"+w] = true
			evs = append(evs, Event{At: now.UnixMilli(), Level: "warn", Text: w})
		}
	}
	for _, lr := range st.LastRestores {
		k := fmt.Sprintf("%s[%d]", lr.Table, lr.Partition)
		at := lr.FinishedAt.UnixMilli()
		if s.restores[k] == at {
			continue
		}
		s.restores[k] = at
		if lr.Err != "" {
			evs = append(evs, Event{At: at, Level: "error", Text: "restore of table " + k + " failed: " + lr.Err})
		}
	}
	if n := s.core.CommitFailures(); n > s.commitFail {
		evs = append(evs, Event{At: now.UnixMilli(), Level: "error",
			Text: fmt.Sprintf("%d offset commit(s) failed (retried next cycle; see the log: commit failed; will retry)", n-s.commitFail)})
		s.commitFail = n
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	return evs
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// series returns the samples taken after since (Unix ms), oldest first.
func (s *sampler) series(since int64) Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, start := s.next, 0
	if s.filled {
		n, start = len(s.ring), s.next
	}
	out := Series{T: []int64{}, In: []float64{}, Out: []float64{}, Lag: []int64{}, E2EP99MS: []float64{}, DLQ: []uint64{}}
	for i := range n {
		p := s.ring[(start+i)%len(s.ring)]
		t := p.t.UnixMilli()
		if t <= since {
			continue
		}
		out.T = append(out.T, t)
		out.In = append(out.In, p.in)
		out.Out = append(out.Out, p.out)
		out.Lag = append(out.Lag, p.lag)
		out.E2EP99MS = append(out.E2EP99MS, ms(p.e2eP99))
		out.DLQ = append(out.DLQ, p.dlq)
	}
	return out
}

// events returns the recent events, newest first.
func (s *sampler) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.evs))
	for i, e := range s.evs {
		out[len(out)-1-i] = e
	}
	return out
}

// refreshPeers reads the group's members and asks each other worker for
// its status.
func (s *sampler) refreshPeers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PeerInterval)
	defer cancel()
	ms, err := s.core.Members(ctx, false)
	if err != nil {
		return // not running yet: the page shows this worker only
	}
	me := s.core.Status().WorkerID
	var out []WorkerView
	for _, m := range ms {
		if m.WorkerID == me {
			continue
		}
		wv := WorkerView{ID: m.WorkerID, Addr: m.Addr, Partitions: len(m.Assigned), State: "?"}
		if s.cfg.PeerStatus != nil {
			p, err := s.cfg.PeerStatus(ctx, m.Addr)
			if err != nil {
				wv.Error = err.Error()
			} else {
				wv.State, wv.Version, wv.HTTP = p.State, p.Version, p.HTTPAddr
				wv.started = p.StartedAt
			}
		}
		out = append(out, wv)
	}
	s.mu.Lock()
	s.peers = out
	s.mu.Unlock()
}

// workers returns self followed by the other workers last seen.
func (s *sampler) workers(self WorkerView) []WorkerView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerView, 0, 1+len(s.peers))
	out = append(out, self)
	for _, p := range s.peers {
		if !p.started.IsZero() {
			p.UptimeS = time.Since(p.started).Seconds()
		}
		out = append(out, p)
	}
	return out
}
