package ike

import (
	"net/netip"
	"time"
)

// Responder DH budget. A responder computes Diffie-Hellman (its key and the shared secret:
// 2 exponentiations) for every AM1, and for every MM3 of a half-open SA, before anything
// authenticates the peer; AM1s can be forged from a configured peer's address at will.
// Token buckets bound that work: per peer address by count, in all by CPU time, each DH
// charged its group's cost (dhCost), so a flood takes at most dhCPUPerSecond of a core
// whatever the group, and DPD and quick modes of established SAs still get through, while
// 200 real peers with cheap groups starting together are not held back by a fixed count.
// A real peer needs one DH per negotiation.
const (
	dhPeerRate  = 2 // per second and peer address
	dhPeerBurst = 8 //
	// dhCPUPerSecond is the CPU time per second all responder DH may take on average (a
	// fifth of a core), dhCPUBurst how much of it may be spent at once.
	dhCPUPerSecond = 200 * time.Millisecond
	dhCPUBurst     = 400 * time.Millisecond
	// maxDHBuckets bounds the per-peer buckets (spoofed sources are limited to configured
	// peers' addresses anyway); full buckets are dropped first.
	maxDHBuckets = 1024
)

// dhCosts is the CPU time of a responder's DH (key pair and shared secret) by group: ike/dh's
// BenchmarkExchange, cpu-µs/op (process CPU time, not wall time), on the 2-core lab VM,
// rounded up (bench/README.md). A faster machine is charged the same and so admits fewer
// than its share of a core; a much slower one more.
var dhCosts = map[uint16]time.Duration{
	2:  400 * time.Microsecond,  // modp1024
	5:  550 * time.Microsecond,  // modp1536
	14: 900 * time.Microsecond,  // modp2048
	15: 1900 * time.Microsecond, // modp3072
	16: 4100 * time.Microsecond, // modp4096
	19: 60 * time.Microsecond,   // ecp256
	20: 650 * time.Microsecond,  // ecp384
}

// dhCost is what a responder DH in group costs; a group not in dhCosts (refused before any
// DH) is charged as the most expensive.
func dhCost(group uint16) time.Duration {
	if c, ok := dhCosts[group]; ok {
		return c
	}
	return dhCosts[16]
}

// tokenBucket holds up to burst tokens, refilled at rate per second.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take refills b for the time since its last use and takes cost tokens if there are as many.
func (b *tokenBucket) take(now time.Time, rate, burst, cost float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// dhLimit is the engine's responder DH budget: total counts CPU seconds.
type dhLimit struct {
	total tokenBucket
	peers map[netip.Addr]*tokenBucket
}

// allowResponderDH reports whether a responder may compute DH in group for peer now, taking
// a token from the peer's bucket and the group's cost from the overall budget.
func (e *Engine) allowResponderDH(peer netip.Addr, group uint16) bool {
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
	return b.take(now, dhPeerRate, dhPeerBurst, 1) &&
		l.total.take(now, dhCPUPerSecond.Seconds(), dhCPUBurst.Seconds(), dhCost(group).Seconds())
}
