package ike

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/isakmp"
)

// strongSwan answers a message it cannot decrypt (a late retransmission whose IV it has moved
// past) with PAYLOAD-MALFORMED for the ISAKMP SA, naming no exchange. It must not fail the
// quick mode we have in flight: the peer's QM2 for it, retransmitted, still gets our QM3 and
// the tunnel comes up at both ends (bench/setup at 1,000 tunnels lost 134 tunnels to this).
func TestUnattributedPayloadMalformedKeepsQuickMode(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: 2})
	ts := a.e.Tunnels()
	a.e.Acquire(ts[0].ReqID)
	s.run("first tunnel up", time.Minute, func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })

	var hold atomic.Bool
	hold.Store(true)
	b.bind.SetFilter(dropWhile(isakmp.ExchangeQuickMode, &hold)) // B's first QM2 is lost
	a.e.Acquire(ts[1].ReqID)
	for s.deliver() {
	}
	saB := b.established(t)
	b.e.mu.Lock()
	b.e.sendInformational(saB, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
		NotifyType: isakmp.NotifyPayloadMalformed})
	b.e.mu.Unlock()
	for s.deliver() {
	}
	hold.Store(false)
	s.run("second tunnel up at both ends", 10*time.Second, func() bool { return len(a.k.active()) == 2 && len(b.k.active()) == 2 })
}
