package ike

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/espgw/espgw/ike/clock"
	"github.com/espgw/espgw/ike/isakmp"
)

// dpdState runs RFC 3706 dead peer detection for one IKE SA: every DPDDelay an R-U-THERE
// goes out; a peer that acknowledges none for DPDTimeout is dead.
type dpdState struct {
	timer    clock.Timer
	seq      uint32
	lastAck  time.Time
	lastSent time.Time
}

func (d *dpdState) stop() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// ack records an R-U-THERE-ACK; only the sequence number of our latest probe counts.
func (d *dpdState) ack(data []byte, now time.Time) {
	if len(data) == 4 && binary.BigEndian.Uint32(data) == d.seq {
		d.lastAck = now
	}
}

// quickModeQuiet is how long after a quick mode, in first-retransmission intervals (45 s
// by default), DPD sends no probe unless the new child SAs have carried the peer's ESP
// (childrenConfirmed): strongSwan resends QM2 4, 11, 24 and 48 s after the first when our
// QM3 is lost, and needs that exchange's IV until a QM3 arrives. Each retransmitted QM2
// we see starts the quiet again.
const quickModeQuiet = 45

// childrenConfirmed reports whether every child SA of sa negotiated within the quiet has
// received ESP, which shows the peer installed it (so took our QM3). Without a
// TrafficCounter nothing is confirmed and the quiet runs its time.
func (e *Engine) childrenConfirmed(sa *ikeSA) bool {
	tc, ok := e.opts.Kernel.(TrafficCounter)
	if !ok {
		return false
	}
	for _, ch := range e.children {
		if ch.ike != sa || ch.confirmed {
			continue
		}
		in, _, err := tc.ChildSAPackets(context.Background(), &ch.ChildSA)
		if err != nil || in == 0 {
			return false
		}
		ch.confirmed = true
	}
	return true
}

// peerAlive records an authenticated message from the peer as an answer to DPD.
func (sa *ikeSA) peerAlive() { sa.dpd.lastAck = sa.e.now() }

// startDPD arms DPD when configured and the peer announced support.
func (e *Engine) startDPD(sa *ikeSA) {
	cfg := sa.conn.cfg.IKE
	if cfg.DPDDelay <= 0 || !sa.peerDPD {
		return
	}
	timeout := cfg.DPDTimeout
	if timeout <= 0 {
		timeout = 5 * cfg.DPDDelay
	}
	var seq [4]byte
	if _, err := e.opts.Rand.Read(seq[:]); err == nil {
		sa.dpd.seq = binary.BigEndian.Uint32(seq[:]) >> 1 // leave room to count up
	}
	sa.dpd.lastAck = e.now()
	var tick func()
	tick = func() {
		if sa.state != stateEstablished {
			return
		}
		// No probe while a quick mode runs or may still be completing at the peer: each
		// probe and its ACK take an IV slot at strongSwan, which keeps 3 per ISAKMP SA,
		// and a QM3 whose slot went is undecryptable (quickModeQuiet). The quick mode
		// stands for the peer's answer meanwhile; its own retransmissions detect a peer
		// that died, and DPD's timeout starts over after the quiet.
		if sa.quickModesInFlight() > 0 || e.now().Sub(sa.lastQM) < quickModeQuiet*e.opts.Retransmit.Initial && !e.childrenConfirmed(sa) {
			sa.dpd.lastAck = e.now()
			sa.dpd.timer = e.afterFunc(cfg.DPDDelay, tick)
			return
		}
		// Dead only while our latest probe is unanswered too: this tick may fire later after
		// that probe than its ACK took, and with dpd_timeout equal to dpd_delay the ACK's
		// age alone would then exceed the timeout.
		if e.now().Sub(sa.dpd.lastAck) > timeout && sa.dpd.lastAck.Before(sa.dpd.lastSent) {
			e.log.Warn("peer is dead (no R-U-THERE-ACK)", sa.logArgs("timeout", timeout)...)
			c := sa.conn
			e.deleteIKESA(sa, false, errDPD)
			e.restartAlways(c)
			return
		}
		// The peer is alive if it acknowledged the previous probe: then a child SA that
		// only sends is one the peer lost.
		e.checkOneSided(sa, !sa.dpd.lastSent.IsZero() && !sa.dpd.lastAck.Before(sa.dpd.lastSent))
		sa.dpd.seq++
		sa.dpd.lastSent = e.now()
		e.sendInformational(sa, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
			SPI: sa.cookies(), NotifyType: isakmp.NotifyRUThere, Data: binary.BigEndian.AppendUint32(nil, sa.dpd.seq)})
		sa.dpd.timer = e.afterFunc(cfg.DPDDelay, tick)
	}
	sa.dpd.timer = e.afterFunc(cfg.DPDDelay, tick)
}
