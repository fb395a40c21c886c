package ike

import (
	"net/netip"
	"time"

	"github.com/espgw/espgw/ike/clock"
)

// DefaultNATKeepalive is the NAT-keepalive interval RFC 3948 section 4 suggests.
const DefaultNATKeepalive = 20 * time.Second

// natKeepalive is the NAT-keepalive packet: one octet 0xFF in UDP (RFC 3948 2.3). It goes
// out without the non-ESP marker, like ESP-in-UDP, which its length tells apart.
var natKeepalive = []byte{0xff}

// startNATKeepalive keeps the NAT binding in front of us open: while NAT-D showed that
// we are behind a NAT, an established IKE SA sends a NAT-keepalive from its port (4500)
// to the peer's every Options.NATKeepalive (RFC 3948 4). A NAT that nat_traversal: force
// only pretends has no binding to keep, so then nothing is sent.
func (e *Engine) startNATKeepalive(sa *ikeSA) {
	if sa.behindNAT {
		e.keepNATOpen(&sa.keepalive, func() bool { return sa.state == stateEstablished }, &sa.local, &sa.remote)
	}
}

// keepNATOpen sends a NAT-keepalive from *local to *remote every Options.NATKeepalive while
// up() holds, keeping the timer in *timer.
func (e *Engine) keepNATOpen(timer *clock.Timer, up func() bool, local, remote *netip.AddrPort) {
	every := e.opts.NATKeepalive
	var tick func()
	tick = func() {
		if !up() {
			return
		}
		if err := e.opts.Bind.SendESP(natKeepalive, *local, *remote); err != nil {
			e.log.Debug("NAT-keepalive not sent", "peer", *remote, "err", err)
		}
		*timer = e.afterFunc(every, tick)
	}
	*timer = e.afterFunc(every, tick)
}
