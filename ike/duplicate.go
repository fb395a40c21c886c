package ike

import "bytes"

// Duplicate child SAs. When both peers negotiate the same tunnel at once (start: always on
// both sides, or acquires crossing), each starts a quick mode before it has seen the
// other's, and two SA pairs result. Both stay installed while the race settles; then the
// pair whose quick-mode initiator sent the lower nonce (compared as big-endian bytes) is
// kept and the other deleted, with a Delete notification. Each side knows both nonces, so
// both pick the same pair without a message; a side that did not notice the race follows
// the other's Delete. A rekey is not a race: the replacing quick mode began after the old
// pair was installed, on both sides.

// settleDuplicates compares ch, installed by a quick mode that began when its tunnel had
// seen `since` installs, with the tunnel's child SAs installed while that quick mode ran.
func (e *Engine) settleDuplicates(ch *childSA, since uint64) {
	t := ch.tunnel
	for _, o := range e.children {
		if o == ch || o.tunnel != t || o.gen <= since {
			continue
		}
		keep, drop := ch, o
		if bytes.Compare(o.nonceI, ch.nonceI) < 0 {
			keep, drop = o, ch
		}
		t.child = keep
		e.log.Info("duplicate child SA negotiated concurrently, deleting it", "conn", t.conn.cfg.Name, "tunnel", t.cfg.Name,
			"keep_spi_in", hexSPI(keep.SPIIn), "drop_spi_in", hexSPI(drop.SPIIn))
		// The peer may still be finishing the losing exchange; give it one retransmission
		// interval so that our Delete finds the SA installed there.
		e.afterFunc(e.opts.Retransmit.Initial, func() {
			if e.children[drop.SPIIn] != drop {
				return
			}
			if t.child == drop && e.children[keep.SPIIn] == keep {
				t.child = keep
			}
			e.deleteChild(drop, true)
		})
		return
	}
}
