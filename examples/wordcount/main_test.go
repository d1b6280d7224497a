package main

import (
	"context"
	"slices"
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
