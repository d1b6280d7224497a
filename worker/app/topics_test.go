package app

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

func topicsConfig() *config.Config {
	cfg := config.DefaultConfig()
	cfg.App = "shop"
	cfg.Topics = []config.Topic{{Name: "orders", Partitions: 4}, {Name: "out", Partitions: 4},
		{Name: "shop-counts-changelog", Partitions: 4}, {Name: "shop-count-dlq", Partitions: 1}}
	cfg.Agents = []config.Agent{{Name: "count", Topics: []string{"orders"}, Tables: []string{"counts"}}}
	cfg.Tables = []config.Table{{Name: "counts"}}
	return cfg
}

// Agents may write the declared topics, never the internal ones, even
// when the app file declares an internal topic by name.
func TestOutputTopics(t *testing.T) {
	a := &App{cfg: topicsConfig()}
	if got, want := fmt.Sprint(a.outputTopics()), "[orders out]"; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Dead-letter topics allow records up to the producer's limit.
func TestDeadLetterTopicAllowsLargeRecords(t *testing.T) {
	a := &App{cfg: topicsConfig()}
	found := false
	for _, s := range a.topicSpecs() {
		if s.Name == "shop-count-dlq" && s.Config != nil {
			found = true
			if got, want := s.Config["max.message.bytes"], strconv.Itoa(transport.MaxMessageBytes); got != want {
				t.Errorf("max.message.bytes = %q, want %q", got, want)
			}
		}
	}
	if !found {
		t.Errorf("no dead-letter spec with a config in %+v", a.topicSpecs())
	}
}
