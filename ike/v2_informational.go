package ike

import (
	"encoding/binary"
	"fmt"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/model"
)

// INFORMATIONAL (RFC 7296 1.4, 1.5, 2.4): Delete of child SAs (answered with the Delete of
// our half of each pair) or of the IKE SA (answered empty), error notifications, and the
// empty request that is IKEv2's liveness check: with dpd_delay set, an IKE SA that has
// heard nothing from the peer for dpd_delay sends one; one that hears nothing for
// dpd_timeout (or whose request goes unanswered through every retransmission) is dead.

// handleV2Informational answers the peer's INFORMATIONAL request.
func (e *Engine) handleV2Informational(sa *v2SA, msgID uint32, ps []ikev2.Payload) {
	var out []ikev2.Payload
	deleteIKE := false
	for _, p := range ps {
		switch p := p.(type) {
		case *ikev2.Delete:
			switch p.Protocol {
			case ikev2.ProtocolIKE:
				deleteIKE = true
			case ikev2.ProtocolESP:
				if d := e.deleteV2Children(sa, p.SPIs); d != nil {
					out = append(out, d)
				}
			}
		case *ikev2.Notify:
			if p.NotifyType.IsError() {
				e.log.Warn("peer sent an error notification", sa.logArgs("notify", p.NotifyType.String())...)
			}
		}
	}
	sa.respond(ikev2.ExchangeInformational, msgID, out...)
	if deleteIKE {
		c := sa.conn
		e.inheritChildren(sa)
		e.deleteV2SA(sa, false, errDeleted)
		e.restartAlways(c)
	}
}

// deleteV2Children deletes the child SAs whose outbound SPIs the peer deleted and returns
// the Delete of their inbound SPIs for the answer.
func (e *Engine) deleteV2Children(sa *v2SA, spis [][]byte) *ikev2.Delete {
	d := &ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: 4}
	for _, s := range spis {
		if len(s) != 4 {
			continue
		}
		spi := binary.BigEndian.Uint32(s)
		for _, ch := range e.children {
			if ch.v2 == nil || ch.v2.conn != sa.conn || ch.SPIOut != spi { // sa or its rekeyed successor (RFC 7296 1.4)
				continue
			}
			d.SPIs = append(d.SPIs, spiBytes(ch.SPIIn))
			t := ch.tunnel
			e.deleteChild(ch, false)
			if t.cfg.Start == model.StartAlways && t.child == nil && !t.removed {
				e.startTunnel(t, nil)
			}
		}
	}
	if len(d.SPIs) == 0 {
		return nil
	}
	return d
}

// sendV2DeleteChild tells the peer that we deleted the child SA with inbound SPI spiIn.
func (e *Engine) sendV2DeleteChild(sa *v2SA, spiIn uint32) {
	sa.request(&v2Request{exchange: ikev2.ExchangeInformational,
		payloads: []ikev2.Payload{&ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: 4, SPIs: [][]byte{spiBytes(spiIn)}}}})
}

// deleteV2SAs deletes every IKEv2 SA of c, telling the peer.
func (e *Engine) deleteV2SAs(c *connection, err error) {
	for _, sa := range e.v2SAs {
		if sa.conn == c {
			e.deleteV2SA(sa, true, err)
		}
	}
}

// startLiveness arms the liveness check of an established IKE SA (dpd_delay, dpd_timeout).
func (e *Engine) startLiveness(sa *v2SA) {
	cfg := sa.conn.cfg.IKE
	sa.lastRecv = e.now()
	if cfg.DPDDelay <= 0 {
		return
	}
	timeout := cfg.DPDTimeout
	if timeout <= 0 {
		timeout = 5 * cfg.DPDDelay
	}
	var tick func()
	tick = func() {
		if sa.state != v2Established {
			return
		}
		idle := e.now().Sub(sa.lastRecv)
		if idle >= timeout {
			e.v2PeerDead(sa, fmt.Errorf("%w: nothing from the peer for %v", errDPD, idle))
			return
		}
		// Wake when the SA will have been quiet for dpd_delay, not a whole interval later:
		// an answer that came just after the last tick must not double the gap.
		next := cfg.DPDDelay - idle
		if idle >= cfg.DPDDelay {
			if sa.pending == nil && len(sa.queue) == 0 {
				sa.request(&v2Request{exchange: ikev2.ExchangeInformational})
			}
			next = cfg.DPDDelay
		}
		sa.dpd = e.afterFunc(min(next, timeout-idle), tick)
	}
	sa.dpd = e.afterFunc(cfg.DPDDelay, tick)
}

// v2PeerDead deletes an established IKE SA whose peer stopped answering.
func (e *Engine) v2PeerDead(sa *v2SA, err error) {
	e.log.Warn("peer is dead", sa.logArgs("err", err)...)
	c := sa.conn
	e.deleteV2SA(sa, false, err)
	e.restartAlways(c)
}

// startV2Keepalive sends NAT-keepalives while NAT detection shows us behind a NAT.
func (e *Engine) startV2Keepalive(sa *v2SA) {
	if sa.behindNAT {
		e.keepNATOpen(&sa.keepalive, func() bool { return sa.state == v2Established }, &sa.local, &sa.remote)
	}
}
