package integration

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tableParts returns the active and standby partitions of table counts
// from `workerctl tables -o json` (ListTables).
func tableParts(t *testing.T, w *workerProc) (active, standby []int32) {
	t.Helper()
	out, errOut, code := w.ctl(t, "tables", "-o", "json")
	if code != 0 {
		t.Fatalf("workerctl tables on %s: exit %d: %s", w.GRPC, code, errOut)
	}
	var lt struct {
		Tables []struct {
			Name              string  `json:"name"`
			ActivePartitions  []int32 `json:"active_partitions"`
			StandbyPartitions []int32 `json:"standby_partitions"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &lt); err != nil || len(lt.Tables) != 1 {
		t.Fatalf("tables -o json: %v\n%s", err, out)
	}
	active, standby = lt.Tables[0].ActivePartitions, lt.Tables[0].StandbyPartitions
	slices.Sort(active)
	slices.Sort(standby)
	return active, standby
}

// complement returns the partitions of 0..7 not in ps, sorted.
func complement(ps []int32) []int32 {
	var out []int32
	for p := range int32(8) {
		if !slices.Contains(ps, p) {
			out = append(out, p)
		}
	}
	return out
}

// TestStandbyTakeover: two workers count words with standby_replicas: 1;
// each keeps standbys of the other's table partitions (ListTables). After
// kill -9 of one, the survivor takes its partitions over from the
// standbys' stores, reading only the changelog's tail (far less than the
// changelog holds), and the counts stay exact with more input.
func TestStandbyTakeover(t *testing.T) {
	a := newWordCountApp(t)
	a.body = strings.Replace(a.body, "  - {name: counts}\n", "  - {name: counts, standby_replicas: 1}\n", 1)
	if !strings.Contains(a.body, "standby_replicas: 1") {
		t.Fatalf("app file without standby_replicas:\n%s", a.body)
	}
	want := map[string]int64{}
	w1 := startWorkerIn(t, t.TempDir(), a.body)
	w2 := startWorkerIn(t, t.TempDir(), a.body)
	ag1 := startWordCount(t, w1.GRPC, a)
	ag2 := startWordCount(t, w2.GRPC, a)
	waitFor(t, 90*time.Second, "the 16 partitions split over both workers", func() bool {
		n1, n2 := 0, 0
		if as, ok := w1.status(t)["assigned"].([]any); ok {
			n1 = len(as)
		}
		if as, ok := w2.status(t)["assigned"].([]any); ok {
			n2 = len(as)
		}
		return n1 > 0 && n2 > 0 && n1+n2 == 16
	})

	start := time.Now()
	keys, lines := corpus(11, 30000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w1, a.app, 3*time.Minute, a.lines, a.words)
	t.Logf("30k lines counted in %s", time.Since(start).Round(time.Millisecond))

	// Each worker keeps standbys of exactly the other's table partitions.
	var active1, active2 []int32
	start = time.Now()
	waitFor(t, 60*time.Second, "standbys of the other worker's partitions on each worker", func() bool {
		var sb1, sb2 []int32
		active1, sb1 = tableParts(t, w1)
		active2, sb2 = tableParts(t, w2)
		// The sticky assignor balances all 16 partitions, not each topic:
		// one worker may own every table partition; the other then keeps
		// standbys of all of them.
		return len(active1)+len(active2) == 8 &&
			slices.Equal(sb1, complement(active1)) && slices.Equal(sb2, complement(active2))
	})
	if len(active1) == 0 {
		// Kill the worker that owns table partitions: "worker 1" below.
		w1, w2, ag1, ag2, active1, active2 = w2, w1, ag2, ag1, active2, active1
	}
	_ = ag2
	t.Logf("standbys placed in %s: worker 1 owns %v, worker 2 owns %v", time.Since(start).Round(time.Millisecond), active1, active2)
	// The survivor's standbys of worker 1's partitions caught up.
	for _, p := range active1 {
		re := regexp.MustCompile(fmt.Sprintf(`msg="standby replica caught up".* partition=%d `, p))
		waitFor(t, 60*time.Second, fmt.Sprintf("worker 2's standby of partition %d to catch up", p), func() bool {
			return re.MatchString(w2.log.String())
		})
	}
	ends := endOffsets(t, a.changelog, 8)
	var changelogSize int64
	for _, p := range active1 {
		changelogSize += ends[p]
	}

	// kill -9 worker 1: worker 2 takes its partitions over.
	logFrom := len(w2.log.String())
	w1.signal(syscall.SIGKILL)
	w1.wait(10 * time.Second)
	ag1.kill()
	killed := time.Now()
	w2.waitAssigned(t, 16)
	var ms [][]string
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d table partitions restored on worker 2", len(active1)), func() bool {
		ms = restoredRe.FindAllStringSubmatch(w2.log.String()[logFrom:], -1)
		return len(ms) >= len(active1)
	})
	var tailRead int64
	for _, m := range ms {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		tailRead += n
	}
	t.Logf("takeover of %d partitions %s after kill -9: read %d changelog records, their changelogs hold %d",
		len(active1), time.Since(killed).Round(time.Millisecond), tailRead, changelogSize)
	if changelogSize < 10000 {
		t.Fatalf("changelogs of the taken-over partitions hold %d records, too few for the test to mean anything", changelogSize)
	}
	if tailRead*10 > changelogSize {
		t.Errorf("takeover read %d changelog records, want far fewer than the %d the changelogs hold (only the tail)", tailRead, changelogSize)
	}
	after := w2.log.String()[logFrom:]
	for _, p := range active1 {
		re := regexp.MustCompile(fmt.Sprintf(`msg="standby replica stopped".* partition=%d reason="taking the partition over"`, p))
		if !re.MatchString(after) {
			t.Errorf("worker 2 log has no standby takeover of partition %d", p)
		}
	}
	for _, l := range strings.Split(w2.log.String(), "\n") {
		if strings.Contains(l, `msg="standby replica st`) || strings.Contains(l, "standby replica not started") ||
			strings.Contains(l, `msg="table partition restored"`) {
			t.Log("worker 2: " + l)
		}
	}
	if _, sb := tableParts(t, w2); len(sb) != 0 {
		t.Errorf("worker 2 alone keeps standbys of %v, want none", sb)
	}

	// More input: the counts continue from the taken-over stores, exactly.
	keys, lines = corpus(12, 5000, want)
	produce(t, a.lines, keys, lines)
	waitDrained(t, w2, a.app, 3*time.Minute, a.lines, a.words)
	checkExact(t, "changelog fold after the takeover", foldChangelog(t, a.changelog), want)
	checkExact(t, "last output per word after the takeover", lastByKey(t, readAll(t, a.out)), want)
}
