package ike

import (
	"encoding/binary"
	"io"
	"time"
)

// IKE SA lifetime and reauthentication. RFC 2409 has no phase-1 rekey: a new main or
// aggressive mode replaces the ISAKMP SA before it expires.
//
// The initiator of an IKE SA starts the replacement at 85 to 90 % of the lifetime (jittered,
// so that SAs configured together do not all renegotiate at once), without INITIAL-CONTACT
// since it still has an SA with the peer. Once an IKE SA is established it owns every child
// SA of its connection: child SAs outlive the ISAKMP SA they were negotiated under (the
// peer's Delete for them is honoured under any of the connection's IKE SAs), and new quick
// modes use the newest SA. The replaced SA is deleted, with a Delete notification, after
// the retransmission timeout, so quick modes still running under it can finish. The
// responder does not start a replacement; its SA ends when the peer deletes it or at the
// end of its lifetime. strongSwan, as responder, likewise adopts the child SAs onto the
// new SA and deletes the old one shortly after.

// armIKELifetime schedules the end of an established IKE SA and, for its initiator, the
// start of its replacement.
func (e *Engine) armIKELifetime(sa *ikeSA) {
	life := sa.conn.cfg.IKE.Lifetime
	if life <= 0 {
		return
	}
	sa.expiry = e.afterFunc(life, func() {
		if sa.state != stateEstablished {
			return
		}
		e.log.Info("IKE SA lifetime expired", sa.logArgs("lifetime", life)...)
		e.retireIKESA(sa, errExpired)
	})
	if !sa.initiator {
		return
	}
	sa.rekey = e.afterFunc(e.rekeyTime(life, true), func() {
		if sa.state != stateEstablished {
			return
		}
		e.rekeyIKESA(sa)
	})
}

// SoftLifetime is when an SA with the hard limit hard (a lifetime or a volume) asks for its
// replacement: at 90 % when we initiated it, at 95 % when the peer did, so that two espgw
// peers do not both start the rekey at the same moment. The datapath's soft limits and
// the engine's rekey timers (rekeyTime) both follow it.
func SoftLifetime[T time.Duration | uint64](hard T, initiator bool) T {
	if initiator {
		return hard / 10 * 9
	}
	return hard / 20 * 19
}

// rekeyTime is when we start replacing an IKE or child SA with that lifetime: at its
// SoftLifetime for our role, less a random jitter of up to 5 %.
func (e *Engine) rekeyTime(life time.Duration, initiator bool) time.Duration {
	at := SoftLifetime(life, initiator)
	var b [2]byte
	if _, err := io.ReadFull(e.opts.Rand, b[:]); err == nil {
		at -= time.Duration(uint64(life/20) * uint64(binary.BigEndian.Uint16(b[:])) >> 16)
	}
	return at
}

// rekeyIKESA starts a new phase 1 to replace old, unless a newer IKE SA with the peer
// exists or is being negotiated (by either side): that one takes over the child SAs.
func (e *Engine) rekeyIKESA(old *ikeSA) {
	c := old.conn
	if e.conns[c.cfg.Name] != c || e.establishedSA(c) != old || e.negotiatingSA(c) != nil {
		return
	}
	e.log.Info("reauthenticating IKE SA before it expires", old.logArgs()...)
	if sa := e.startPhase1(c); sa != nil {
		sa.replaces = old
	}
}

// adoptChildren makes sa, just established, the owner of every child SA of its connection
// and schedules the IKE SA it replaces, if any, for deletion.
func (e *Engine) adoptChildren(sa *ikeSA) {
	for _, ch := range e.children {
		if ch.tunnel.conn == sa.conn {
			ch.ike = sa
		}
	}
	old := sa.replaces
	sa.replaces = nil
	if old == nil || old.state != stateEstablished {
		return
	}
	old.retire = e.afterFunc(e.opts.Retransmit.Timeout, func() {
		if old.state != stateEstablished {
			return
		}
		e.retireIKESA(old, errRekeyed)
	})
}

// retireIKESA deletes sa, telling the peer, without its child SAs: they pass to the newest
// other established IKE SA with the peer, or wait for the next one.
func (e *Engine) retireIKESA(sa *ikeSA, reason error) {
	e.handOverChildren(sa)
	e.deleteIKESA(sa, true, reason)
}

// handOverChildren moves sa's child SAs to the connection's newest other established IKE
// SA, or leaves them without one (the next IKE SA adopts them).
func (e *Engine) handOverChildren(sa *ikeSA) {
	var next *ikeSA
	for _, o := range e.ikeSAs {
		if o != sa && o.conn == sa.conn && o.state == stateEstablished && (next == nil || o.established.After(next.established)) {
			next = o
		}
	}
	for _, ch := range e.children {
		if ch.ike == sa {
			ch.ike = next
		}
	}
}
