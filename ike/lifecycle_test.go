package ike

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// dropNth drops the n-th (1-based) IKE message of exchange x a Bind sends and counts all.
func dropNth(x isakmp.ExchangeType, n int32, sent *atomic.Int32) bindtest.Filter {
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		if !isIKE || err != nil || h.Exchange != x {
			return true
		}
		return sent.Add(1) != n
	}
}

func TestRetransmitAndDuplicates(t *testing.T) {
	tests := []struct {
		name string
		x    isakmp.ExchangeType
		n    int32 // which of B's messages of that exchange is lost
	}{
		{"MM2 lost", isakmp.ExchangeIdentityProtection, 1},
		{"MM4 lost", isakmp.ExchangeIdentityProtection, 2},
		{"MM6 lost", isakmp.ExchangeIdentityProtection, 3},
		{"QM2 lost", isakmp.ExchangeQuickMode, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t)
			a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", pskA: "k"})
			var sent atomic.Int32
			b.bind.SetFilter(dropNth(tt.x, tt.n, &sent))
			start := s.clk.Now()
			s.up(a, b)
			// One message lost: one retransmission interval, the first (jittered).
			lo, hi := jitterBounds(DefaultRetransmit.Initial)
			if got := s.elapsed(start); got < lo || got > hi {
				t.Errorf("tunnel up after %v, want %v..%v (one retransmission)", got, lo, hi)
			}
			// The responder answered the retransmitted request with its stored reply
			// instead of processing it again: one child SA, one SPI allocated.
			normal := map[isakmp.ExchangeType]int32{isakmp.ExchangeIdentityProtection: 3, isakmp.ExchangeQuickMode: 1}[tt.x]
			if got := sent.Load(); got < normal+1 {
				t.Errorf("responder sent %d %s messages, want at least %d (one resent)", got, tt.x, normal+1)
			}
			if b.k.nextSPI != 0xb0000001 || len(b.k.installed) != 1 {
				t.Errorf("responder allocated up to SPI %08x and installed %d SAs, want one", b.k.nextSPI, len(b.k.installed))
			}
			checkMirrored(t, a.k.active()[0], b.k.active()[0])
		})
	}
}

func TestQM3LostResponderRetransmits(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	var sent atomic.Int32
	a.bind.SetFilter(dropNth(isakmp.ExchangeQuickMode, 2, &sent)) // A's second QM message is QM3
	// The responder installs its child SA once QM2 is retransmitted.
	s.up(a, b)
	if len(a.k.installed) != 1 {
		t.Errorf("initiator installed %d SAs, want 1", len(a.k.installed))
	}
}

func TestTimeoutDeletesHalfOpen(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	var sent atomic.Int32
	b.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return sent.Add(1) < 2 }) // only MM2 gets out
	a.e.Acquire(a.e.Tunnels()[0].ReqID)
	start := s.clk.Now()
	s.run("both half-open SAs deleted", time.Hour, func() bool {
		return len(a.e.Status().IKESAs) == 0 && len(b.e.Status().IKESAs) == 0
	})
	if got := s.elapsed(start); got > DefaultRetransmit.Timeout {
		t.Errorf("half-open SAs deleted after %v, want within the retransmission timeout %v", got, DefaultRetransmit.Timeout)
	}
	if st := a.e.Status(); len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Err, ErrTimeout.Error()) {
		t.Errorf("initiator errors %+v, want the timeout", st.Errors)
	}
	b.e.mu.Lock()
	ho := b.e.halfOpen
	b.e.mu.Unlock()
	if ho != 0 {
		t.Errorf("responder half-open count %d after timeout, want 0", ho)
	}
}

func TestDownSendsDelete(t *testing.T) {
	for _, tunnel := range []string{"t0", ""} {
		t.Run("tunnel="+tunnel, func(t *testing.T) {
			a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", tunnels: 2})
			if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "responder child SAs", func() bool { return len(b.k.active()) == 2 })
			if err := a.e.Down(upCtx(t), "peer", tunnel); err != nil {
				t.Fatal(err)
			}
			want := 1
			if tunnel == "" {
				want = 0
			}
			waitFor(t, "responder deletes child SAs", func() bool { return len(b.k.active()) == want })
			if len(a.k.active()) != want {
				t.Errorf("initiator keeps %d child SAs, want %d", len(a.k.active()), want)
			}
			if tunnel == "" {
				waitFor(t, "responder deletes IKE SA", func() bool { return len(b.e.Status().IKESAs) == 0 })
			}
		})
	}
}

func TestInitialContact(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	old := b.k.active()[0]
	// A crashes: its goodbye never arrives. A new A starts from scratch on the same wire.
	ba.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	a.stop()
	ba.SetFilter(nil)
	a2 := startNode(t, "A2", ba, 0xa1000000, RetransmitPolicy{}, ca)
	if err := a2.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old SAs replaced", func() bool {
		act := b.k.active()
		return len(act) == 1 && act[0].SPIIn != old.SPIIn && len(b.e.Status().IKESAs) == 1
	})
}

func TestResponderLifetime(t *testing.T) {
	tests := []struct {
		name       string
		a, b, want time.Duration
	}{
		{"responder shorter", 2 * time.Hour, 30 * time.Minute, 30 * time.Minute},
		{"initiator shorter", 20 * time.Minute, time.Hour, 20 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
				lifetimeA: tt.a, lifetimeB: tt.b})
			if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
			if got := a.k.active()[0].Lifetime; got != tt.want {
				t.Errorf("initiator lifetime %v, want %v", got, tt.want)
			}
			if got := b.k.active()[0].Lifetime; got != tt.want {
				t.Errorf("responder lifetime %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExpireRekeys(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", pskA: "k"})
	s.up(a, b)
	old := a.k.active()[0]
	a.e.Expire(old.SPIIn, false)
	s.run("rekeyed on both sides", time.Minute, func() bool {
		aa, bb := a.k.active(), b.k.active()
		return len(aa) == 1 && aa[0].SPIIn != old.SPIIn && len(bb) == 1 && bb[0].SPIIn == aa[0].SPIOut
	})
	checkMirrored(t, a.k.active()[0], b.k.active()[0])
	// Hard expiry of a manual tunnel deletes it everywhere without renegotiation.
	a.e.Expire(a.k.active()[0].SPIOut, true)
	s.run("deleted on both sides", time.Minute, func() bool { return len(a.k.active()) == 0 && len(b.k.active()) == 0 })
}

func TestConfigure(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.Tunnels[0].Start = model.StartAlways
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	waitFor(t, "start: always tunnel up", func() bool { return len(b.k.active()) == 1 && len(a.k.active()) == 1 })
	ti := a.e.Tunnels()
	if len(ti) != 1 || ti[0].ReqID == 0 || ti[0].LocalTS[0].Prefix != ca.Tunnels[0].LocalSubnets[0] || ti[0].Start != model.StartAlways {
		t.Errorf("Tunnels() = %+v", ti)
	}
	bad := ca
	bad.Name = "bad"
	bad.PSK = nil
	if err := a.e.Configure([]model.Connection{bad}); err == nil {
		t.Fatal("Configure accepted a connection without PSK")
	}
	if len(a.k.active()) != 1 {
		t.Fatal("failed Configure changed state")
	}
	if err := a.e.Configure(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removed connection torn down on both sides", func() bool { return len(a.k.active()) == 0 && len(b.k.active()) == 0 })
}

func TestDPD(t *testing.T) {
	const delay, timeout = 30 * time.Second, 150 * time.Second
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", dpdDelay: delay, dpdTimeout: timeout})
	s.up(a, b)
	// A live peer answers: after several DPD intervals the SAs are still up.
	probes := 0
	a.bind.SetFilter(func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		if h, err := isakmp.ParseHeader(msg); err == nil && h.Exchange == isakmp.ExchangeInformational {
			probes++
		}
		return true
	})
	start := s.clk.Now()
	s.run("five R-U-THERE", 10*delay, func() bool { return probes >= 5 })
	if got := s.elapsed(start); got > 5*delay {
		t.Errorf("five R-U-THERE took %v, want one every %v", got, delay)
	}
	if len(a.k.active()) != 1 {
		t.Fatal("SA lost although the peer answers DPD")
	}
	// B goes silent: A declares it dead and removes everything, a DPD round after the
	// timeout at the latest.
	b.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	silent := s.clk.Now()
	s.run("dead peer cleared", 2*timeout, func() bool { return len(a.k.active()) == 0 && len(a.e.Status().IKESAs) == 0 })
	if got := s.elapsed(silent); got <= timeout-delay || got > timeout+delay {
		t.Errorf("peer declared dead %v after it went silent, want within %v of the timeout %v", got, delay, timeout)
	}
}

func TestLifetimeRekey(t *testing.T) {
	// A child SA is rekeyed by its initiator at 85 to 90 % of its lifetime, before it expires.
	const life = time.Hour
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
		lifetimeA: life, lifetimeB: life})
	s.up(a, b)
	first := a.k.active()[0].SPIIn
	start := s.clk.Now()
	s.run("rekeyed child SA", life, func() bool {
		aa, bb := a.k.active(), b.k.active()
		return len(aa) == 1 && aa[0].SPIIn != first && len(bb) == 1 && bb[0].SPIIn == aa[0].SPIOut
	})
	if got := s.elapsed(start); got < life*85/100 || got > life*9/10+time.Minute {
		t.Errorf("child SA replaced after %v of its %v lifetime, want at 85 to 90 %%", got, life)
	}
}

func TestBothSidesStartAlways(t *testing.T) {
	// Both peers bring the tunnel up at once: whatever SAs result, they settle on one
	// pair per tunnel, the same on both sides.
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.Tunnels[0].Start, cb.Tunnels[0].Start = model.StartAlways, model.StartAlways
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	mirrored := func() bool {
		aa, bb := a.k.active(), b.k.active()
		if len(aa) != 1 || len(bb) != 1 {
			return false
		}
		for _, x := range aa {
			found := false
			for _, y := range bb {
				found = found || x.SPIIn == y.SPIOut && x.SPIOut == y.SPIIn
			}
			if !found {
				return false
			}
		}
		return true
	}
	settled := func(n *node) bool {
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		for _, sa := range n.e.ikeSAs {
			if sa.state != stateEstablished || !allDone(sa) {
				return false
			}
		}
		return true
	}
	waitFor(t, "settled, mirrored child SAs", func() bool { return settled(a) && settled(b) && mirrored() })
}

func allDone(sa *ikeSA) bool {
	for _, qm := range sa.qms {
		if !qm.done {
			return false
		}
	}
	return true
}

// A flood of MM1s spoofed from one configured peer's address may hold only that peer's
// share of the half-open SAs: another peer still gets its MM1 answered, and the flooded
// peer's newest MM1 replaces its oldest half-open SA.
func TestHalfOpenLimit(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	addrC := netip.MustParseAddr("192.0.2.3")
	cc := cb
	cc.Name, cc.RemoteAddress, cc.Tunnels = "other", addrC, nil
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb, cc)
	a.stop() // A only lends its MM1 as a template
	a.e.mu.Lock()
	a.e.startPhase1(a.e.conns["peer"])
	a.e.mu.Unlock()
	sent := ba.Sent()
	mm1 := sent[len(sent)-1].Data
	inject := func(i int, from netip.Addr) [8]byte {
		msg := append([]byte(nil), mm1...)
		msg[0], msg[1] = byte(i>>8), byte(i)
		bb.Inject(msg, netip.AddrPortFrom(addrB, 500), netip.AddrPortFrom(from, 500))
		return [8]byte(msg[:8])
	}
	halfOpen := func() (n int, cookies map[[8]byte]netip.Addr) {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		cookies = make(map[[8]byte]netip.Addr)
		for c, sa := range b.e.ikeSAs {
			cookies[c] = sa.remote.Addr()
		}
		return b.e.halfOpen, cookies
	}
	var last [8]byte
	for i := range maxHalfOpen + 100 {
		last = inject(i, addrA)
	}
	other := inject(0xffff, addrC)
	waitFor(t, "flood processed", func() bool {
		_, cookies := halfOpen()
		return cookies[other] == addrC
	})
	n, cookies := halfOpen()
	if n != maxHalfOpenPerPeer+1 {
		t.Errorf("%d half-open IKE SAs after a flood of %d MM1 from one peer and one from another, want %d",
			n, maxHalfOpen+100, maxHalfOpenPerPeer+1)
	}
	if _, ok := cookies[last]; !ok {
		t.Errorf("the flooded peer's newest MM1 got no IKE SA, want it to replace the oldest")
	}
}

func TestAcquire(t *testing.T) {
	a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", tunnels: 2})
	ti := a.e.Tunnels()
	if len(ti) != 2 || ti[0].ReqID == ti[1].ReqID {
		t.Fatalf("Tunnels() = %+v, want two with distinct reqids", ti)
	}
	a.e.Acquire(ti[1].ReqID)
	waitFor(t, "acquired tunnel up on both sides", func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })
	if got := a.k.active()[0]; got.Tunnel != ti[1].Tunnel || got.ReqID != ti[1].ReqID {
		t.Errorf("acquire brought up %s (reqid %d), want %s (reqid %d)", got.Tunnel, got.ReqID, ti[1].Tunnel, ti[1].ReqID)
	}
}

// A peer that failed to install a pair deletes it by the SPI it was given (our inbound SPI)
// rather than its own inbound one; the pair must go all the same.
func TestDeleteNamingOurInboundSPI(t *testing.T) {
	a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", tunnels: 1})
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	b.e.mu.Lock()
	for _, ch := range b.e.children {
		b.e.sendDeleteESP(ch.ike, ch.SPIOut)
	}
	b.e.mu.Unlock()
	waitFor(t, "initiator deletes the pair", func() bool { return len(a.k.active()) == 0 })
}

// A start: always tunnel whose partner is down when espgw starts comes up once the partner
// does, after phase 1 gave up.
func TestAlwaysRetriesAfterPhase1Failed(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.Tunnels[0].Start = model.StartAlways
	var down atomic.Bool
	down.Store(true)
	bb.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return !down.Load() })
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
	s.run("phase 1 given up", time.Minute, func() bool { return len(a.e.Status().Errors) > 0 })
	down.Store(false)
	start := s.clk.Now()
	s.run("tunnel up at both ends", time.Hour, func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })
	lo, hi := jitterBounds(retryBase * DefaultRetransmit.Initial)
	if got := s.elapsed(start); got < lo || got > hi {
		t.Errorf("tunnel up %v after phase 1 gave up, want the first retry pause, %v..%v", got, lo, hi)
	}
}

// A start: always tunnel whose quick mode timed out (every QM2 lost) tries again.
func TestAlwaysRetriesAfterQuickModeTimeout(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
		retransmit: RetransmitPolicy{Initial: 20 * time.Millisecond, MaxTries: 2, Timeout: 100 * time.Millisecond}}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.Tunnels[0].Start = model.StartAlways
	var lossy atomic.Bool
	lossy.Store(true)
	bb.SetFilter(dropWhile(isakmp.ExchangeQuickMode, &lossy))
	b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)
	a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
	waitFor(t, "quick mode given up", func() bool { return len(a.e.Status().Errors) > 0 })
	lossy.Store(false)
	waitFor(t, "tunnel up at both ends", func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })
}

// dropWhile drops the messages of exchange x a Bind sends while on is set.
func dropWhile(x isakmp.ExchangeType, on *atomic.Bool) bindtest.Filter {
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		return !isIKE || err != nil || h.Exchange != x || !on.Load()
	}
}

// No R-U-THERE goes out while a quick mode is in flight: strongSwan would spend the IV slots
// of its 3 the exchange still needs on the probe and its ACK.
func TestDPDQuietDuringQuickMode(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
		dpdDelay: time.Second, dpdTimeout: 150 * time.Second,
		retransmit: RetransmitPolicy{Initial: 5 * time.Second, MaxTries: 5, Timeout: time.Minute}}
	s := newSim(t)
	a, b := s.pair(pc)
	var lossy atomic.Bool
	lossy.Store(true)
	b.bind.SetFilter(dropWhile(isakmp.ExchangeQuickMode, &lossy)) // A's quick mode stays open
	a.e.Acquire(a.e.Tunnels()[0].ReqID)
	s.run("A's QM1", time.Minute, func() bool { return len(sentOf(a.bind, isakmp.ExchangeQuickMode)) > 0 })
	probes := len(sentOf(a.bind, isakmp.ExchangeInformational))
	s.advance(20 * pc.dpdDelay) // 20 DPD intervals, within the quick mode's timeout
	if got := len(sentOf(a.bind, isakmp.ExchangeInformational)) - probes; got != 0 {
		t.Errorf("%d informationals (R-U-THERE) sent while the quick mode was open, want 0", got)
	}
	lossy.Store(false)
	s.run("child SA at both ends", pc.retransmit.Timeout, func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })
}
