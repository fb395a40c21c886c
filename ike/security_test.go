package ike

import (
	"crypto/rand"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// Tests of what an attacker on the path (replaying, reflecting, spoofing) or a misbehaving
// peer can make the engine do. Messages are handed to handlePacket synchronously so that
// "nothing happened" is a checked fact, not a timeout.

var addrEvil = netip.MustParseAddr("192.0.2.99")

// deliver processes msg at n as if it came from remote, on the caller's goroutine.
// deliver hands msg to n's engine and waits for the DH work it started (dhwork.go).
func deliver(n *node, msg []byte, local, remote netip.AddrPort) {
	n.e.mu.Lock()
	n.e.handlePacket(conn.Packet{Data: append([]byte(nil), msg...), Local: local, Remote: remote})
	n.e.mu.Unlock()
	n.e.work.Wait()
}

// sentOf returns the IKE messages of exchange x a Bind sent, in order.
func sentOf(b *bindtest.Bind, x isakmp.ExchangeType) [][]byte {
	var out [][]byte
	for _, p := range b.Sent() {
		if h, err := isakmp.ParseHeader(p.Data); err == nil && h.Exchange == x {
			out = append(out, p.Data)
		}
	}
	return out
}

// dropExchanges drops the IKE messages of the exchanges xs a Bind sends.
func dropExchanges(xs ...isakmp.ExchangeType) bindtest.Filter {
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		if !isIKE || err != nil {
			return true
		}
		for _, x := range xs {
			if h.Exchange == x {
				return false
			}
		}
		return true
	}
}

var (
	portA = netip.AddrPortFrom(addrA, 500)
	portB = netip.AddrPortFrom(addrB, 500)
)

func upPair(t *testing.T, pc pairConfig) (a, b *node) {
	t.Helper()
	a, b = startPair(t, pc)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatalf("Up: %v", err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	return a, b
}

func (n *node) established(t *testing.T) *ikeSA {
	t.Helper()
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	sa := n.e.establishedSA(n.e.conns["peer"])
	if sa == nil {
		t.Fatal("no established IKE SA")
	}
	return sa
}

// A QM1 replayed after its quick mode is complete and forgotten decrypts and verifies again
// (its IV and HASH(1) depend only on the message ID); it must not start a new responder
// quick mode (SPI allocation, DH, QM2 retransmissions).
func TestReplayedQM1Ignored(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", pskA: "k"})
	s.up(a, b)
	qm1 := sentOf(a.bind, isakmp.ExchangeQuickMode)[0]
	sa := b.established(t)
	s.run("responder forgets the quick mode", DefaultRetransmit.Linger+time.Minute, func() bool {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		return len(sa.qms) == 0
	})
	spis, qm2s := b.k.nextSPI, len(sentOf(b.bind, isakmp.ExchangeQuickMode))
	deliver(b, qm1, portB, portA)
	b.e.mu.Lock()
	open := len(sa.qms)
	b.e.mu.Unlock()
	if b.k.nextSPI != spis || open != 0 || len(sentOf(b.bind, isakmp.ExchangeQuickMode)) != qm2s {
		t.Errorf("replayed QM1: SPI counter %08x -> %08x, %d quick modes open, QM2s sent %d -> %d; want it ignored",
			spis, b.k.nextSPI, open, qm2s, len(sentOf(b.bind, isakmp.ExchangeQuickMode)))
	}
}

// An authenticated informational replayed later must not act again: here a captured
// NO-PROPOSAL-CHOSEN would fail a quick mode started after it.
func TestReplayedInformationalIgnored(t *testing.T) {
	a, b := upPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	a.bind.SetFilter(dropExchanges(isakmp.ExchangeInformational, isakmp.ExchangeQuickMode))
	saA := a.established(t)
	a.e.mu.Lock()
	a.e.sendESPNotify(saA, []byte{1, 2, 3, 4}, isakmp.NotifyNoProposalChosen, nil)
	a.e.mu.Unlock()
	infos := sentOf(a.bind, isakmp.ExchangeInformational)
	notify := infos[len(infos)-1]
	deliver(b, notify, portB, portA) // the original: nothing pending, nothing to fail

	saB := b.established(t)
	b.e.mu.Lock()
	tun := b.e.conns["peer"].tunnels["t0"]
	b.e.startQuickMode(saB, tun) // A's QM2 is dropped: it stays pending
	b.e.mu.Unlock()
	deliver(b, notify, portB, portA) // the replay
	b.e.mu.Lock()
	pending := tun.qm != nil
	b.e.mu.Unlock()
	if !pending {
		t.Errorf("a replayed NO-PROPOSAL-CHOSEN failed a quick mode started after the original")
	}
}

// A peer may keep only maxResponderQuickModes quick modes open under one IKE SA.
func TestResponderQuickModeLimit(t *testing.T) {
	a, b := upPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	a.bind.SetFilter(dropExchanges(isakmp.ExchangeQuickMode))
	b.bind.SetFilter(dropExchanges(isakmp.ExchangeQuickMode))
	saA, saB := a.established(t), b.established(t)
	before := len(sentOf(a.bind, isakmp.ExchangeQuickMode))
	a.e.mu.Lock()
	tun := a.e.conns["peer"].tunnels["t0"]
	for range maxResponderQuickModes + 10 {
		tun.qm = nil
		if err := a.e.sendQM1(saA, tun); err != nil {
			t.Fatal(err)
		}
	}
	a.e.mu.Unlock()
	for _, qm1 := range sentOf(a.bind, isakmp.ExchangeQuickMode)[before:] {
		deliver(b, qm1, portB, portA)
	}
	b.e.mu.Lock()
	n := saB.respondingQuickModes()
	b.e.mu.Unlock()
	if n != maxResponderQuickModes {
		t.Errorf("%d responder quick modes open after %d QM1s, want the limit %d", n, maxResponderQuickModes+10, maxResponderQuickModes)
	}
}

// A copy of the peer's MM1 from another address must not make us resend MM2 to the peer.
func TestDuplicateFromOtherAddressIgnored(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{Initial: time.Hour, MaxTries: 1, Timeout: time.Hour}, cb)
	a.stop()
	// Only the test delivers A's MM1: through the Bind, B's Run loop would answer it too,
	// at a moment of its choosing.
	ba.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	a.e.mu.Lock()
	a.e.startPhase1(a.e.conns["peer"])
	a.e.mu.Unlock()
	mm1 := sentOf(ba, isakmp.ExchangeIdentityProtection)[0]
	deliver(b, mm1, portB, portA)
	sent := len(bb.Sent())
	deliver(b, mm1, portB, portA) // the peer's retransmission: answered again
	if len(bb.Sent()) != sent+1 {
		t.Fatalf("retransmitted MM1 from the peer: %d messages sent, want %d", len(bb.Sent()), sent+1)
	}
	for range 10 {
		deliver(b, mm1, portB, netip.AddrPortFrom(addrEvil, 500))
	}
	if got := len(bb.Sent()); got != sent+1 {
		t.Errorf("MM1 copies from %v made the responder send %d more messages, want 0", addrEvil, got-sent-1)
	}
}

// A responder's MM2 with a zero responder cookie is dropped: keeping a zero cookie would
// let later messages with any responder cookie through.
func TestZeroResponderCookieDropped(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{Initial: time.Hour, MaxTries: 1, Timeout: time.Hour}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	bb.SetFilter(dropExchanges(isakmp.ExchangeIdentityProtection))
	a.e.mu.Lock()
	sa := a.e.startPhase1(a.e.conns["peer"])
	a.e.mu.Unlock()
	waitFor(t, "MM2", func() bool { return len(sentOf(bb, isakmp.ExchangeIdentityProtection)) == 1 })
	mm2 := sentOf(bb, isakmp.ExchangeIdentityProtection)[0]
	clear(mm2[8:16])
	deliver(a, mm2, portA, portB)
	a.e.mu.Lock()
	state := sa.state
	a.e.mu.Unlock()
	if state != stateMM1Sent {
		t.Errorf("after an MM2 with a zero responder cookie the initiator is in %s, want %s", state, stateMM1Sent)
	}
	_ = b
}

// Keys are overwritten once their SA is deleted.
func TestKeysZeroedOnDelete(t *testing.T) {
	a, _ := upPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	sa := a.established(t)
	a.e.mu.Lock()
	p1 := [][]byte{sa.keys.SKEYID, sa.keys.D, sa.keys.A, sa.keys.E, sa.keys.encKey}
	a.e.mu.Unlock()
	child := a.k.active()[0]
	if err := a.e.Down(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	for i, k := range append(p1, child.EncKeyIn, child.EncKeyOut, child.IntegKeyIn, child.IntegKeyOut) {
		for _, c := range k {
			if c != 0 {
				t.Errorf("key %d not zeroed after Down", i)
				break
			}
		}
	}
}

func TestInitiatorLifetime(t *testing.T) {
	rl := func(attrs ...isakmp.Attribute) isakmp.Payload {
		return &isakmp.Notification{NotifyType: isakmp.NotifyResponderLifetime, Data: isakmp.AppendAttributes(nil, attrs)}
	}
	secs := func(d time.Duration) []isakmp.Attribute {
		return []isakmp.Attribute{isakmp.BasicAttribute(isakmp.IPsecAttrLifeType, isakmp.LifeTypeSeconds),
			isakmp.LifeAttribute(isakmp.IPsecAttrLifeDuration, uint64(d/time.Second))}
	}
	kbytes := func(n uint64) []isakmp.Attribute {
		return []isakmp.Attribute{isakmp.BasicAttribute(isakmp.IPsecAttrLifeType, isakmp.LifeTypeKilobytes),
			isakmp.LifeAttribute(isakmp.IPsecAttrLifeDuration, n)}
	}
	tests := []struct {
		name   string
		ours   model.Tunnel
		echoed lifetimes
		ps     []isakmp.Payload
		want   lifetimes
	}{
		{"echo as offered", model.Tunnel{Lifetime: time.Hour}, lifetimes{seconds: time.Hour}, nil, lifetimes{seconds: time.Hour}},
		{"echo longer", model.Tunnel{Lifetime: time.Hour}, lifetimes{seconds: 100 * time.Hour}, nil, lifetimes{seconds: time.Hour}},
		{"echo without limit", model.Tunnel{Lifetime: time.Hour}, lifetimes{}, nil, lifetimes{seconds: time.Hour}},
		{"nothing offered", model.Tunnel{}, lifetimes{}, nil, lifetimes{seconds: defaultChildLifetime}},
		{"responder-lifetime shorter", model.Tunnel{Lifetime: time.Hour}, lifetimes{seconds: time.Hour},
			[]isakmp.Payload{rl(secs(10 * time.Minute)...)}, lifetimes{seconds: 10 * time.Minute}},
		{"responder-lifetime longer", model.Tunnel{Lifetime: time.Hour}, lifetimes{seconds: time.Hour},
			[]isakmp.Payload{rl(secs(1000 * time.Hour)...)}, lifetimes{seconds: time.Hour}},
		{"responder-lifetime adds kilobytes", model.Tunnel{Lifetime: time.Hour}, lifetimes{seconds: time.Hour},
			[]isakmp.Payload{rl(kbytes(5000)...)}, lifetimes{seconds: time.Hour, kilobytes: 5000}},
		{"responder-lifetime more kilobytes", model.Tunnel{Lifetime: time.Hour, LifeKilobytes: 100},
			lifetimes{seconds: time.Hour, kilobytes: 100}, []isakmp.Payload{rl(kbytes(5000)...)}, lifetimes{seconds: time.Hour, kilobytes: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := initiatorLifetime(&tt.ours, tt.echoed, tt.ps); got != tt.want {
				t.Errorf("initiatorLifetime = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMsgIDs(t *testing.T) {
	var m msgIDs
	for id := range uint32(maxMsgIDs + 10) {
		m.add(id + 1)
	}
	if m.has(1) || m.has(10) || !m.has(11) || !m.has(maxMsgIDs+10) || len(m.seen) != maxMsgIDs {
		t.Errorf("after %d IDs: has(1)=%v has(10)=%v has(11)=%v, %d remembered; want the oldest 10 forgotten",
			maxMsgIDs+10, m.has(1), m.has(10), m.has(11), len(m.seen))
	}
}

// INITIAL-CONTACT in a plaintext AM3 is not covered by HASH_I: it must not delete the
// SAs that exist with the peer.
func TestPlaintextAM3InitialContactIgnored(t *testing.T) {
	a, b := upPair(t, pairConfig{mode: model.ModeAggressive, ike: "aes128-sha256-modp2048", esp: "aes128-sha256", pskA: "k"})
	a.bind.SetFilter(func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool { // the second phase 1's AM3
		h, err := isakmp.ParseHeader(msg)
		return !isIKE || err != nil || h.Exchange != isakmp.ExchangeAggressive || h.Flags&isakmp.FlagEncryption == 0
	})
	a.e.mu.Lock()
	sa := a.e.startPhase1(a.e.conns["peer"])
	a.e.mu.Unlock()
	waitFor(t, "second IKE SA on the initiator", func() bool {
		a.e.mu.Lock()
		defer a.e.mu.Unlock()
		return sa.state == stateEstablished
	})
	a.e.mu.Lock()
	am3 := isakmp.Message{Header: sa.header(isakmp.ExchangeAggressive, 0), Payloads: []isakmp.Payload{
		&isakmp.Hash{Data: sa.hashI(sa.idB)}, sa.isakmpNotify(isakmp.NotifyInitialContact)}}
	a.e.mu.Unlock()
	deliver(b, am3.Marshal(), portB, portA)
	if n := len(b.e.Status().IKESAs); n != 2 {
		t.Fatalf("responder has %d IKE SAs after the plaintext AM3, want 2 (it completes the second)", n)
	}
	if n := len(b.k.active()); n != 1 {
		t.Errorf("responder has %d child SAs after a plaintext AM3 with INITIAL-CONTACT, want the existing 1", n)
	}
}

// INITIAL-CONTACT on one connection leaves the SAs of another connection to the same
// remote address (from another local address) alone.
func TestInitialContactScopedToConnection(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	addrA2 := netip.MustParseAddr("192.0.2.3")
	ca1, cb1 := connPair(t, pc)
	ca2, cb2 := connPair(t, pc)
	ca2.Name, ca2.LocalAddress = "peer2", addrA2
	cb2.Name, cb2.RemoteAddress = "peer2", addrA2
	for i := range ca2.Tunnels {
		ca2.Tunnels[i].LocalSubnets = []netip.Prefix{netip.MustParsePrefix("10.11.0.1/32")}
		cb2.Tunnels[i].RemoteSubnets = []netip.Prefix{netip.MustParsePrefix("10.11.0.1/32")}
	}
	ba, bb := bindtest.NewPair()
	a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca1, ca2)
	b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb1, cb2)
	for _, c := range []string{"peer", "peer2"} {
		if err := a.e.Up(upCtx(t), c, ""); err != nil {
			t.Fatalf("Up %s: %v", c, err)
		}
	}
	waitFor(t, "both connections up at B", func() bool { return len(b.k.active()) == 2 })
	a.e.mu.Lock()
	a.e.initialContact(a.e.establishedSA(a.e.conns["peer"]))
	other := a.e.establishedSA(a.e.conns["peer2"])
	a.e.mu.Unlock()
	if other == nil {
		t.Error("INITIAL-CONTACT on connection peer deleted the IKE SA of connection peer2")
	}
	if got := a.k.active(); len(got) != 2 {
		t.Errorf("%d child SAs after INITIAL-CONTACT on connection peer, want 2 (both connections')", len(got))
	}
}

// A 3DES child SA without a volume limit gets Sweet32Kilobytes at both ends, shown in
// Status; AES and a configured limit are left as they are.
func TestSweet32VolumeLimit(t *testing.T) {
	tests := []struct {
		esp  string
		kb   uint64 // configured
		want uint64
	}{
		{"3des-sha1", 0, Sweet32Kilobytes},
		{"3des-sha1", 1000, 1000},
		{"aes128-sha1", 0, 0},
	}
	for _, tt := range tests {
		pc := pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: tt.esp, pskA: "k"}
		ba, bb := bindtest.NewPair()
		ca, cb := connPair(t, pc)
		ca.Tunnels[0].LifeKilobytes, cb.Tunnels[0].LifeKilobytes = tt.kb, tt.kb
		a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
		b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)
		if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
		st := a.e.Status()
		if got := st.IKESAs[0].ChildSAs[0].LifeKilobytes; got != tt.want || a.k.active()[0].LifeKilobytes != tt.want || b.k.active()[0].LifeKilobytes != tt.want {
			t.Errorf("%s, %d KB configured: status %d KB, installed %d/%d KB; want %d", tt.esp, tt.kb, got,
				a.k.active()[0].LifeKilobytes, b.k.active()[0].LifeKilobytes, tt.want)
		}
	}
}

// readingDHExponent reports whether a random source's Read was called by a MODP group's
// GenerateKey, reading a private exponent (the same size as a nonce).
func readingDHExponent() bool {
	pc := make([]uintptr, 32)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "dh.(*modpGroup).GenerateKey") {
			return true
		}
		if !more {
			return false
		}
	}
}

// exponentReads counts the reads of a MODP exponent from an engine's random source: one
// per key generated.
type exponentReads struct{ n atomic.Int32 }

func (r *exponentReads) Read(p []byte) (int, error) {
	if readingDHExponent() {
		r.n.Add(1)
	}
	return rand.Read(p)
}

// A forged AM1 whose public value is out of range (here 0) is refused before the responder
// makes its own DH key: flooding it costs no exponentiation (review finding 1).
func TestAM1InvalidKEBeforeDH(t *testing.T) {
	pc := pairConfig{mode: model.ModeAggressive, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"}
	ca, cb := connPair(t, pc)
	ba, bb := bindtest.NewPair()
	bb.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
	go a.e.Up(upCtx(t), "peer", "")
	waitFor(t, "A's AM1", func() bool { return len(sentOf(ba, isakmp.ExchangeAggressive)) > 0 })
	m, err := isakmp.Decode(sentOf(ba, isakmp.ExchangeAggressive)[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Payloads {
		if ke, ok := p.(*isakmp.KeyExchange); ok {
			clear(ke.Data)
		}
	}
	forged := m.Marshal()

	var reads exponentReads
	b := New(Options{Logger: testLogger(t, "B"), Bind: bb, Kernel: newFakeKernel(0xb0000000), Rand: &reads})
	if err := b.Configure([]model.Connection{cb}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.handlePacket(conn.Packet{Data: forged, Local: portB, Remote: portA})
	open := len(b.ikeSAs)
	b.mu.Unlock()
	if got := reads.n.Load(); got != 0 || open != 0 {
		t.Errorf("forged AM1 with public value 0: %d DH keys made, %d IKE SAs open; want none", got, open)
	}
}

// Sixteen forged AM1s from the real peer's address (answered, so AM2_SENT, until they time
// out) do not lock the real peer out: its AM1 evicts one of them (review finding 2).
func TestForgedAM1sDoNotLockOut(t *testing.T) {
	pc := pairConfig{mode: model.ModeAggressive, ike: "aes128-sha256-ecp256", esp: "aes128gcm16", pskA: "k",
		retransmit: RetransmitPolicy{Initial: 100 * time.Millisecond, MaxTries: 4, Timeout: 3 * time.Second}}
	ca, cb := connPair(t, pc)
	ba, bb := bindtest.NewPair()
	var cut atomic.Bool
	cut.Store(true)
	ba.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return !cut.Load() })
	a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
	b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)
	up := make(chan error, 1)
	go func() { up <- a.e.Up(upCtx(t), "peer", "") }()
	waitFor(t, "A's AM1", func() bool { return len(sentOf(ba, isakmp.ExchangeAggressive)) > 0 })
	am1 := sentOf(ba, isakmp.ExchangeAggressive)[0]
	for i := range maxHalfOpenPerPeer {
		forged := append([]byte(nil), am1...)
		forged[0] ^= byte(i + 1) // another initiator cookie
		b.e.mu.Lock()
		b.e.dhLimit = dhLimit{} // as if the forged AM1s came slowly enough for the DH rate limit
		b.e.mu.Unlock()
		deliver(b, forged, portB, portA)
	}
	b.e.mu.Lock()
	open := len(b.e.ikeSAs)
	b.e.mu.Unlock()
	if open != maxHalfOpenPerPeer {
		t.Fatalf("%d half-open SAs after the forged AM1s, want %d", open, maxHalfOpenPerPeer)
	}
	cut.Store(false) // A's retransmitted AM1 gets through now
	if err := <-up; err != nil {
		t.Fatalf("the real peer was locked out: %v", err)
	}
}

// A flood of forged AM1s with valid public values from one peer's address makes the
// responder compute no more than the per-peer DH burst (review finding 1).
func TestResponderDHRateLimited(t *testing.T) {
	pc := pairConfig{mode: model.ModeAggressive, ike: "aes128-sha256-ecp256", esp: "aes128gcm16", pskA: "k"}
	ca, cb := connPair(t, pc)
	am1 := firstMessageOf(t, ca)
	_, bb := bindtest.NewPair()
	b := New(Options{Logger: testLogger(t, "B"), Bind: bb, Kernel: newFakeKernel(0xb0000000)})
	if err := b.Configure([]model.Connection{cb}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.mu.Lock(); b.closed = true; b.mu.Unlock() })
	const flood = 100
	for i := range flood {
		forged := append([]byte(nil), am1...)
		forged[0], forged[1] = byte(i), byte(i>>8)
		b.mu.Lock()
		b.handlePacket(conn.Packet{Data: forged, Local: portB, Remote: portA})
		b.mu.Unlock()
	}
	// Each answered AM1 (a DH key made) left a half-open SA: none expired meanwhile.
	b.mu.Lock()
	answered := len(b.ikeSAs)
	b.mu.Unlock()
	if answered > dhPeerBurst || answered == 0 {
		t.Errorf("%d of %d forged AM1s answered with DH, want between 1 and %d", answered, flood, dhPeerBurst)
	}
}
