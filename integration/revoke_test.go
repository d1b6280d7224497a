package integration

import (
	"bufio"
	"regexp"
	"strings"
	"testing"
	"time"
)

// logLine is one line of a process's text log (log/slog's TextHandler).
type logLine struct {
	at   time.Time
	msg  string
	text string
}

var (
	logTime = regexp.MustCompile(`^time=(\S+) `)
	logMsg  = regexp.MustCompile(` msg=("(?:[^"\\]|\\.)*"|\S+)`)
)

// logLines parses a text log; lines it cannot read are skipped.
func logLines(log string) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		tm, msg := logTime.FindStringSubmatch(line), logMsg.FindStringSubmatch(line)
		if tm == nil || msg == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, tm[1])
		if err != nil {
			continue
		}
		out = append(out, logLine{at: at, msg: strings.Trim(msg[1], `"`), text: line})
	}
	return out
}

// When a second worker joins under load, the first one's cooperative revoke
// ends as soon as its agent has answered or given back every delivered
// event (RevokeAck), not at revoke_timeout (10s): before the fix every
// rebalance under load stalled the worker's partitions for the full 10s,
// because the SDK drops its queued events and those never get a result.
// It also measures the whole handover: the second worker starts, joins,
// and delivers to its agent (heartbeats and two cooperative rounds).
func TestRevokeUnderLoadEndsOnRevokeAck(t *testing.T) {
	body, app, in, out := passApp(t, "")
	w1 := startWorker(t, body)
	w1.waitAssigned(t, 8)
	a1 := startAgent(t, w1.GRPC, "pass", out, "--delay", "5ms", "--instance", "a1")
	w1.waitInstances(t, "pass", 1, 8)
	// About 12s of work for one instance: the agent's queues stay full
	// through the handover.
	keys, values := keyedValues(20000, 500)
	produce(t, in, keys, values)
	newConsumer(t, out).readUntil(time.Minute, "the first outputs", countAtLeast(out, 500))

	joined := time.Now()
	w2 := startWorker(t, body)
	startAgent(t, w2.GRPC, "pass", out, "--delay", "5ms", "--instance", "a2")
	var handover time.Duration
	waitFor(t, 90*time.Second, "the second worker delivering to its agent", func() bool {
		for _, ps := range w2.snapshot(t).GetPartitions() {
			if ps.GetDelivered() > 0 {
				handover = time.Since(joined)
				return true
			}
		}
		return false
	})

	// w1's revoke: from its consumer's "partitions revoked" (the Revoke
	// goes to the agent right after) to its last "partition released".
	var revokedAt, releasedAt time.Time
	waitFor(t, 30*time.Second, "the first worker releasing its revoked partitions", func() bool {
		revokedAt, releasedAt = time.Time{}, time.Time{}
		for _, l := range logLines(w1.log.String()) {
			switch {
			case l.msg == "partitions revoked" && revokedAt.IsZero():
				revokedAt = l.at
			case l.msg == "partition released" && !revokedAt.IsZero():
				releasedAt = l.at
			}
		}
		return !releasedAt.IsZero()
	})
	release := releasedAt.Sub(revokedAt)
	// The agent's side: from receiving the Revoke to the worker's release.
	var agentRevokedAt time.Time
	for _, l := range logLines(a1.log.String()) {
		if l.msg == "partition revoked" && !l.at.Before(revokedAt) {
			agentRevokedAt = l.at
			break
		}
	}
	t.Logf("revoke on w1: %s from \"partitions revoked\" to the last \"partition released\" (agent got Revoke %s before the release)",
		release.Round(time.Millisecond), releasedAt.Sub(agentRevokedAt).Round(time.Millisecond))
	t.Logf("whole handover: %s from starting the second worker to its first delivery", handover.Round(time.Millisecond))
	if release >= 3*time.Second {
		t.Errorf("revoked partitions released %s after the revoke, want well under revoke_timeout (10s): the RevokeAck was not taken as the end", release)
	}
	if !strings.Contains(a1.log.String(), "partition revoked") {
		t.Errorf("the first worker's agent never got a Revoke:\n%s", a1.log.String())
	}

	got := newConsumer(t, out).readUntil(3*time.Minute, "every input in the output", allPresent(out, values))
	checkOutputs(t, values, got[out], false)
	waitCommittedAtEnd(t, w1, app, in)
	if d := strings.Count(a1.log.String(), "did not finish before the revoke deadline"); d > 0 {
		t.Errorf("%d revocations hit their deadline on the agent", d)
	}
}
