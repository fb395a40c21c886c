package ike

import (
	"context"
	"fmt"
	"time"
)

// One-sided tunnels. A child SA the peer lost (its datapath restarted, a QM3 it could not
// decrypt, a Delete we never got) still carries our traffic out while nothing comes back,
// and nothing in IKE notices: the ISAKMP SA is fine and DPD is answered. strongSwan and
// racoon leave such a tunnel black-holed until it expires. With DPD on and a Kernel that
// counts packets (TrafficCounter), each DPD round compares the child SAs' counters: packets
// out and none in for oneSidedRounds rounds in a row, while the peer acknowledged every
// probe, marks the child SA one-sided (Status, log) and re-keys the tunnel; the new pair
// replaces it at both ends. A child SA we initiated is also watched without DPD until the
// peer's ESP arrives on it (watchUnconfirmed): that catches a QM3 the peer never got.

// TrafficCounter is implemented by a Kernel that can count what an installed child SA
// carried; the engine then detects one-sided tunnels.
type TrafficCounter interface {
	// ChildSAPackets returns the packets sa received (inbound SPI) and sent (outbound SPI).
	ChildSAPackets(ctx context.Context, sa *ChildSA) (in, out uint64, err error)
}

// oneSidedRounds is how many DPD intervals in a row a child SA must send without receiving
// before it is re-keyed.
const oneSidedRounds = 2

// oneSidedBackoff is the least time between two one-sided re-keys of a tunnel: traffic
// that is one-way by nature (a syslog feed without replies) re-keys at this pace, not
// every few DPD rounds.
const oneSidedBackoff = 10 * time.Minute

// oneSided is a child SA's traffic watch.
type oneSided struct {
	sampled bool
	in, out uint64    // packets at the last sample
	rounds  int       // consecutive rounds with packets out and none in
	since   time.Time // first such round of the current run; zero when traffic is two-way
}

// detected is since once the child SA has been one-way for oneSidedRounds rounds, else zero.
func (w *oneSided) detected() time.Time {
	if w.rounds < oneSidedRounds {
		return time.Time{}
	}
	return w.since
}

// checkOneSided samples the counters of sa's child SAs after a DPD round; answered tells
// whether the peer acknowledged the round's probe.
func (e *Engine) checkOneSided(sa *ikeSA, answered bool) {
	tc, ok := e.opts.Kernel.(TrafficCounter)
	if !ok {
		return
	}
	for _, ch := range e.children {
		if ch.ike == sa {
			e.sampleOneSided(tc, ch, answered)
		}
	}
}

// sampleOneSided takes one sample of ch's counters and re-keys its tunnel after
// oneSidedRounds one-way samples in a row, all while the peer answered. A child SA that
// received anything is confirmed: the peer installed it.
func (e *Engine) sampleOneSided(tc TrafficCounter, ch *childSA, answered bool) {
	in, out, err := tc.ChildSAPackets(context.Background(), &ch.ChildSA)
	if err != nil {
		return
	}
	ch.confirmed = ch.confirmed || in > 0
	w := &ch.watch
	oneWay := w.sampled && out > w.out && in == w.in
	w.sampled, w.in, w.out = true, in, out
	if !oneWay || !answered {
		w.rounds, w.since = 0, time.Time{}
		return
	}
	now := e.now()
	if w.rounds++; w.rounds == 1 {
		w.since = now
	}
	t, sa := ch.tunnel, ch.ike
	if w.rounds < oneSidedRounds || ch.rekeying || t.qm != nil || t.child != ch || sa == nil || sa.state != stateEstablished ||
		!t.lastOneSided.IsZero() && now.Sub(t.lastOneSided) < oneSidedBackoff {
		return
	}
	t.lastOneSided = now
	err = fmt.Errorf("tunnel %s: one-sided: packets out, none in since %s while the peer answers: re-keying",
		t.cfg.Name, w.since.Format(time.RFC3339))
	e.log.Warn("one-sided tunnel: re-keying", sa.logArgs("tunnel", t.cfg.Name, "spi_in", hexSPI(ch.SPIIn),
		"spi_out", hexSPI(ch.SPIOut), "since", w.since)...)
	e.addError(sa.conn.cfg.Name, err)
	ch.rekeying = true
	e.startTunnel(t, nil)
}

// Unconfirmed child SAs. A QM3 the peer never got (our answers to all its retransmitted
// QM2s lost too) leaves a child SA only we installed; the peer gave up on the quick mode.
// DPD's rounds find it only after the quick-mode quiet, and without DPD nothing would. So
// a child SA we initiated is also sampled on its own, every unconfirmedInterval, until the
// peer's ESP arrives on it: packets out and none in for oneSidedRounds samples re-key the
// tunnel, as in a DPD round in which the peer answered (the new quick mode asks it). While
// nothing is sent the interval doubles, up to unconfirmedIdleMax times: an idle tunnel
// costs few counter reads.
const (
	unconfirmedInterval = 5 // first-retransmission intervals (5 s by default)
	unconfirmedIdleMax  = 16
)

// watchUnconfirmed samples ch until it is confirmed or gone, or its tunnel has a newer one.
func (e *Engine) watchUnconfirmed(ch *childSA) {
	tc, ok := e.opts.Kernel.(TrafficCounter)
	if !ok {
		return
	}
	base := unconfirmedInterval * e.opts.Retransmit.Initial
	every := base
	var tick func()
	tick = func() {
		if e.children[ch.SPIIn] != ch || ch.tunnel.child != ch || ch.confirmed {
			return
		}
		sent := ch.watch.out
		e.sampleOneSided(tc, ch, true)
		if ch.watch.out > sent {
			every = base
		} else {
			every = min(2*every, unconfirmedIdleMax*base)
		}
		e.afterFunc(every, tick)
	}
	e.afterFunc(every, tick)
}

// oneSidedSince is when t's newest child SA was found one-sided; zero if it is not.
func (t *tunnel) oneSidedSince() time.Time {
	if t.child == nil {
		return time.Time{}
	}
	return t.child.watch.detected()
}
