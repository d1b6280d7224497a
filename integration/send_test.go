package integration

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkerctlSend: `workerctl send` writes a record to a declared topic
// through the worker; an independent consumer finds it at the partition
// and offset printed, with its key, value and headers; it is delivered to
// the topic's agent like any record. An unknown topic, a partition out of
// range and a missing token are refused, naming what is wrong.
func TestWorkerctlSend(t *testing.T) {
	body, _, topic := basicApp(t, "auth: {token: s3cret}\n")
	w := startWorker(t, body)
	w.waitState(t, 60*time.Second, "RUNNING")

	if _, errOut, code := w.ctl(t, "send", topic, "nope"); code != 4 || !strings.Contains(errOut, "token") {
		t.Fatalf("send without token: exit %d, %s; want 4 naming the token", code, errOut)
	}
	out, errOut, code := w.ctl(t, "--token", "s3cret", "send", topic, "--key", "k1", "--header", "source=ops", "-o", "json", "hello")
	if code != 0 {
		t.Fatalf("send: exit %d: %s", code, errOut)
	}
	var resp struct {
		Partition int32  `json:"partition"`
		Offset    string `json:"offset"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("send -o json: %v\n%s", err, out)
	}
	p := "2"
	out2, errOut, code := w.ctl(t, "--token", "s3cret", "send", topic, "--partition", p, "world")
	if code != 0 || !strings.Contains(out2, "["+p+"] at offset") {
		t.Fatalf("send --partition 2: exit %d, %q %s", code, out2, errOut)
	}

	got := newConsumer(t, topic).readUntil(30*time.Second, "both sent records", countAtLeast(topic, 2))[topic]
	var hello, world *record
	for i := range got {
		switch got[i].Value {
		case "hello":
			hello = &got[i]
		case "world":
			world = &got[i]
		}
	}
	if hello == nil || world == nil {
		t.Fatalf("consumed %+v, want hello and world", got)
	}
	if strconv.FormatInt(hello.Offset, 10) != resp.Offset || hello.Partition != resp.Partition || hello.Key != "k1" || hello.Headers["source"] != "ops" {
		t.Errorf("hello is %+v; send said partition %d offset %s, key k1, header source=ops", *hello, resp.Partition, resp.Offset)
	}
	if world.Partition != 2 || world.Key != "" {
		t.Errorf("world is %+v, want partition 2 and no key", *world)
	}

	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"send", "no-such-topic", "x"}, "declared topics are"},
		{[]string{"send", topic, "--partition", "3", "x"}, "partitions 0..2, not 3"},
	} {
		if _, errOut, code := w.ctl(t, append([]string{"--token", "s3cret"}, tt.args...)...); code != 1 || !strings.Contains(errOut, tt.msg) {
			t.Errorf("workerctl %v: exit %d, %s; want 1 mentioning %q", tt.args, code, errOut, tt.msg)
		}
	}
}
