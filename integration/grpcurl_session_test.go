package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestGrpcurlConnectSession drives an agent session by hand with grpcurl,
// as docs/protocol.md shows it: Hello in JSON on stdin, Welcome, Assign
// and an EventBatch back with the key and value in base64; a Results
// message with a produced record (base64 too) is applied: the output is
// written with the input's timestamp, and the input is committed.
func TestGrpcurlConnectSession(t *testing.T) {
	app, in, out := uniq(t, "app"), uniq(t, "in"), uniq(t, "out")
	w := startWorker(t, fmt.Sprintf(`app: %s
brokers: %s
kafka: {reach_timeout: 10s, session_timeout: 6s}
topics:
  - {name: %s, partitions: 1}
  - {name: %s, partitions: 1}
agents:
  - {name: count, topics: [%s]}
`, app, kafkatest.Bootstrap(t), in, out, in))
	w.waitState(t, 60*time.Second, "RUNNING")

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkatest.Bootstrap(t)), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// An hour ago, not years: the broker deletes a segment whose newest
	// timestamp is past retention (7 days) at its next retention check,
	// and the record was sometimes gone before the worker fetched it.
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: in, Key: []byte("cat"), Value: []byte("x"), Timestamp: ts}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, bin(t, "grpcurl"), "-plaintext", "-emit-defaults", "-d", "@", w.GRPC, "eddy.v1.AgentService/Connect")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// An io.Pipe, not StdoutPipe: Wait runs meanwhile, and closes a
	// StdoutPipe under a reader.
	stdout, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); stdout.Close(); <-exited })
	fmt.Fprintf(stdin, `{"hello": {"app": %q, "agent": "count", "instance_id": "by-hand",
  "protocol_version": 1, "credit": {"events": 10}}}`+"\n", app)

	type event struct{ Offset, Key, Value string }
	var msg struct {
		Welcome *struct {
			SessionID string `json:"sessionId"`
		} `json:"welcome"`
		Assign     *struct{ Topic string } `json:"assign"`
		EventBatch *struct {
			Topic     string
			Partition int32
			Epoch     string
			Events    []event
		} `json:"eventBatch"`
	}
	dec := json.NewDecoder(stdout)
	var welcomed, assigned bool
	for {
		msg.Welcome, msg.Assign, msg.EventBatch = nil, nil, nil
		if err := dec.Decode(&msg); err != nil {
			t.Fatalf("reading grpcurl's output: %v (stderr: %s)", err, cmd.Stderr)
		}
		welcomed = welcomed || (msg.Welcome != nil && msg.Welcome.SessionID != "")
		assigned = assigned || (msg.Assign != nil && msg.Assign.Topic == in)
		if msg.EventBatch != nil {
			break
		}
	}
	b := msg.EventBatch
	if !welcomed || !assigned || b.Topic != in || len(b.Events) != 1 {
		t.Fatalf("welcomed %v, assigned %v, batch %+v; want a welcome, an assign of %s and one event", welcomed, assigned, b, in)
	}
	if key, _ := base64.StdEncoding.DecodeString(b.Events[0].Key); string(key) != "cat" || b.Events[0].Value != "eA==" {
		t.Fatalf("event key %q value %q, want base64 of cat and x", b.Events[0].Key, b.Events[0].Value)
	}
	fmt.Fprintf(stdin, `{"results": {"topic": %q, "partition": %d, "epoch": %q, "results": [
  {"offset": %q, "status": "RESULT_STATUS_OK", "produced": [{"topic": %q, "key": "Y2F0", "value": "MQ=="}]}]}}
{"credit": {"events": 1}}
`, in, b.Partition, b.Epoch, b.Events[0].Offset, out)

	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	fs := cl.PollFetches(pctx)
	if err := fs.Err0(); err != nil {
		t.Fatalf("reading %s: %v (grpcurl stderr: %s)", out, err, cmd.Stderr)
	}
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Key) != "cat" || string(recs[0].Value) != "1" || !recs[0].Timestamp.Equal(ts) {
		t.Fatalf("output records %v, want one cat=1 with the input's timestamp %v", recs, ts)
	}
	waitFor(t, 30*time.Second, "the input committed", func() bool { return committed(t, app, in, 1)[0] == 1 })
	stdin.Close()                                      // half-close: a graceful stop
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // what the worker still sends
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("grpcurl: %v (stderr: %s)", waitErr, cmd.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Error("the session did not end within 30s of the half-close")
	}
}
