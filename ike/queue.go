package ike

import (
	"cmp"
	"slices"

	"github.com/espgw/espgw/model"
)

// Quick-mode pacing. Every phase-2 exchange (quick mode, informational) has its own CBC IV
// chain, derived from the message ID and then carried from message to message (RFC 2409
// Appendix B), so each side must keep the IV of every exchange in flight. strongSwan keeps
// those of only charon.max_ikev1_exchanges (3) per ISAKMP SA, dropping the least recently
// used: with more quick modes in flight it derives a fresh IV for a QM3 whose chain it
// forgot, fails to decrypt it ("invalid HASH_V1 payload length, decryption failed?") and
// never installs the child SA, while the initiator, having sent QM3, has. Its worker
// threads also take messages of one SA in any order, so a QM3 may be processed after the
// QM1 we sent behind it. So a connection runs at most ike.quick_modes quick modes (ours and
// the peer's) at once per IKE SA, by default one; the other tunnels wait in c.waiting, in
// the order they asked, rekeys included.

// quickModeLimit is how many quick modes c may have in flight under one IKE SA.
func (c *connection) quickModeLimit() int {
	return cmp.Or(c.cfg.IKE.QuickModes, model.DefaultQuickModes)
}

// quickModesInFlight counts the quick modes under sa, both sides', that are not complete.
func (sa *ikeSA) quickModesInFlight() int {
	n := 0
	for _, qm := range sa.qms {
		if !qm.done {
			n++
		}
	}
	return n
}

// quickModeEnded lets the next queued tunnels start after a quick mode completed or failed,
// unless the IKE SA is being deleted (deleteIKESA settles the queue itself).
func (sa *ikeSA) quickModeEnded() {
	sa.lastQM = sa.e.now()
	if !sa.deleting {
		sa.e.runQueue(sa.conn)
	}
}

// runQueue starts the quick modes of c's waiting tunnels, in order, while the newest IKE SA
// with the peer has fewer than quickModeLimit in flight; without one it starts phase 1.
func (e *Engine) runQueue(c *connection) {
	if e.closed || len(c.waiting) == 0 {
		return
	}
	if c.cfg.IKE.Version == 2 {
		e.runQueueV2(c)
		return
	}
	sa := e.establishedSA(c)
	if sa == nil {
		if e.negotiatingSA(c) == nil {
			e.startPhase1(c)
		}
		return
	}
	for len(c.waiting) > 0 && sa.quickModesInFlight() < c.quickModeLimit() && sa.state == stateEstablished && !sa.deleting {
		if e.qmPace.full() {
			e.qmPace.wait(c)
			return
		}
		t := c.waiting[0]
		c.waiting = slices.Delete(c.waiting, 0, 1)
		switch {
		case t.removed, t.qm != nil:
			// removeTunnel or the running quick mode completes its waiters.
		case t.child != nil && !t.child.rekeying:
			t.notify(nil) // up already (the peer negotiated it meanwhile)
		default:
			e.startQuickMode(sa, t)
		}
	}
}

// unqueue takes t out of its connection's queue.
func (c *connection) unqueue(t *tunnel) {
	c.waiting = slices.DeleteFunc(c.waiting, func(w *tunnel) bool { return w == t })
}

// Engine-wide pacing of our quick modes. A gateway with many peers sends, whenever a batch
// of QM2s is read at once (after a pause for CPU), a QM3 and the next QM1 for each; 200
// IKE SAs made a burst of ~400 datagrams. A peer that terminates many of them on one socket
// (strongSwan: one UDP socket per port, 208 KiB of receive buffer by default) drops what
// does not fit, and a dropped QM3 is never asked for again once the next QM1 arrived
// (bench/setup, 1,000 tunnels / 200 peers: 60 QM3s lost, RcvbufErrors 60 at charon). So at
// most maxOurQuickModes of our quick modes await the peer's QM2 in the whole engine (from
// their start, PFS key included, until their QM2 is accepted); a burst is at most about
// twice that many messages. Our own work after QM2 (the PFS secret, the install, QM3) holds
// no place: the bound on bursts is the same, and 1,000 quick modes took a quarter to half
// less time for it (bench/README.md). Connections that found no room wait in order.
const maxOurQuickModes = 48

// quickModePace counts our quick modes in flight and the connections waiting for room.
type quickModePace struct {
	inFlight int
	waiting  []*connection
}

func (p *quickModePace) full() bool { return p.inFlight >= maxOurQuickModes }

// wait queues c for the next free room, once.
func (p *quickModePace) wait(c *connection) {
	if !slices.Contains(p.waiting, c) {
		p.waiting = append(p.waiting, c)
	}
}

// take counts qm, one of ours just started, as in flight.
func (p *quickModePace) take(qm *quickMode) {
	qm.paced = true
	p.inFlight++
}

// releaseQuickModeRoom ends qm's share (once) and lets waiting connections start theirs;
// the connection of an IKE SA being deleted is left to deleteIKESA, which settles its queue.
func (e *Engine) releaseQuickModeRoom(qm *quickMode) {
	if !qm.paced {
		return
	}
	qm.paced = false
	p := &e.qmPace
	p.inFlight--
	for !p.full() && len(p.waiting) > 0 {
		c := p.waiting[0]
		p.waiting = slices.Delete(p.waiting, 0, 1)
		if c != qm.sa.conn || !qm.sa.deleting {
			e.runQueue(c)
		}
	}
}
