package app

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/transport"
)

type fakeDescriber []transport.GroupMember

func (d fakeDescriber) DescribeGroup(context.Context, string) ([]transport.GroupMember, error) {
	return d, nil
}

// TestCheckIdentity: a live member with this worker id at another address
// is refused (the two would fence each other's transactions); a member
// with the id that does not answer, or at this worker's own address, is
// its predecessor.
func TestCheckIdentity(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	cfg := config.DefaultConfig()
	cfg.App, cfg.WorkerID = "wc", "w1"
	a := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), GRPCAddr: "127.0.0.1:7001"})
	member := func(id, addr string) transport.GroupMember {
		return transport.GroupMember{ClientID: "eddy|" + id + "|" + addr}
	}
	for _, tt := range []struct {
		name    string
		members fakeDescriber
		refused bool
	}{
		{"no member", nil, false},
		{"other ids", fakeDescriber{member("w2", live.Addr().String())}, false},
		{"own address (its predecessor)", fakeDescriber{member("w1", "127.0.0.1:7001")}, false},
		{"nothing answers there (a dead predecessor)", fakeDescriber{member("w1", deadAddr)}, false},
		{"a live twin", fakeDescriber{member("w1", live.Addr().String())}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := a.checkIdentity(context.Background(), tt.members)
			switch {
			case tt.refused && (err == nil || !strings.Contains(err.Error(), `worker id "w1" is in use by a live member`)):
				t.Errorf("got %v, want the refusal naming the worker id", err)
			case !tt.refused && err != nil:
				t.Errorf("got %v, want no error", err)
			}
		})
	}
}

// TestMembersLeaveOutThePredecessor: a member with this worker's id at
// another address is its predecessor (a live twin is refused at start):
// the list of workers (agents' discovery, owners of table partitions)
// leaves it out, so nobody dials an address nothing answers on.
func TestMembersLeaveOutThePredecessor(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.App, cfg.WorkerID = "wc", "w1"
	a := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), GRPCAddr: "127.0.0.1:7001"})
	member := func(id, addr string) transport.GroupMember {
		return transport.GroupMember{ClientID: "eddy|" + id + "|" + addr}
	}
	a.describer = fakeDescriber{member("w1", "127.0.0.1:7999"), member("w1", "127.0.0.1:7001"), member("w2", "127.0.0.1:7002")}
	ms, err := a.Members(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.WorkerID+"@"+m.Addr)
	}
	if want := []string{"w1@127.0.0.1:7001", "w2@127.0.0.1:7002"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
}
