package ike

import (
	"net/netip"
	"time"
)

// Responder DH rate limit. A responder computes Diffie-Hellman (its key and the shared
// secret: 2 exponentiations, ~7 ms for modp4096) for every AM1, and for every MM3 of a
// half-open SA, before anything authenticates the peer; AM1s can be forged from a
// configured peer's address at will. Token buckets bound that work per peer address and
// in all, so a flood costs a bounded share of the engine and DPD and quick modes of
// established SAs still get through. A real peer needs one DH per negotiation.
const (
	dhPeerRate   = 2  // per second and peer address
	dhPeerBurst  = 8  //
	dhTotalRate  = 20 // per second, all peers
	dhTotalBurst = 32 //
	// maxDHBuckets bounds the per-peer buckets (spoofed sources are limited to configured
	// peers' addresses anyway); full buckets are dropped first.
	maxDHBuckets = 1024
)

// tokenBucket holds up to burst tokens, refilled at rate per second.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take refills b for the time since its last use and takes a token if there is one.
func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// dhLimit is the engine's responder DH budget.
type dhLimit struct {
	total tokenBucket
	peers map[netip.Addr]*tokenBucket
}

// allowResponderDH reports whether a responder may compute DH for peer now, taking a token
// from the peer's and the overall bucket.
func (e *Engine) allowResponderDH(peer netip.Addr) bool {
	l := &e.dhLimit
	now := e.now()
	if l.peers == nil {
		l.peers = make(map[netip.Addr]*tokenBucket)
	}
	b := l.peers[peer]
	if b == nil {
		if len(l.peers) >= maxDHBuckets {
			for a, o := range l.peers {
				if now.Sub(o.last).Seconds()*dhPeerRate+o.tokens >= dhPeerBurst {
					delete(l.peers, a)
				}
			}
		}
		b = &tokenBucket{}
		l.peers[peer] = b
	}
	// The peer's token first: one flooding peer must not drain the overall budget.
	return b.take(now, dhPeerRate, dhPeerBurst) && l.total.take(now, dhTotalRate, dhTotalBurst)
}
