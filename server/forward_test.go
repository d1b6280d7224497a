package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

func fwdAddr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 10000+i) }

// TestForwarderEvictsLeastRecentlyUsed: past maxForwardConns the connection
// used longest ago is closed, not every one; one in use is closed only when
// its call is done.
func TestForwarderEvictsLeastRecentlyUsed(t *testing.T) {
	f := &forwarder{}
	t.Cleanup(func() { f.Close() })
	conns := map[string]*grpc.ClientConn{}
	var holdRelease func()
	for i := range maxForwardConns {
		c, release, err := f.conn(fwdAddr(i))
		if err != nil {
			t.Fatal(err)
		}
		conns[fwdAddr(i)] = c
		if i == 2 {
			holdRelease = release // a call still uses it
		} else {
			release()
		}
	}
	_, release, err := f.conn(fwdAddr(0)) // fwdAddr(1) is now the least recently used
	if err != nil {
		t.Fatal(err)
	}
	release()
	closedOnes := func() []string {
		var out []string
		for a, c := range conns {
			if c.GetState() == connectivity.Shutdown {
				out = append(out, a)
			}
		}
		return out
	}
	for i := range 2 { // evicts fwdAddr(1), then fwdAddr(2), in use
		c, release, err := f.conn(fwdAddr(maxForwardConns + i))
		if err != nil {
			t.Fatal(err)
		}
		release()
		conns[fwdAddr(maxForwardConns+i)] = c
	}
	if got := closedOnes(); len(got) != 1 || got[0] != fwdAddr(1) {
		t.Errorf("got closed %v, want only %s (the least recently used; %s is in use)", got, fwdAddr(1), fwdAddr(2))
	}
	if n := len(f.conns); n != maxForwardConns {
		t.Errorf("got %d cached connections, want %d", n, maxForwardConns)
	}
	holdRelease()
	if got := conns[fwdAddr(2)].GetState(); got != connectivity.Shutdown {
		t.Errorf("evicted connection after its call: got state %v, want %v", got, connectivity.Shutdown)
	}
}

// TestServerCloseClosesForwardConns: Close (at shutdown) closes the
// connections forwarded reads opened; a read forwarded after it fails
// (forwardGet answers that with UNAVAILABLE).
func TestServerCloseClosesForwardConns(t *testing.T) {
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)}, &fakeCore{})
	var conns []*grpc.ClientConn
	for i := range 3 {
		c, release, err := srv.fwd.conn(fwdAddr(i))
		if err != nil {
			t.Fatal(err)
		}
		release()
		conns = append(conns, c)
	}
	srv.GRPC.Stop()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, c := range conns {
		if got := c.GetState(); got != connectivity.Shutdown {
			t.Errorf("connection to %s after Close: got state %v, want %v", fwdAddr(i), got, connectivity.Shutdown)
		}
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if _, _, err := srv.fwd.conn(fwdAddr(9)); !errors.Is(err, errForwarderClosed) {
		t.Errorf("conn after Close: got %v, want errForwarderClosed", err)
	}
	_, err := srv.fwd.get(context.Background(), "me", "w9", fwdAddr(9), &eddyv1.GetRequest{Table: "t", Key: []byte("k")})
	if !errors.Is(err, errForwarderClosed) {
		t.Errorf("get after Close: got %v, want errForwarderClosed", err)
	}
}
