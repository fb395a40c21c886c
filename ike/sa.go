package ike

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/clock"
	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/proposal"
)

// connection is a configured peer with its tunnels.
type connection struct {
	cfg     model.Connection
	tunnels map[string]*tunnel
	// waiting tunnels want a child SA, in the order they asked: runQueue starts their quick
	// modes once an IKE SA with the peer is established and has room for them.
	waiting []*tunnel
}

// tunnel is a configured child SA; child is the installed one, qm a negotiation in progress.
type tunnel struct {
	conn       *connection
	cfg        model.Tunnel
	reqID      uint32
	child      *childSA
	qm         *quickMode
	waiters    []chan error
	manualDown bool
	removed    bool   // no longer configured: nothing may be installed for it
	installs   uint64 // child SAs installed so far; numbers them (childSA.gen)
	v2Pending  bool   // IKEv2: an IKE_AUTH or CREATE_CHILD_SA for it is in flight
	// trigger is the packet whose acquire started the tunnel, until IKEv2 offers it.
	trigger packet
	// lastOneSided is when a one-sided child SA of the tunnel was last re-keyed.
	lastOneSided time.Time
	// retry is the pending retry of a start: always tunnel after failures (retry.go).
	retry    clock.Timer
	retryAt  time.Time
	failures int
	lastErr  string
}

// childSA is an installed child SA and the IKE SA it was negotiated under.
type childSA struct {
	ChildSA
	tunnel      *tunnel
	ike         *ikeSA
	v2          *v2SA                // IKEv2: the IKE SA it was negotiated under (ike is nil)
	v2Collision *rekeyRace[*childSA] // IKEv2: both sides rekeying it at once (v2_collision.go)
	rekeying    bool
	gen         uint64      // tunnel.installs when it was installed
	nonceI      []byte      // the quick-mode initiator's nonce, to settle duplicates
	expiry      clock.Timer // hard lifetime
	softExpiry  clock.Timer // rekey at 85 to 90 % of the lifetime (rekeyTime)
	watch       oneSided    // traffic both ways? (onesided.go)
	confirmed   bool        // the peer's ESP arrived on it (dpd.go)
}

// phase1State is where an IKE SA is in main or aggressive mode.
type phase1State uint8

const (
	stateMM1Sent phase1State = iota + 1 // initiator, waiting for MM2
	stateMM3Sent
	stateMM5Sent
	stateMM2Sent // responder, waiting for MM3
	stateMM4Sent
	stateAM1Sent // aggressive initiator, waiting for AM2
	stateAM2Sent // aggressive responder, waiting for AM3
	stateEstablished
	stateDeleted
)

var stateNames = map[phase1State]string{
	stateMM1Sent: "MM1_SENT", stateMM3Sent: "MM3_SENT", stateMM5Sent: "MM5_SENT",
	stateMM2Sent: "MM2_SENT", stateMM4Sent: "MM4_SENT", stateAM1Sent: "AM1_SENT",
	stateAM2Sent: "AM2_SENT", stateEstablished: "ESTABLISHED", stateDeleted: "DELETED",
}

func (s phase1State) String() string { return stateNames[s] }

// ikeSA is one ISAKMP SA, half-open or established.
type ikeSA struct {
	exchange
	conn        *connection
	initiator   bool
	aggressive  bool
	state       phase1State
	deleting    bool // deleteIKESA is under way: no new quick modes, not a candidate SA
	icookie     [8]byte
	rcookie     [8]byte
	created     time.Time
	established time.Time
	lastRecv    time.Time // last message from the peer for this SA (status: is it still talking?)

	prop    proposal.IKE
	saiB    []byte // SA payload body as the initiator sent it (RFC 2409 SAi_b)
	dhKey   dh.PrivateKey
	gxi     []byte
	gxr     []byte
	nonceI  []byte
	nonceR  []byte
	idB     []byte // our ID payload body (IDii_b or IDir_b)
	peerIDB []byte // the peer's ID payload body

	keys    *phase1Keys
	ivChain []byte // IV for the next phase-1 message, then the last phase-1 CBC block

	peerNATT       natTVersion
	natLocal       bool // we are behind a NAT (or fake one)
	behindNAT      bool // NAT-D showed a NAT in front of us (not just nat_traversal: force)
	natRemote      bool // the peer is behind a NAT
	peerDPD        bool
	initialContact bool // INITIAL-CONTACT received
	kePeerLen      int  // aggressive responder: length of the peer's KE in AM1
	dhBusy         bool // a DH computation for the next message is out (dhwork.go)

	qms    map[uint32]*quickMode
	msgIDs msgIDs // phase-2 message IDs used so far, against replays
	dpd    dpdState
	lastQM time.Time   // when a quick mode last ended or heard from the peer
	qm2s   int         // QM2s accepted for our quick modes (handleQM2)
	expiry clock.Timer // end of the lifetime
	rekey  clock.Timer // initiator: start the replacement
	retire clock.Timer // replaced: delete after the overlap
	// keepalive sends NAT-keepalives while we are behind a NAT.
	keepalive clock.Timer
	// replaces is, for an IKE SA we negotiated to replace an expiring one, that SA.
	replaces *ikeSA
}

// natDetected reports whether ESP must be UDP-encapsulated.
func (sa *ikeSA) natDetected() bool { return sa.natLocal || sa.natRemote }

// logAttrs identifies the SA in log lines.
func (sa *ikeSA) logArgs(args ...any) []any {
	return append([]any{"conn", sa.conn.cfg.Name, "peer", sa.remote,
		"icookie", hexCookie(sa.icookie), "rcookie", hexCookie(sa.rcookie)}, args...)
}

func (e *Engine) newConnection(cfg model.Connection) *connection {
	c := &connection{cfg: cfg, tunnels: make(map[string]*tunnel)}
	for _, tc := range cfg.Tunnels {
		e.addTunnel(c, tc)
	}
	return c
}

func (e *Engine) sortedConns() []*connection {
	cs := make([]*connection, 0, len(e.conns))
	for _, c := range e.conns {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *connection) int { return cmp.Compare(a.cfg.Name, b.cfg.Name) })
	return cs
}

func (c *connection) sortedTunnels() []*tunnel {
	ts := make([]*tunnel, 0, len(c.tunnels))
	for _, t := range c.tunnels {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *tunnel) int { return cmp.Compare(a.cfg.Name, b.cfg.Name) })
	return ts
}

// localTS is one selector per local subnet, in the configuration's order.
func (t *tunnel) localTS() []TrafficSelector {
	return t.selectors(t.cfg.LocalSubnets, t.cfg.LocalPort)
}

// remoteTS is one selector per remote subnet.
func (t *tunnel) remoteTS() []TrafficSelector {
	return t.selectors(t.cfg.RemoteSubnets, t.cfg.RemotePort)
}

func (t *tunnel) selectors(subnets []netip.Prefix, port uint16) []TrafficSelector {
	out := make([]TrafficSelector, len(subnets))
	for i, p := range subnets {
		out[i] = TrafficSelector{Prefix: p, Proto: t.cfg.Protocol, Port: port}
	}
	return out
}

// proxyIDs are the selectors of an IKEv1 tunnel, which has one subnet per side (validated).
func (t *tunnel) proxyIDs() (local, remote TrafficSelector) {
	return t.localTS()[0], t.remoteTS()[0]
}

// notify completes every Up waiting for the tunnel.
func (t *tunnel) notify(err error) {
	for _, ch := range t.waiters {
		ch <- err
	}
	t.waiters = nil
}

// removeConnection tears down everything of c and forgets it.
func (e *Engine) removeConnection(c *connection) {
	for _, sa := range e.ikeSAs {
		if sa.conn == c {
			e.deleteIKESA(sa, true, errRemoved)
		}
	}
	e.deleteV2SAs(c, errRemoved)
	for _, t := range c.sortedTunnels() {
		e.removeTunnel(t)
	}
	delete(e.conns, c.cfg.Name)
}

// findChild returns the child SA with spi as inbound or outbound SPI.
func (e *Engine) findChild(spi uint32) *childSA {
	if ch, ok := e.children[spi]; ok {
		return ch
	}
	for _, ch := range e.children {
		if ch.SPIOut == spi {
			return ch
		}
	}
	return nil
}

// establishedSA returns an established IKE SA for c, the newest one.
func (e *Engine) establishedSA(c *connection) *ikeSA {
	var best *ikeSA
	for _, sa := range e.ikeSAs {
		if sa.conn == c && sa.state == stateEstablished && !sa.deleting && (best == nil || sa.established.After(best.established)) {
			best = sa
		}
	}
	return best
}

// negotiatingSA returns a half-open IKE SA for c.
func (e *Engine) negotiatingSA(c *connection) *ikeSA {
	for _, sa := range e.ikeSAs {
		if sa.conn == c && sa.state != stateEstablished && sa.state != stateDeleted && !sa.deleting {
			return sa
		}
	}
	return nil
}

// installChild hands a negotiated child SA to the kernel and makes it the tunnel's current
// one; a child SA it replaces (rekey) is deleted afterwards.
func (e *Engine) installChild(qm *quickMode, cs *ChildSA) error {
	sa, t := qm.sa, qm.tunnel
	if err := e.opts.Kernel.InstallChildSA(context.Background(), cs); err != nil {
		return err
	}
	t.installs++
	t.stopRetry(true)
	ch := &childSA{ChildSA: *cs, tunnel: t, ike: sa, gen: t.installs, nonceI: clone(qm.nonceI)}
	e.children[cs.SPIIn] = ch
	old := t.child
	e.observeQuick(sa, t, qm.initiator, nil, old != nil)
	t.child = ch
	t.manualDown = false
	if e.opts.KeyLog != nil {
		e.opts.KeyLog.ChildSA(cs)
	}
	// racoon's milestone lines, which operators grep for, with the structured fields.
	e.log.Info(fmt.Sprintf("IPsec-SA established: ESP/Tunnel %s->%s spi=%d(0x%x)", racoonAddr(sa.remote), racoonAddr(sa.local), cs.SPIIn, cs.SPIIn),
		sa.logArgs("tunnel", t.cfg.Name, "dir", "in", "child", cs)...)
	e.log.Info(fmt.Sprintf("IPsec-SA established: ESP/Tunnel %s->%s spi=%d(0x%x)", racoonAddr(sa.local), racoonAddr(sa.remote), cs.SPIOut, cs.SPIOut),
		sa.logArgs("tunnel", t.cfg.Name, "dir", "out", "child", cs)...)
	// A child SA we rekeyed is replaced now, and deleted a little later (retireChild). Any
	// other older one (the peer rekeyed, or both sides initiated at once) stays until the
	// peer deletes it or it expires: deleting it here could delete both sides' newest SAs
	// in a simultaneous exchange.
	if old != nil && old.rekeying {
		e.retireChild(old)
	}
	e.settleDuplicates(ch, qm.gen)
	e.armChildLifetime(ch)
	if cs.Initiator {
		e.watchUnconfirmed(ch)
	}
	return nil
}

// armChildLifetime arms a new child SA's expiry timers. The datapath reports expiry too;
// these timers cover datapaths without lifetimes. Only the side that initiated the child
// rekeys it early, so both sides do not; the jitter spreads the rekeys of tunnels
// negotiated together (they queue anyway).
func (e *Engine) armChildLifetime(ch *childSA) {
	if ch.Lifetime <= 0 {
		return
	}
	// The datapath reports expiry too; these timers cover datapaths without lifetimes.
	// Only the side that initiated the child rekeys it early, so both sides do not; the
	// jitter spreads the rekeys of tunnels negotiated together (they queue anyway).
	spi := ch.SPIIn
	ch.expiry = e.afterFunc(ch.Lifetime, func() { e.expire(spi, true) })
	if ch.Initiator {
		ch.softExpiry = e.afterFunc(e.rekeyTime(ch.Lifetime, true), func() { e.expire(spi, false) })
	}
}

// retireChild deletes a child SA replaced by our rekey after replacedChildDelay rather than
// right after QM3: strongSwan's worker threads may take a Delete sent behind the QM3
// before it, and a Delete for the SA its quick mode is rekeying aborts that quick mode
// (the QM3 then fails to decrypt and the new child is never installed: measured with
// 5.9.8). The delay also covers a lost QM3, which strongSwan asks for again after 4 s.
func (e *Engine) retireChild(old *childSA) {
	e.afterFunc(replacedChildDelay*e.opts.Retransmit.Initial, func() { e.deleteChild(old, true) })
}

// replacedChildDelay is how long, in first-retransmission intervals (5 s by default), a
// child SA we replaced stays installed after its successor.
const replacedChildDelay = 5

// deleteChild removes a child SA from the kernel and, if tell, sends an ESP Delete.
func (e *Engine) deleteChild(ch *childSA, tell bool) {
	if e.children[ch.SPIIn] != ch {
		return
	}
	e.observeChildDeleted(ch, tell)
	delete(e.children, ch.SPIIn)
	for _, t := range []clock.Timer{ch.expiry, ch.softExpiry} {
		if t != nil {
			t.Stop()
		}
	}
	if ch.tunnel.child == ch {
		ch.tunnel.child = nil
	}
	if err := e.opts.Kernel.DeleteChildSA(context.Background(), &ch.ChildSA); err != nil {
		e.log.Warn("deleting child SA failed", "conn", ch.Connection, "tunnel", ch.Tunnel, "err", err)
	}
	ch.zeroKeys()
	if tell && ch.ike != nil && ch.ike.state == stateEstablished {
		e.sendDeleteESP(ch.ike, ch.SPIIn)
	}
	if tell && ch.v2 != nil && ch.v2.state == v2Established {
		e.sendV2DeleteChild(ch.v2, ch.SPIIn)
	}
	e.log.Info("child SA deleted", "conn", ch.Connection, "tunnel", ch.Tunnel, "spi_in", hexSPI(ch.SPIIn), "spi_out", hexSPI(ch.SPIOut))
}

// deleteIKESA removes an IKE SA with its quick modes and child SAs. With tell and an
// established SA, the peer gets ESP and ISAKMP Deletes. err completes waiting Up calls.
func (e *Engine) deleteIKESA(sa *ikeSA, tell bool, err error) {
	if sa.state == stateDeleted {
		return
	}
	e.observeIKESADeleted(sa, tell)
	sa.deleting = true
	for _, ch := range e.children {
		if ch.ike == sa {
			e.deleteChild(ch, tell)
		}
	}
	for _, qm := range sa.qms {
		qm.fail(err)
	}
	if tell && sa.state == stateEstablished {
		e.sendDeleteISAKMP(sa)
	}
	if !sa.initiator && sa.state != stateEstablished {
		e.halfOpen--
	}
	sa.stop()
	sa.dpd.stop()
	for _, t := range []clock.Timer{sa.expiry, sa.rekey, sa.retire, sa.keepalive} {
		if t != nil {
			t.Stop()
		}
	}
	// An SA of a possibly spoofed MM1/AM1 comes and goes at debug level, like its creation.
	level := slog.LevelInfo
	if sa.peerUnverified() {
		level = slog.LevelDebug
	}
	sa.state = stateDeleted
	dropKey(&sa.dhKey)
	if sa.keys != nil {
		sa.keys.zero()
	}
	if e.ikeSAs[sa.icookie] == sa {
		delete(e.ikeSAs, sa.icookie)
	}
	// Queued tunnels fail with it, unless another IKE SA with the peer is up or under way.
	if c := sa.conn; e.establishedSA(c) == nil && e.negotiatingSA(c) == nil {
		for _, t := range c.waiting {
			t.notify(err)
		}
		c.waiting = nil
	} else {
		e.runQueue(c)
	}
	e.log.Log(context.Background(), level, "IKE SA deleted", sa.logArgs("reason", errString(err))...)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// connectionFor returns the connection configured for a packet's addresses.
func (e *Engine) connectionFor(local, remote netip.Addr) *connection {
	for _, c := range e.sortedConns() {
		if c.cfg.RemoteAddress == remote && (!c.cfg.LocalAddress.IsValid() || c.cfg.LocalAddress == local) {
			return c
		}
	}
	return nil
}
