package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/client/agent"
)

func TestWords(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"The cat and the hat.", []string{"the", "cat", "and", "the", "hat"}},
		{"  snake_case, x2; ÉTÉ!", []string{"snake_case", "x2", "été"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Words(tt.line); !slices.Equal(got, tt.want) {
			t.Errorf("Words(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	wc := WordCount{Words: "words", Table: "counts", Out: "word-counts"}
	ev := &agent.Event{Value: []byte("a b a")}
	if err := wc.Split(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range ev.Emitted() {
		if r.Topic != "words" || string(r.Value) != "1" {
			t.Errorf("emitted %+v, want words/1", r)
		}
		got = append(got, string(r.Key))
	}
	if !slices.Equal(got, []string{"a", "b", "a"}) {
		t.Errorf("keys %q, want [a b a]", got)
	}
}

func TestCountWithoutState(t *testing.T) {
	wc := WordCount{Words: "words", Table: "counts", Out: "word-counts"}
	ev := &agent.Event{Key: []byte("cat"), Value: []byte("1")}
	if err := wc.Count(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if v, ok := ev.State("counts"); !ok || string(v) != "1" {
		t.Errorf("state %q/%v, want 1", v, ok)
	}
	if out := ev.Emitted(); len(out) != 1 || string(out[0].Key) != "cat" || string(out[0].Value) != "1" {
		t.Errorf("emitted %+v, want cat → 1", out)
	}
	bad := &agent.Event{Key: []byte("cat"), Value: []byte("x")}
	if err := wc.Count(context.Background(), bad); agent.StatusOf(err) != agent.StatusDeadLetter {
		t.Errorf("bad value: %v, want a dead letter", err)
	}
}

// TestUsageNamesRealFlags: every flag main.go's usage comment names is one
// the program accepts.
func TestUsageNamesRealFlags(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, usage, _ := strings.Cut(string(src), "// Usage:")
	usage, _, _ = strings.Cut(usage, "package main")
	flags := regexp.MustCompile(`\[--([a-z-]+)`).FindAllStringSubmatch(usage, -1)
	if len(flags) < 5 {
		t.Fatalf("usage comment names %d flags, want the 6 of wordcount:\n%s", len(flags), usage)
	}
	for _, f := range flags {
		var stderr strings.Builder
		if code := run(context.Background(), []string{"--" + f[1], "x", "--help"}, &stderr, func(string) string { return "" }); code != exitOK {
			t.Errorf("usage names --%s: exit %d: %s", f[1], code, stderr.String())
		}
	}
}

// TestReadmeCommands: the README's commands are the real ones: start.sh and
// stop.sh take a DIR, the worker's --brokers is the address start.sh wrote
// there, and every bin/ program used is built by a command above it.
func TestReadmeCommands(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := regexp.MustCompile(`scripts/kafka/start\.sh (\S+)`).FindStringSubmatch(readme)
	if start == nil {
		t.Fatal("README: no scripts/kafka/start.sh DIR")
	}
	dir := start[1]
	for _, want := range []string{`--brokers "$(cat ` + dir + `/bootstrap)"`, "scripts/kafka/stop.sh " + dir} {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q", want)
		}
	}
	built := map[string]bool{}
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "make build") {
			built["worker"], built["workerctl"] = true, true
		}
		if m := regexp.MustCompile(`go build -o bin/(\S+)`).FindStringSubmatch(line); m != nil {
			built[m[1]] = true
		}
		for _, m := range regexp.MustCompile(`(?:^|\s)bin/([a-z]+)`).FindAllStringSubmatch(line, -1) {
			if !built[m[1]] && !strings.Contains(line, "-o bin/"+m[1]) {
				t.Errorf("README runs bin/%s before building it: %q", m[1], line)
			}
		}
	}
}
