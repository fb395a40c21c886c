package ike

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/espgw/espgw/ike/ikev2"
)

// Simultaneous child SA rekeys (RFC 7296 2.8.1): when both sides rekey the same child SA at
// once, two replacements come up. The one whose exchange carried the lowest of the four
// nonces is redundant, and the side that initiated that exchange deletes it; the other
// survives as the tunnel's child SA. Each side learns of the collision when the peer's
// CREATE_CHILD_SA with N(REKEY_SA) names a child SA it is rekeying itself, before or after
// its own exchange completed.

// v2Collision is what is known of the rekeys of one child SA.
type v2Collision struct {
	ours, theirs []byte   // the lowest nonce of our exchange and of the peer's; nil = none (yet)
	mine, peers  *childSA // the child SA each exchange created
}

// rekeyedBy records that an exchange (the peer's when byPeer) with nonces ni and nr
// replaced old with its tunnel's current child SA, and settles a collision once both did.
func (e *Engine) rekeyedBy(old *childSA, t *tunnel, byPeer bool, ni, nr []byte) {
	c := old.v2Collision
	if c == nil {
		c = &v2Collision{}
		old.v2Collision = c
	}
	low := slices.Clone(bytesLess(ni, nr))
	if byPeer {
		c.theirs, c.peers = low, t.child
	} else {
		c.ours, c.mine = low, t.child
	}
	if c.ours == nil || c.theirs == nil {
		return
	}
	if bytes.Compare(c.ours, c.theirs) < 0 && e.children[c.mine.SPIIn] == c.mine {
		e.log.Info("simultaneous child SA rekey: deleting our redundant SA (RFC 7296 2.8.1)",
			c.mine.v2.logArgs("tunnel", t.cfg.Name, "spi_in", hexSPI(c.mine.SPIIn))...)
		e.deleteChild(c.mine, true)
		if e.children[c.peers.SPIIn] == c.peers {
			t.child = c.peers
		}
	}
	old.v2Collision = nil
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
