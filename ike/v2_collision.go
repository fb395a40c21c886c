package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/espgw/espgw/ike/ikev2"
)

// Simultaneous rekeys (RFC 7296 2.8.1, 2.8.2): when both sides rekey the same child SA, or
// the same IKE SA, at once, two replacements come up. The one whose exchange carried the
// lowest of the four nonces is redundant, and the side that initiated that exchange deletes
// it; the other survives. Each side learns of the collision when the peer's CREATE_CHILD_SA
// names (N(REKEY_SA)), or arrives on, an SA it is rekeying itself.
//
// A child SA collision may be noticed before or after our own exchange completed. An IKE SA
// collision is only taken up while our exchange is in flight: once it completed, the old
// IKE SA is on its way out and the peer's late rekey gets TEMPORARY_FAILURE (2.25), so both
// sides keep our new SA. Until the race is settled, the child SAs stay on the old IKE SA;
// then they move to the survivor, and the winner deletes the old IKE SA.
//
// Other collisions on an IKE SA being rekeyed (2.25.2): a child SA creation or rekey of the
// peer gets TEMPORARY_FAILURE while our IKE SA rekey is in flight, and the peer's IKE SA
// rekey gets it while our CREATE_CHILD_SA for a child is in flight; either side tries again
// a little later. A child SA Delete is answered as usual.

// rekeyRace is what is known of two exchanges rekeying one SA (a *childSA or *v2SA) at once.
type rekeyRace[T any] struct {
	ours, theirs []byte // the lowest nonce of our exchange and of the peer's; nil = none (yet)
	mine, peers  T      // what each exchange created
}

// record notes that an exchange (the peer's when byPeer) with nonces ni and nr created
// made, and reports whether both exchanges are known now.
func (r *rekeyRace[T]) record(byPeer bool, ni, nr []byte, made T) bool {
	low := slices.Clone(bytesLess(ni, nr))
	if byPeer {
		r.theirs, r.peers = low, made
	} else {
		r.ours, r.mine = low, made
	}
	return r.ours != nil && r.theirs != nil
}

// oursRedundant reports whether our exchange carried the lowest of the four nonces: what it
// created is redundant, and ours to delete.
func (r *rekeyRace[T]) oursRedundant() bool { return bytes.Compare(r.ours, r.theirs) < 0 }

// rekeyedBy records that an exchange (the peer's when byPeer) with nonces ni and nr
// replaced the child SA old with its tunnel's current child SA, and settles a collision
// once both did.
func (e *Engine) rekeyedBy(old *childSA, t *tunnel, byPeer bool, ni, nr []byte) {
	if old.v2Collision == nil {
		old.v2Collision = &rekeyRace[*childSA]{}
	}
	c := old.v2Collision
	if !c.record(byPeer, ni, nr, t.child) {
		return
	}
	if c.oursRedundant() && e.children[c.mine.SPIIn] == c.mine {
		e.log.Info("simultaneous child SA rekey: deleting our redundant SA (RFC 7296 2.8.1)",
			c.mine.v2.logArgs("tunnel", t.cfg.Name, "spi_in", hexSPI(c.mine.SPIIn))...)
		e.deleteChild(c.mine, true)
		if e.children[c.peers.SPIIn] == c.peers {
			t.child = c.peers
		}
	}
	old.v2Collision = nil
}

// errRedundantV2 ends the IKE SA that lost a simultaneous IKE SA rekey.
var errRedundantV2 = errors.New("redundant: the peer rekeyed the same IKE SA at once and its new SA survives (RFC 7296 2.8.2)")

// ikeRekeyedBy records that an exchange (the peer's when byPeer) created next to replace
// the IKE SA old while our own rekey of old is in flight, and settles the race once both
// exchanges are done.
func (e *Engine) ikeRekeyedBy(old, next *v2SA, byPeer bool) {
	if old.race == nil {
		old.race = &rekeyRace[*v2SA]{}
	}
	e.adoptV2(old, next)
	if !old.race.record(byPeer, next.nonceI, next.nonceR, next) {
		return
	}
	r := old.race
	old.race = nil
	if r.oursRedundant() {
		e.log.Info("simultaneous IKE SA rekey: the peer's new IKE SA survives, deleting ours (RFC 7296 2.8.2)", r.mine.logArgs()...)
		e.moveChildren(old, r.peers)
		e.awaitPeersDelete(old, errRekeyedV2) // the winner deletes it
		e.retireV2(r.mine, errRedundantV2)
		return
	}
	e.log.Info("simultaneous IKE SA rekey: our new IKE SA survives (RFC 7296 2.8.2)", r.mine.logArgs()...)
	e.moveChildren(old, r.mine)
	e.retireV2(old, errRekeyedV2)
	// The peer deletes its redundant SA, unless it never saw our answer that created it and
	// so gave its exchange up when old went.
	e.awaitPeersDelete(r.peers, errRedundantV2)
}

// awaitPeersDelete leaves an IKE SA that a rekey made redundant to the peer to delete, and
// deletes it itself if the peer has not within the retransmission timeout.
func (e *Engine) awaitPeersDelete(sa *v2SA, why error) {
	sa.deleting = true
	e.afterFunc(e.opts.Retransmit.Timeout, func() { e.deleteV2SA(sa, true, why) })
}

// ikeRekeyFailed handles our rekey of old that failed: if the peer's rekey of old succeeded
// meanwhile, its new SA takes the child SAs (the peer deletes old).
func (e *Engine) ikeRekeyFailed(old *v2SA) {
	old.rekeying = false
	if r := old.race; r != nil {
		old.race = nil
		e.moveChildren(old, r.peers)
		e.awaitPeersDelete(old, errRekeyedV2)
	}
}

// ikeRekeyUnanswered ends our rekey of old that went unanswered through every
// retransmission while the peer's rekey of old, which we answered, completed: as when ours
// fails, the peer's new SA takes the child SAs and old goes, so that no race stays pending
// on an SA whose exchange is over. It reports whether that was the case; otherwise the
// silence means a dead peer.
func (e *Engine) ikeRekeyUnanswered(old *v2SA) bool {
	r := old.pending
	if r == nil || !r.rekeysIKE || old.race == nil || old.race.peers == nil {
		return false
	}
	e.log.Info("our IKE SA rekey went unanswered; the peer's simultaneous rekey survives (RFC 7296 2.8.2)", old.logArgs()...)
	old.pending = nil
	old.reqID++ // the ID is spent: the peer may have seen the request
	if r.onFail != nil {
		r.onFail(ErrTimeout)
	}
	e.ikeRekeyFailed(old)
	return true
}

// inheritChildren gives the child SAs of an IKE SA the peer deletes to the new SA of the
// peer's rekey, if we answered one while ours was in flight.
func (e *Engine) inheritChildren(old *v2SA) {
	if r := old.race; r != nil && r.peers != nil {
		e.moveChildren(old, r.peers)
	}
}

// childBusy reports whether our CREATE_CHILD_SA for a child SA is in flight on sa: the
// peer's IKE SA rekey must wait (RFC 7296 2.25.2).
func (sa *v2SA) childBusy() bool {
	return sa.pending != nil && sa.pending.exchange == ikev2.ExchangeCreateChildSA && !sa.pending.rekeysIKE
}

// temporaryFailure reports whether the peer answered with TEMPORARY_FAILURE.
func temporaryFailure(ps []ikev2.Payload) bool {
	n := firstError(ps)
	return n != nil && n.NotifyType == ikev2.NotifyTemporaryFailure
}

// bytesLess returns the smaller of two nonces.
func bytesLess(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		return a
	}
	return b
}

// rekeyedChild is the child SA a CREATE_CHILD_SA request's N(REKEY_SA) names (by the peer's
// inbound SPI, our outbound), or nil.
func rekeyedChild(sa *v2SA, ps []ikev2.Payload) *childSA {
	for _, n := range ikev2.Notifies(ps, ikev2.NotifyRekeySA) {
		if len(n.SPI) != 4 {
			continue
		}
		spi := binary.BigEndian.Uint32(n.SPI)
		for _, ch := range sa.e.children {
			if ch.v2 == sa && ch.SPIOut == spi {
				return ch
			}
		}
	}
	return nil
}
