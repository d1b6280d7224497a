package agent_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/client/agent"
	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
)

// fakeApp is the list of workers every fake worker of a test answers with.
type fakeApp struct {
	mu      sync.Mutex
	members []*fakeWorker
	ids     map[*fakeWorker]string
}

func newFakeApp(t *testing.T, n int) (*fakeApp, []*fakeWorker) {
	app := &fakeApp{ids: map[*fakeWorker]string{}}
	var ws []*fakeWorker
	for i := range n {
		w := startFakeWorker(t)
		app.ids[w] = fmt.Sprintf("w%d", i+1)
		w.SetList(func() *eddyv1.ListWorkersResponse { return app.list(w) })
		ws = append(ws, w)
	}
	return app, ws
}

func (a *fakeApp) set(ws ...*fakeWorker) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.members = ws
}

func (a *fakeApp) list(self *fakeWorker) *eddyv1.ListWorkersResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := &eddyv1.ListWorkersResponse{WorkerId: a.ids[self]}
	for _, w := range a.members {
		resp.Workers = append(resp.Workers, &eddyv1.WorkerInfo{WorkerId: a.ids[w], GrpcAddress: w.Addr})
	}
	return resp
}

// open is the number of sessions of w the agent has not closed.
func open(w *fakeWorker) int {
	n := 0
	for _, s := range w.Sessions() {
		if !s.ClosedByPeer() {
			n++
		}
	}
	return n
}

// TestDiscoveryFollowsWorkers: given one worker's address, the agent has a
// session with every worker the app lists, connects to one that joins and
// leaves one that left (after two lists without it), all under one
// instance id.
func TestDiscoveryFollowsWorkers(t *testing.T) {
	app, ws := newFakeApp(t, 3)
	w1, w2, w3 := ws[0], ws[1], ws[2]
	app.set(w1, w2)
	a := newAgent(t, w1, ok, agent.WithDiscovery(20*time.Millisecond))
	runAgent(t, a)
	counts := func(want ...int) func() bool {
		return func() bool {
			for i, w := range ws {
				if open(w) != want[i] {
					return false
				}
			}
			return len(a.Sessions()) == sum(want)
		}
	}
	waitFor(t, waitTimeout, "a session with w1 and w2 only", counts(1, 1, 0))

	app.set(w1, w2, w3)
	waitFor(t, waitTimeout, "a session with w3 too", counts(1, 1, 1))

	app.set(w1, w3)
	waitFor(t, waitTimeout, "w2's session closed by the agent", counts(1, 0, 1))
	for _, w := range ws {
		for _, s := range w.Sessions() {
			if got := s.Hello.GetInstanceId(); got != a.InstanceID() {
				t.Errorf("instance id at %s: got %q, want %q", w.Addr, got, a.InstanceID())
			}
		}
	}
	if got := w1.Hellos(); got != 1 {
		t.Errorf("w1: %d Connect streams, want 1 (its session kept throughout)", got)
	}
}

// TestDiscoveryOneSessionPerWorker: an address of WithAddr that names a
// worker otherwise than it advertises itself ("localhost" for "127.0.0.1")
// is matched to the worker by its id, so the worker never gets a second
// session of the instance (which would replace the first, again and again).
// The worker first does not answer the list (it is starting), so the agent
// connects to the address given; once it answers, that session is kept.
func TestDiscoveryOneSessionPerWorker(t *testing.T) {
	app, ws := newFakeApp(t, 2)
	w1, w2 := ws[0], ws[1]
	app.set(w1, w2)
	w1.SetList(nil)
	seed := strings.Replace(w1.Addr, "127.0.0.1", "localhost", 1)
	a := newAgent(t, w1, ok, agent.WithAddr(seed), agent.WithDiscovery(10*time.Millisecond))
	runAgent(t, a)
	waitFor(t, waitTimeout, "a session with w1 at the address given", func() bool { return open(w1) == 1 })
	w1.SetList(func() *eddyv1.ListWorkersResponse { return app.list(w1) })
	waitFor(t, waitTimeout, "sessions with w1 and w2", func() bool { return open(w1) == 1 && open(w2) == 1 })
	lists := w1.Lists() + w2.Lists()
	waitFor(t, waitTimeout, "ten more lists", func() bool { return w1.Lists()+w2.Lists() >= lists+10 })
	if got := w1.Hellos(); got != 1 {
		t.Errorf("w1: %d Connect streams, want 1", got)
	}
	if got := a.Sessions(); len(got) != 2 || got[seed] == "" || got[w2.Addr] == "" {
		t.Errorf("sessions: got %v, want %s and %s", got, seed, w2.Addr)
	}
}

// TestDiscoveryFallsBackToSeeds: workers that do not answer the list (too
// old, or still starting) are connected to at the addresses given; with
// discovery off, exactly those and no list is asked for.
func TestDiscoveryFallsBackToSeeds(t *testing.T) {
	w1, w2 := startFakeWorker(t), startFakeWorker(t)
	a := newAgent(t, w1, ok, agent.WithAddr(w1.Addr+", "+w2.Addr), agent.WithDiscovery(10*time.Millisecond))
	runAgent(t, a)
	waitFor(t, waitTimeout, "sessions with both", func() bool { return open(w1) == 1 && open(w2) == 1 })

	app, ws := newFakeApp(t, 2)
	app.set(ws...)
	off := newAgent(t, ws[0], ok, agent.WithDiscovery(0))
	r := runAgent(t, off)
	waitFor(t, waitTimeout, "a session with the one address", func() bool { return open(ws[0]) == 1 })
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	if n := ws[0].Lists() + ws[1].Lists(); n != 0 || len(ws[1].Sessions()) != 0 {
		t.Errorf("discovery off: %d lists, %d sessions at the other worker; want none", n, len(ws[1].Sessions()))
	}
}

// restartedList is the list of an app whose worker "w1" was restarted on a
// new address (same data, so the same worker id), beside "w2": the group
// still lists w1 at the address it had, until its old membership expires;
// then at the new one.
type restartedList struct {
	mu             sync.Mutex
	w1Addr, w2Addr string
	w1Also         string // a second address of w1, if listed (both memberships)
}

func (l *restartedList) answer(self string) func() *eddyv1.ListWorkersResponse {
	return func() *eddyv1.ListWorkersResponse {
		l.mu.Lock()
		defer l.mu.Unlock()
		resp := &eddyv1.ListWorkersResponse{WorkerId: self, Workers: []*eddyv1.WorkerInfo{
			{WorkerId: "w1", GrpcAddress: l.w1Addr}, {WorkerId: "w2", GrpcAddress: l.w2Addr}}}
		if l.w1Also != "" {
			resp.Workers = append(resp.Workers, &eddyv1.WorkerInfo{WorkerId: "w1", GrpcAddress: l.w1Also})
		}
		return resp
	}
}

func (l *restartedList) move(w1Addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w1Addr = w1Addr
}

// TestDiscoveryRestartedWorkerOnANewAddress: a worker restarted on another
// address keeps its worker id, and the group lists the old address for a
// while. An agent given the new address keeps its session there (the
// worker that answered is alive where it was asked), and an agent
// connected to the old address follows the worker to the new one (the
// worker's listed address changed). TestExactlyOnceKills saw agents of a
// restarted worker retry a dead address for minutes, never connected to
// their own worker.
func TestDiscoveryRestartedWorkerOnANewAddress(t *testing.T) {
	t.Run("given the new address", func(t *testing.T) {
		gone, w1, w2 := startFakeWorker(t), startFakeWorker(t), startFakeWorker(t)
		gone.Stop()
		l := &restartedList{w1Addr: gone.Addr, w2Addr: w2.Addr}
		w1.SetList(l.answer("w1"))
		w2.SetList(l.answer("w2"))
		a := newAgent(t, w1, ok, agent.WithDiscovery(10*time.Millisecond))
		runAgent(t, a)
		waitFor(t, waitTimeout, "sessions with the restarted w1 and with w2", func() bool { return open(w1) == 1 && open(w2) == 1 })
		lists := w1.Lists() + w2.Lists()
		waitFor(t, waitTimeout, "ten more lists", func() bool { return w1.Lists()+w2.Lists() >= lists+10 })
		if open(w1) != 1 || w1.Hellos() != 1 {
			t.Errorf("w1: %d open sessions of %d Connect streams; want its one session kept", open(w1), w1.Hellos())
		}
		l.move(w1.Addr) // the old membership expired
		lists = w1.Lists() + w2.Lists()
		waitFor(t, waitTimeout, "ten more lists", func() bool { return w1.Lists()+w2.Lists() >= lists+10 })
		if open(w1) != 1 || w1.Hellos() != 1 {
			t.Errorf("w1 listed at the address asked: %d open sessions of %d Connect streams; want its one session kept", open(w1), w1.Hellos())
		}
	})
	t.Run("connected to the old address", func(t *testing.T) {
		old, w1, w2 := startFakeWorker(t), startFakeWorker(t), startFakeWorker(t)
		l := &restartedList{w1Addr: old.Addr, w2Addr: w2.Addr}
		old.SetList(l.answer("w1"))
		w2.SetList(l.answer("w2"))
		a := newAgent(t, old, ok, agent.WithDiscovery(10*time.Millisecond))
		runAgent(t, a)
		waitFor(t, waitTimeout, "sessions with w1 and w2", func() bool { return open(old) == 1 && open(w2) == 1 })
		old.Stop()
		w1.SetList(l.answer("w1"))
		l.move(w1.Addr)
		waitFor(t, waitTimeout, "a session with w1 at its new address", func() bool { return open(w1) == 1 && open(w2) == 1 })
	})
	t.Run("listed at both addresses", func(t *testing.T) {
		old, w1, w2 := startFakeWorker(t), startFakeWorker(t), startFakeWorker(t)
		l := &restartedList{w1Addr: old.Addr, w2Addr: w2.Addr}
		old.SetList(l.answer("w1"))
		w2.SetList(l.answer("w2"))
		a := newAgent(t, old, ok, agent.WithDiscovery(10*time.Millisecond))
		runAgent(t, a)
		waitFor(t, waitTimeout, "sessions with w1 and w2", func() bool { return open(old) == 1 && open(w2) == 1 })
		old.Stop()
		w1.SetList(l.answer("w1"))
		l.mu.Lock()
		l.w1Also = w1.Addr // the old membership lingers beside the new one
		l.mu.Unlock()
		waitFor(t, waitTimeout, "a session with w1 at its new address", func() bool { return open(w1) == 1 && open(w2) == 1 })
	})
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// proxy forwards each new TCP connection to the address pick names at
// that moment: a load balancer in front of workers.
func proxy(t *testing.T, pick func() string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := pick()
			go func() {
				u, err := net.Dial("tcp", b)
				if err != nil {
					c.Close()
					return
				}
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// rrProxy is a proxy to each backend in turn.
func rrProxy(t *testing.T, backends ...string) string {
	t.Helper()
	var n atomic.Int64
	return proxy(t, func() string { return backends[int(n.Add(1))%len(backends)] })
}

// TestDiscoveryLoadBalancedSeed: the address given is a load balancer in
// front of the workers. The worker that answered the list through it is
// not taken at that address (its next connection may reach another
// worker), but at the one it is listed at, which says it is that worker:
// one session with each worker, never two with one. (Found in review.)
func TestDiscoveryLoadBalancedSeed(t *testing.T) {
	app, ws := newFakeApp(t, 2)
	w1, w2 := ws[0], ws[1]
	app.set(w1, w2)
	lb := rrProxy(t, w1.Addr, w2.Addr)
	a := newAgent(t, w1, ok, agent.WithAddr(lb), agent.WithDiscovery(10*time.Millisecond))
	runAgent(t, a)
	waitFor(t, waitTimeout, "a session with each worker", func() bool { return open(w1) == 1 && open(w2) == 1 })
	lists := w1.Lists() + w2.Lists()
	waitFor(t, waitTimeout, "ten more lists", func() bool { return w1.Lists()+w2.Lists() >= lists+10 })
	if open(w1) != 1 || open(w2) != 1 || w1.Hellos() != 1 || w2.Hellos() != 1 {
		t.Errorf("w1 %d open of %d streams, w2 %d open of %d; want one session each, kept", open(w1), w1.Hellos(), open(w2), w2.Hellos())
	}
}

// switchProxy is a proxy to the address target holds: a load balancer
// whose backend is replaced.
func switchProxy(t *testing.T, target *atomic.Value) string {
	t.Helper()
	return proxy(t, func() string { return target.Load().(string) })
}

// TestDiscoveryLinkReachingAnotherWorker: a link at a load-balanced
// address, taken for w1, reconnects after w1 was replaced behind the
// balancer, and the balancer sends it to w2, which has a link of its own.
// The connection says it reached w2, so it sends no Hello there: w2 never
// gets a second session of the instance. (Found in review: it did, for a
// discovery interval and a drain.)
func TestDiscoveryLinkReachingAnotherWorker(t *testing.T) {
	dead, w1, w2 := startFakeWorker(t), startFakeWorker(t), startFakeWorker(t)
	dead.Stop()
	w1.SetList(func() *eddyv1.ListWorkersResponse { // listed at a dead address: its link stays at the balancer
		return &eddyv1.ListWorkersResponse{WorkerId: "w1", Workers: []*eddyv1.WorkerInfo{{WorkerId: "w1", GrpcAddress: dead.Addr}}}
	})
	w2.SetList(func() *eddyv1.ListWorkersResponse {
		return &eddyv1.ListWorkersResponse{WorkerId: "w2", Workers: []*eddyv1.WorkerInfo{
			{WorkerId: "w1", GrpcAddress: dead.Addr}, {WorkerId: "w2", GrpcAddress: w2.Addr}}}
	})
	var target atomic.Value
	target.Store(w1.Addr)
	lb := switchProxy(t, &target)
	a := newAgent(t, w1, ok, agent.WithAddr(lb), agent.WithDiscovery(10*time.Millisecond))
	runAgent(t, a)
	waitFor(t, waitTimeout, "a session at w1 through the balancer", func() bool { return open(w1) == 1 })
	target.Store(w2.Addr)
	w1.Stop() // replaced: the link reconnects through the balancer, to w2
	waitFor(t, waitTimeout, "a session at w2", func() bool { return open(w2) == 1 })
	lists := w2.Lists()
	waitFor(t, waitTimeout, "twenty more lists", func() bool { return w2.Lists() >= lists+20 })
	if got := w2.Hellos(); got != 1 {
		t.Errorf("w2: %d Connect streams with a Hello, want 1 (one session of the instance)", got)
	}
}
