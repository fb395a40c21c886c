package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/proposal"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	outcomes []Outcome
	deleted  []Deletion
	received map[string]time.Time
}

func (r *recorder) Negotiated(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
}

func (r *recorder) Deleted(d Deletion) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, d)
}

func (r *recorder) Received(conn string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.received[conn] = at
}

func (r *recorder) has(o Outcome) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.outcomes, o)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("outcomes %+v, deletions %+v", r.outcomes, r.deleted)
}

// observe makes a recorder n's Observer.
func observe(n *node) *recorder {
	r := &recorder{received: make(map[string]time.Time)}
	n.e.mu.Lock()
	n.e.opts.Observer = r
	n.e.mu.Unlock()
	return r
}

func waitOutcome(t *testing.T, who string, r *recorder, o Outcome) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !r.has(o) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no outcome %+v in %v", who, o, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOutcomesOfATunnelsLife(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	a, b := startPair(t, pc)
	ra, rb := observe(a), observe(b)
	start := time.Now()
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitOutcome(t, "initiator", ra, Outcome{Connection: "peer", Exchange: ExchangeMain, Initiator: true, Result: ResultSuccess})
	waitOutcome(t, "initiator", ra, Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Initiator: true, Result: ResultSuccess})
	waitOutcome(t, "responder", rb, Outcome{Connection: "peer", Exchange: ExchangeMain, Result: ResultSuccess})
	waitOutcome(t, "responder", rb, Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Result: ResultSuccess})
	if at := ra.received["peer"]; at.Before(start) {
		t.Errorf("initiator: last IKE message from peer at %v, want after %v", at, start)
	}
	for _, l := range [][]Liveness{a.e.Liveness(), b.e.Liveness()} {
		if len(l) != 1 || !l[0].IKESAUp || l[0].DPD != DPDOff {
			t.Errorf("Liveness = %+v, want peer with an IKE SA and DPD off", l)
		}
	}

	// A second quick mode for the tunnel is a rekey.
	a.e.Expire(a.k.active()[0].SPIIn, false)
	waitOutcome(t, "initiator", ra, Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Initiator: true, Result: ResultSuccess, Rekey: true})

	if err := a.e.Down(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder deletes", func() bool {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		return slices.Contains(rb.deleted, Deletion{Connection: "peer", ByPeer: true}) &&
			slices.Contains(rb.deleted, Deletion{Connection: "peer", Tunnel: "t0", ByPeer: true})
	})
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, d := range []Deletion{{Connection: "peer"}, {Connection: "peer", Tunnel: "t0"}} {
		if !slices.Contains(ra.deleted, d) {
			t.Errorf("initiator deletions %+v lack %+v", ra.deleted, d)
		}
	}
}

func TestOutcomesOfFailures(t *testing.T) {
	tests := []struct {
		name   string
		pc     pairConfig
		change func(a, b *model.Connection)
		// wantA (initiator) and wantB (responder) are the failures each side reports.
		wantA, wantB Outcome
	}{
		{"psk", pairConfig{pskB: "wrong-key"}, nil,
			Outcome{Connection: "peer", Exchange: ExchangeMain, Initiator: true, Result: ResultPSKMismatch},
			Outcome{Connection: "peer", Exchange: ExchangeMain, Result: ResultPSKMismatch}},
		{"ike proposal", pairConfig{ikeB: "aes256-sha256-modp2048"}, nil,
			Outcome{Connection: "peer", Exchange: ExchangeMain, Initiator: true, Result: ResultNoProposalChosen},
			Outcome{Connection: "peer", Exchange: ExchangeMain, Result: ResultNoProposalChosen}},
		{"esp proposal", pairConfig{espB: "aes256gcm16"}, nil,
			Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Initiator: true, Result: ResultNoProposalChosen},
			Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Result: ResultNoProposalChosen}},
		{"peer id", pairConfig{}, func(_, b *model.Connection) { b.RemoteID = model.Identity{Kind: model.IDFQDN, Name: "gw.example"} },
			Outcome{Connection: "peer", Exchange: ExchangeMain, Initiator: true, Result: ResultIDMismatch},
			Outcome{Connection: "peer", Exchange: ExchangeMain, Result: ResultIDMismatch}},
		{"proxy id", pairConfig{}, func(_, b *model.Connection) {
			b.Tunnels[0].RemoteSubnets = []netip.Prefix{netip.MustParsePrefix("10.10.9.0/24")}
		},
			Outcome{Connection: "peer", Tunnel: "t0", Exchange: ExchangeQuick, Initiator: true, Result: ResultIDMismatch},
			Outcome{Connection: "peer", Exchange: ExchangeQuick, Result: ResultIDMismatch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := tt.pc
			pc.mode, pc.ike, pc.esp, pc.pskA = model.ModeMain, "3des-sha1-modp1024", "3des-sha1", "right-key"
			ba, bb := bindtest.NewPair()
			ca, cb := connPair(t, pc)
			if tt.change != nil {
				tt.change(&ca, &cb)
			}
			a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
			b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
			ra, rb := observe(a), observe(b)
			if err := a.e.Up(upCtx(t), "peer", ""); err == nil {
				t.Fatal("Up succeeded")
			}
			waitOutcome(t, "initiator", ra, tt.wantA)
			waitOutcome(t, "responder", rb, tt.wantB)
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Result
	}{
		{nil, ResultSuccess},
		// A silent peer after MM5 is only probably one with another key: a timeout.
		{fmt.Errorf("%w in state MM5_SENT (probably %w)", ErrTimeout, ErrPSKMismatch), ResultTimeout},
		{fmt.Errorf("%w: MM5 HASH does not verify", ErrPSKMismatch), ResultPSKMismatch},
		{fmt.Errorf("%w: peer could not authenticate us: %w", ErrPSKMismatch, ErrPeerNotify), ResultPSKMismatch},
		{fmt.Errorf("%w: peer rejected our identity: %w", ErrIDMismatch, ErrPeerNotify), ResultIDMismatch},
		{fmt.Errorf("%w: peer rejected our proposals: %w", ErrNoProposalChosen, ErrPeerNotify), ResultNoProposalChosen},
		{fmt.Errorf("tunnel t: %w", &proposal.NoProposalChosenError{Ours: "a", Theirs: "b"}), ResultNoProposalChosen},
		{fmt.Errorf("%w AUTHENTICATION-FAILED", ErrPeerNotify), ResultPeerNotify},
		{fmt.Errorf("tunnel t: %w", errDPD), ResultAborted},
		{errShutdown, ResultAborted},
		{errors.New("quick mode 1234 lacks a nonce payload"), ResultOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestLivenessDPD: DPD is alive while the peer answers, probing once it goes silent, and the
// dead peer's SAs count as deleted by the peer.
func TestLivenessDPD(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", dpdDelay: 30 * time.Second, dpdTimeout: 150 * time.Second}
	s := newSim(t)
	a, b := s.pair(pc)
	ra := observe(a)
	s.up(a, b)
	dpd := func() Liveness { return a.e.Liveness()[0] }
	s.run("DPD alive", 10*pc.dpdDelay, func() bool { l := dpd(); return l.DPD == DPDAlive && l.IKESAUp && !l.LastDPDAck.IsZero() })
	b.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	s.run("DPD probing", 5*pc.dpdDelay, func() bool { return dpd().DPD == DPDProbing })
	s.run("peer declared dead", 2*pc.dpdTimeout, func() bool { l := dpd(); return l.DPD == DPDOff && !l.IKESAUp })
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if !slices.Contains(ra.deleted, Deletion{Connection: "peer", ByPeer: true}) {
		t.Errorf("deletions %+v lack the dead peer's IKE SA (by peer)", ra.deleted)
	}
}
