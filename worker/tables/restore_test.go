package tables_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/worker/tables"
	"github.com/eddy-streams/eddy/worker/transport"
)

// checkProgress fails unless p is a finished restore that read records
// records and ended at the changelog's end.
func checkProgress(t testing.TB, p tables.Progress, records int64, rebuild bool) {
	t.Helper()
	if p.Records != records || p.Rebuild != rebuild || !p.Done || p.Remaining() != 0 {
		t.Fatalf("Progress = %+v; want Records %d, Rebuild %v, Done, nothing remaining", p, records, rebuild)
	}
}

func TestRestoreFromEmptyStore(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reports []tables.Progress
	e := newEnv(t, func(c *tables.Config) {
		c.BatchSize = 500 // several store commits
		c.ProgressInterval = time.Millisecond
		c.LogInterval = time.Millisecond
		c.OnProgress = func(p tables.Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		}
	})
	cl := e.changelog("counts", 2, nil)
	m0 := mutations(1, "p0", 3000)
	m1 := mutations(2, "p1", 700)
	e.produce(cl, 0, m0)
	e.produce(cl, 1, m1)

	st0, p0 := e.restore("counts", 0)
	checkProgress(t, p0, int64(len(m0)), true)
	if p0.Reason != "no local state" {
		t.Errorf("Reason = %q, want %q", p0.Reason, "no local state")
	}
	checkState(t, st0, fold(nil, m0))
	if _, high := watermarks(t, cl.Topic(), 0); st0.LastOffset() != high-1 {
		t.Errorf("LastOffset = %d, want the last offset %d", st0.LastOffset(), high-1)
	}

	st1, p1 := e.restore("counts", 1)
	checkProgress(t, p1, int64(len(m1)), true)
	checkState(t, st1, fold(nil, m1))

	// Progress reports: from the start to Done, positions never going back.
	mu.Lock()
	defer mu.Unlock()
	var last tables.Progress
	var done int
	for _, r := range reports {
		if r.Partition != 0 {
			continue
		}
		if r.Position < last.Position || r.Records < last.Records {
			t.Errorf("progress went back: %+v after %+v", r, last)
		}
		if r.Table != "counts" || r.To != p0.To {
			t.Errorf("progress report %+v: want table counts, To %d", r, p0.To)
		}
		if r.Done {
			done++
		}
		last = r
	}
	if done != 1 || !last.Done || last.Records != int64(len(m0)) {
		t.Errorf("last progress report %+v (%d Done); want one Done with %d records", last, done, len(m0))
	}
	logs := e.logs.String()
	for _, want := range []string{
		`msg="restoring table partition from the beginning"`, `msg="restore progress"`,
		`msg="table partition restored"`, "table=counts partition=0", "reason=\"no local state\"",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestRestoreCleanRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	first := mutations(3, "a", 2000)
	e.produce(cl, 0, first)
	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(first)), true)
	closeStore(t, st)

	// Nothing new: nothing read.
	st, p = e.restore("counts", 0)
	checkProgress(t, p, 0, false)
	checkState(t, st, fold(nil, first))
	closeStore(t, st)

	// More records since: exactly those are read.
	second := mutations(4, "a", 333)
	e.produce(cl, 0, second)
	st, p = e.restore("counts", 0)
	checkProgress(t, p, int64(len(second)), false)
	checkState(t, st, fold(nil, first, second))
	if !strings.Contains(e.logs.String(), `msg="restoring table partition from its checkpoint"`) {
		t.Errorf("logs lack the restore from the checkpoint:\n%s", e.logs)
	}
}

// TestRestoreOwnerWrites: the owner's own Apply (with the changelog offset
// of its acknowledged records) keeps the checkpoint, so a restart reads
// nothing.
func TestRestoreOwnerWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	st, _ := e.restore("counts", 0)
	muts := mutations(5, "own", 100)
	e.produce(cl, 0, muts)
	_, high := watermarks(t, cl.Topic(), 0)
	if err := st.Apply(muts, high-1); err != nil {
		t.Fatal(err)
	}
	closeStore(t, st)
	st, p := e.restore("counts", 0)
	checkProgress(t, p, 0, false)
	checkState(t, st, fold(nil, muts))
}

func TestRestoreMissingFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	muts := mutations(6, "m", 1500)
	e.produce(cl, 0, muts)
	st, _ := e.restore("counts", 0)
	closeStore(t, st)

	if err := os.Remove(st.Path()); err != nil {
		t.Fatal(err)
	}
	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(muts)), true)
	checkState(t, st, fold(nil, muts))
	closeStore(t, st)

	// The whole data directory gone.
	if err := os.RemoveAll(e.dir); err != nil {
		t.Fatal(err)
	}
	st, p = e.restore("counts", 0)
	checkProgress(t, p, int64(len(muts)), true)
	checkState(t, st, fold(nil, muts))
}

func TestRestoreCorruptFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	muts := mutations(7, "c", 1500)
	e.produce(cl, 0, muts)
	st, _ := e.restore("counts", 0)
	closeStore(t, st)

	if err := os.WriteFile(st.Path(), []byte("\x00\x00garbage\r\n*3\r\n$3\r\nset"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(muts)), true)
	if !strings.Contains(p.Reason, "unusable") {
		t.Errorf("Reason = %q, want it to say the store was unusable", p.Reason)
	}
	checkState(t, st, fold(nil, muts))
	logs := e.logs.String()
	if !strings.Contains(logs, `level=WARN msg="table store unusable; deleting it to rebuild from the changelog" test=`+t.Name()+` table=counts partition=0 err=`) {
		t.Errorf("logs lack the warning about the corrupt file:\n%s", logs)
	}
}

// TestRestoreAheadOfChangelog: a checkpoint at or past the changelog's end
// is not trusted.
func TestRestoreAheadOfChangelog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	muts := mutations(8, "h", 800)
	e.produce(cl, 0, muts)
	st, _ := e.restore("counts", 0)
	if err := st.Apply([]tables.Mutation{set("bogus", "x")}, 1_000_000); err != nil {
		t.Fatal(err)
	}
	closeStore(t, st)

	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(muts)), true)
	if !strings.Contains(p.Reason, "local checkpoint 1000000 is ahead of the changelog end") {
		t.Errorf("Reason = %q, want it to say the checkpoint is ahead", p.Reason)
	}
	checkState(t, st, fold(nil, muts))
	if !strings.Contains(e.logs.String(), "level=WARN") {
		t.Errorf("the rebuild was not logged as a warning:\n%s", e.logs)
	}
}

// TestRestoreChangelogRecreated: the changelog topic deleted and created
// again, with more records than the old checkpoint (so offsets alone would
// not tell): the topic id does.
func TestRestoreChangelogRecreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	old := mutations(9, "old", 500)
	e.produce(cl, 0, old)
	st, _ := e.restore("counts", 0)
	closeStore(t, st)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := e.admin.DeleteTopics(ctx, []string{cl.Topic()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, func() string { return cl.Topic() + " to be deleted" }, func() bool {
		return !topicExists(t, cl.Topic())
	})
	if err := e.admin.EnsureTopics(ctx, []transport.TopicSpec{cl.Spec(1, 0)}); err != nil {
		t.Fatal(err)
	}
	fresh := mutations(10, "new", 900)
	e.produce(cl, 0, fresh)

	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(fresh)), true)
	if !strings.Contains(p.Reason, "recreated") {
		t.Errorf("Reason = %q, want it to say the topic was recreated", p.Reason)
	}
	checkState(t, st, fold(nil, fresh))
}

func topicExists(t testing.TB, topic string) bool {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": kafkatest.Bootstrap(t), "group.id": "verifier"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	tm, ok := md.Topics[topic]
	return ok && tm.Error.Code() == kafka.ErrNoError
}

func TestRestoreEmptyPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 2, nil)
	e.produce(cl, 0, mutations(11, "x", 10)) // the other partition has records
	st, p := e.restore("counts", 1)
	checkProgress(t, p, 0, true)
	if st.LastOffset() != tables.NoOffset {
		t.Errorf("LastOffset = %d, want NoOffset", st.LastOffset())
	}
	checkState(t, st, map[string][]byte{})
	closeStore(t, st)
	st, p = e.restore("counts", 1)
	checkProgress(t, p, 0, false)
}

// TestRestoreDeletedRecords: records after the checkpoint deleted (the low
// watermark moved past it, as retention or DeleteRecords do): rebuilt from
// the low watermark, giving what any replica would rebuild.
func TestRestoreDeletedRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Kafka refuses DeleteRecords on a compact-only topic, and compaction
	// never moves the low watermark: only retention (cleanup.policy with
	// delete, set by an operator) or DeleteRecords do.
	cl := e.changelog("counts", 1, map[string]string{"cleanup.policy": "compact,delete"})
	first := mutations(12, "d", 400)
	e.produce(cl, 0, first)
	st, _ := e.restore("counts", 0)
	closeStore(t, st)
	second := mutations(13, "d", 400)
	e.produce(cl, 0, second)

	cut := int64(len(first) + len(second)/2)
	deleteRecordsBefore(t, cl.Topic(), 0, cut)
	st, p := e.restore("counts", 0)
	checkProgress(t, p, int64(len(second)/2), true)
	if !strings.Contains(p.Reason, "were deleted") {
		t.Errorf("Reason = %q, want it to say records were deleted", p.Reason)
	}
	checkState(t, st, fold(nil, second[len(second)/2:]))
}

func deleteRecordsBefore(t testing.TB, topic string, p int32, offset int64) {
	t.Helper()
	kafkatest.DeleteRecordsBefore(t, topic, p, offset)
	if low, _ := watermarks(t, topic, p); low != offset {
		t.Fatalf("low watermark after DeleteRecords = %d, want %d", low, offset)
	}
}

// TestRestoreStaleCheckpoint: a checkpoint last known current longer ago
// than MaxCheckpointAge is not continued from when records were written
// since (a tombstone may have been compacted away), but is when nothing
// was written.
func TestRestoreStaleCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.changelog("counts", 1, nil)
	first := mutations(14, "s", 300)
	e.produce(cl, 0, first)
	st, _ := e.restore("counts", 0)
	closeStore(t, st)

	strict := e.cfg
	strict.MaxCheckpointAge = time.Nanosecond
	r, err := tables.NewRestorer(strict)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, p, err := r.Restore(ctx, "counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, p, 0, false) // nothing written since: trusted
	closeStore(t, st)

	second := mutations(15, "s", 100)
	e.produce(cl, 0, second)
	st, p, err = r.Restore(ctx, "counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkProgress(t, p, int64(len(first)+len(second)), true)
	if !strings.Contains(p.Reason, "tombstone") {
		t.Errorf("Reason = %q, want the stale-checkpoint reason", p.Reason)
	}
	checkState(t, st, fold(nil, first, second))
}

// TestRestoreReadCommitted: with read_committed only committed
// transactions are restored, and the restore ends although the last
// offsets hold transaction markers, which are never delivered.
func TestRestoreReadCommitted(t *testing.T) {
	t.Parallel()
	committed := newEnv(t, func(c *tables.Config) { c.Kafka.IsolationLevel = transport.ReadCommitted })
	cl := committed.changelog("counts", 1, nil)
	a, b, c := mutations(16, "a", 200), mutations(17, "b", 150), mutations(18, "c", 100)
	produceTxn(t, cl, a, true)
	produceTxn(t, cl, b, false)
	produceTxn(t, cl, c, true)

	st, p := committed.restore("counts", 0)
	checkProgress(t, p, int64(len(a)+len(c)), true)
	checkState(t, st, fold(nil, a, c))
	closeStore(t, st)
	st, p = committed.restore("counts", 0)
	checkProgress(t, p, 0, false)

	// read_uncommitted reads the aborted transaction too (another data
	// directory, same topic).
	uncfg := committed.cfg
	uncfg.Dir = t.TempDir()
	uncfg.Kafka.IsolationLevel = transport.ReadUncommitted
	r, err := tables.NewRestorer(uncfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st2, p, err := r.Restore(ctx, "counts", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	checkProgress(t, p, int64(len(a)+len(b)+len(c)), true)
	checkState(t, st2, fold(nil, a, b, c))
}

// produceTxn writes muts to partition 0 of cl in one transaction, committed
// or aborted.
func produceTxn(t testing.TB, cl tables.Changelog, muts []tables.Mutation, commit bool) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": kafkatest.Bootstrap(t),
		"transactional.id":  kafkatest.Group(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Events() {
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("InitTransactions: %v", err)
	}
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	recs, err := cl.Records(0, muts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		topic := r.Topic
		if err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: r.Partition},
			Key:            r.Key, Value: r.Value,
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if commit {
		err = p.CommitTransaction(ctx)
	} else {
		p.Flush(10000)
		err = p.AbortTransaction(ctx)
	}
	if err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

func TestRestoreErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, _, err := e.r.Restore(ctx, "nochangelog", 0); !errors.Is(err, tables.ErrNoChangelog) {
		t.Errorf("Restore without a changelog: %v, want ErrNoChangelog", err)
	}
	e.changelog("counts", 2, nil)
	if _, _, err := e.r.Restore(ctx, "counts", 2); !errors.Is(err, tables.ErrNoChangelog) {
		t.Errorf("Restore of partition 2 of 2: %v, want ErrNoChangelog", err)
	} else {
		t.Log(err)
	}
	st, _ := e.restore("counts", 0)
	if _, _, err := e.r.Restore(ctx, "counts", 0); !errors.Is(err, tables.ErrLocked) {
		t.Errorf("Restore of an open store: %v, want ErrLocked", err)
	}
	_ = st
	// A cancelled restore returns promptly with the context's error.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, _, err := e.r.Restore(cctx, "counts", 1); err == nil {
		t.Error("Restore with a cancelled context succeeded")
	}
	for _, bad := range []tables.Config{
		{Dir: "x", Kafka: kafkaConfig(t)},
		{App: "x", Kafka: kafkaConfig(t)},
		{App: "x", Dir: "x"},
	} {
		if _, err := tables.NewRestorer(bad); err == nil {
			t.Errorf("NewRestorer(%+v) succeeded", bad)
		}
	}
}
