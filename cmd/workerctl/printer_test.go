package main

import (
	"testing"
	"time"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func TestCompactPartitions(t *testing.T) {
	tp := func(topic string, p int32) *eddyv1.TopicPartition {
		return &eddyv1.TopicPartition{Topic: topic, Partition: p}
	}
	tests := []struct {
		name string
		in   []*eddyv1.TopicPartition
		want string
	}{
		{name: "none", in: nil, want: "none"},
		{name: "one", in: []*eddyv1.TopicPartition{tp("a", 7)}, want: "a[7]"},
		{name: "run and single", in: []*eddyv1.TopicPartition{tp("orders", 5), tp("orders", 1), tp("orders", 0), tp("orders", 3), tp("orders", 2)}, want: "orders[0-3,5]"},
		{name: "topics sorted", in: []*eddyv1.TopicPartition{tp("z", 0), tp("a", 1), tp("a", 2)}, want: "a[1-2] z[0]"},
		{name: "duplicates", in: []*eddyv1.TopicPartition{tp("a", 1), tp("a", 1)}, want: "a[1]"},
		{name: "several runs", in: []*eddyv1.TopicPartition{tp("a", 0), tp("a", 1), tp("a", 4), tp("a", 5), tp("a", 9)}, want: "a[0-1,4-5,9]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compactPartitions(tt.in); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{400 * time.Millisecond, "0s"},
		{45 * time.Second, "45s"},
		{12*time.Minute + 3*time.Second, "12m3s"},
		{3*time.Hour + 12*time.Minute + 40*time.Second, "3h13m"},
		{53 * time.Hour, "2d5h"},
		{-5 * time.Second, "-5s"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.in); got != tt.want {
			t.Errorf("humanDuration(%v): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestStateName(t *testing.T) {
	if got, want := stateName(eddyv1.WorkerState_WORKER_STATE_RECOVERING), "RECOVERING"; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}
