package ike

import (
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/clock/clocktest"
)

// sim runs engines on one manual clock without their Run loops: it hands them their IKE
// messages itself and moves the clock to the next timer only when no message is in flight.
// Timers fire in order at their virtual time, so hours of lifetimes, DPD rounds and
// retransmission schedules at their real defaults take milliseconds, deterministically.
type sim struct {
	tb    testing.TB
	clk   *clocktest.Clock
	nodes []*node
}

func newSim(tb testing.TB) *sim { return &sim{tb: tb, clk: clocktest.New()} }

// start adds an engine on the simulation's clock (or opts.Clock, which must run on it).
// opts.Kernel defaults to k, a zero opts.Retransmit to DefaultRetransmit.
func (s *sim) start(name string, b *bindtest.Bind, k *fakeKernel, opts Options, conns ...model.Connection) *node {
	s.tb.Helper()
	if opts.Kernel == nil {
		opts.Kernel = k
	}
	if opts.Clock == nil {
		opts.Clock = s.clk
	}
	opts.Logger, opts.Bind = testLogger(s.tb, name), b
	e := New(opts)
	if err := e.Configure(conns); err != nil {
		s.tb.Fatal(err)
	}
	done := make(chan struct{})
	close(done)
	n := &node{e: e, k: k, bind: b, cancel: e.shutdown, done: done}
	s.nodes = append(s.nodes, n)
	return n
}

// pair starts two engines connected back to back, as startPair does.
func (s *sim) pair(pc pairConfig) (a, b *node) {
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(s.tb, pc)
	a = s.start("A", ba, newFakeKernel(0xa0000000), Options{Retransmit: pc.retransmit}, ca)
	b = s.start("B", bb, newFakeKernel(0xb0000000), Options{Retransmit: pc.retransmit}, cb)
	return a, b
}

// up brings every tunnel of a up, as an acquire does, and runs until both a and b have
// them installed.
func (s *sim) up(a, b *node) {
	s.tb.Helper()
	ts := a.e.Tunnels()
	for _, t := range ts {
		a.e.Acquire(t.ReqID)
	}
	s.run("tunnels up", time.Minute, func() bool { return len(a.k.active()) == len(ts) && len(b.k.active()) == len(ts) })
}

// deliver processes one pending IKE message; it reports false when none is in flight. It
// first lets the engines' DH computations finish (dhwork.go), so messages and timers meet
// the state they would meet one at a time.
func (s *sim) deliver() bool {
	s.settle()
	for _, n := range s.nodes {
		select {
		case pkt, ok := <-n.bind.IKE():
			if ok {
				n.e.mu.Lock()
				n.e.handlePacket(pkt)
				n.e.mu.Unlock()
				return true
			}
		default:
		}
	}
	return false
}

// settle waits until no engine has DH work out.
func (s *sim) settle() {
	for _, n := range s.nodes {
		n.e.work.Wait()
	}
}

// run delivers messages and fires timers until cond holds. It fails when nothing is left
// to happen or cond does not hold within limit of virtual time.
func (s *sim) run(what string, limit time.Duration, cond func() bool) {
	s.tb.Helper()
	end := s.clk.Now().Add(limit)
	for s.settle(); !cond(); s.settle() {
		if s.deliver() {
			continue
		}
		d, ok := s.clk.Until()
		if !ok {
			s.tb.Fatalf("waiting for %s: nothing left to happen", what)
		}
		if s.clk.Now().Add(d).After(end) {
			s.tb.Fatalf("no %s within %v", what, limit)
		}
		s.clk.Advance(d)
	}
}

// advance lets d of virtual time pass, delivering messages as timers send them.
func (s *sim) advance(d time.Duration) {
	end := s.clk.Now().Add(d)
	for {
		for s.deliver() {
		}
		next, ok := s.clk.Until()
		if !ok || s.clk.Now().Add(next).After(end) {
			s.clk.Advance(end.Sub(s.clk.Now()))
			for s.deliver() {
			}
			return
		}
		s.clk.Advance(next)
	}
}

// elapsed returns the virtual time since start.
func (s *sim) elapsed(start time.Time) time.Duration { return s.clk.Now().Sub(start) }
