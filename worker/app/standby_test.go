package app

import (
	"reflect"
	"testing"

	"github.com/eddy-streams/eddy/worker/config"
)

func TestStandbyPlacement(t *testing.T) {
	cfg := &config.Config{
		App: "wc", WorkerID: "w2",
		Topics: []config.Topic{{Name: "words", Partitions: 4}, {Name: "lines", Partitions: 4}},
		Agents: []config.Agent{
			{Name: "split", Topics: []string{"lines"}},
			{Name: "count", Topics: []string{"words"}, Tables: []string{"counts", "plain"}},
		},
		Tables: []config.Table{{Name: "counts", StandbyReplicas: 1}, {Name: "plain"}},
	}
	a := &App{cfg: cfg}
	if !a.wantsStandbys() {
		t.Fatal("wantsStandbys() = false, want true")
	}
	ms := []Member{
		{WorkerID: "w1", Assigned: []TopicPartition{{"lines", 0}, {"words", 0}, {"words", 2}}},
		{WorkerID: "w2", Assigned: []TopicPartition{{"lines", 1}, {"words", 1}}},
		// words 3 is owned by no one (a rebalance): kept, not wanted.
	}
	want, keep := a.standbyPlacement(ms)
	if got, exp := want, map[string][]int32{"counts": {0, 2}}; !reflect.DeepEqual(got, exp) {
		t.Errorf("want = %v, expected %v", got, exp)
	}
	if got, exp := keep, map[string][]int32{"counts": {3}}; !reflect.DeepEqual(got, exp) {
		t.Errorf("keep = %v, expected %v", got, exp)
	}

	cfg.Tables[0].StandbyReplicas = 0
	if a.wantsStandbys() {
		t.Error("wantsStandbys() = true without standby_replicas")
	}
}
