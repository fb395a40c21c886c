package ike

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/netip"
	"time"

	"github.com/espgw/espgw/ike/clock"
)

// RetransmitPolicy controls how an unanswered message is resent: after Initial, then with
// the interval doubling, at most MaxTries sends in all, and never past Timeout after the
// first send. An exchange that exhausts it fails and its half-open state is deleted.
// A completed quick mode answers the peer's retransmissions for Linger.
type RetransmitPolicy struct {
	Initial  time.Duration
	MaxTries int
	Timeout  time.Duration
	Linger   time.Duration
}

// DefaultRetransmit sends at 0, 1, 3, 7 and 15 s (intervals doubling from 1 s) and gives up
// at 28 s, so a failed negotiation is reported within 30 s. It lingers for as long as
// peers retransmit: strongSwan's default schedule (5 tries from 4 s, factor 1.8) gives up
// after about 165 s.
var DefaultRetransmit = RetransmitPolicy{Initial: time.Second, MaxTries: 5, Timeout: 28 * time.Second, Linger: 3 * time.Minute}

func (p RetransmitPolicy) withDefaults() RetransmitPolicy {
	if p.Initial <= 0 {
		p.Initial = DefaultRetransmit.Initial
	}
	if p.MaxTries <= 0 {
		p.MaxTries = DefaultRetransmit.MaxTries
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultRetransmit.Timeout
	}
	if p.Linger <= 0 {
		p.Linger = DefaultRetransmit.Linger
	}
	return p
}

// exchange is the transport state every exchange (phase 1, one quick mode) keeps: the last
// message it sent (all its fragments, RFC 7383), for retransmission and for answering a
// retransmitted request, and a digest of the last message it accepted, to recognise that
// request.
type exchange struct {
	e        *Engine
	lastOut  [][]byte
	local    netip.AddrPort
	remote   netip.AddrPort
	lastIn   [sha256.Size]byte
	haveIn   bool
	timer    clock.Timer
	tries    int
	gen      uint64 // invalidates timers that fired while we held the lock
	onGiveUp func()
	// onResend, if set, runs before the try-th send (2 and later) and may replace lastOut.
	onResend func(try int)
	// echoes repeats of the last accepted message answer our own retransmissions, which
	// crossed our reply, and one more before crossUntil the peer's own retransmission
	// that crossed it: they are not answered again. Repeats beyond them are answered.
	echoes     int
	crossUntil time.Time
}

// send transmits msg and, if awaitReply, resends it on the policy's schedule until stop.
func (x *exchange) send(msg []byte, local, remote netip.AddrPort, awaitReply bool) {
	x.sendAll([][]byte{msg}, local, remote, awaitReply)
}

// sendAll is send for a message in fragments, which go (and are resent) together.
func (x *exchange) sendAll(msgs [][]byte, local, remote netip.AddrPort, awaitReply bool) {
	x.stop()
	x.lastOut, x.local, x.remote = msgs, local, remote
	x.transmit()
	if awaitReply {
		x.tries = 1
		x.arm(x.e.opts.Retransmit.Initial, x.e.opts.Retransmit.Timeout)
	}
}

func (x *exchange) transmit() {
	for _, msg := range x.lastOut {
		if err := x.e.opts.Bind.SendIKE(msg, x.local, x.remote); err != nil {
			x.e.log.Debug("send failed", "peer", x.remote, "err", err)
		}
	}
}

// arm schedules the next retransmission after about base (jittered); left is the time
// remaining before giving up.
func (x *exchange) arm(base, left time.Duration) {
	x.gen++
	gen := x.gen
	d := min(x.e.jitter(base), left)
	x.timer = x.e.afterFunc(d, func() {
		if gen != x.gen {
			return
		}
		left -= d
		p := x.e.opts.Retransmit
		if x.tries >= p.MaxTries || left <= 0 {
			x.stop()
			if x.onGiveUp != nil {
				x.onGiveUp()
			}
			return
		}
		x.tries++
		if x.onResend != nil {
			x.onResend(x.tries)
		}
		x.transmit()
		x.arm(2*base, left)
	})
}

// stop cancels retransmission; the last message stays available for duplicates.
func (x *exchange) stop() {
	x.gen++
	if x.timer != nil {
		x.timer.Stop()
		x.timer = nil
	}
}

// duplicate reports whether raw repeats the last accepted message; if so it resends our
// answer to it (RFC 2408 retransmission handling) instead of processing it again.
func (x *exchange) duplicate(raw []byte) bool {
	if !x.repeats(raw) {
		return false
	}
	switch {
	case x.echoes > 0:
		x.echoes--
		return true
	case x.e.now().Before(x.crossUntil):
		x.crossUntil = time.Time{}
		return true
	}
	if x.lastOut != nil {
		x.transmit()
	}
	return true
}

// repeats reports whether raw is the last accepted message again.
func (x *exchange) repeats(raw []byte) bool { return x.haveIn && sha256.Sum256(raw) == x.lastIn }

// accepted records raw as the last message processed.
func (x *exchange) accepted(raw []byte) {
	x.lastIn, x.haveIn = sha256.Sum256(raw), true
}

// retransmitJitter is how far, in percent, each retransmission interval and retry pause
// strays from its schedule, at random. Exchanges started together (MM1s to 200 peers when
// the gateway starts) would otherwise be resent together, round after round, each a burst
// for the peer's half-open limit (strongSwan's block_threshold) and for our CPU.
const retransmitJitter = 20

// jitter returns d moved by up to ±retransmitJitter percent, drawn from the engine's Rand
// (a seeded one in tests makes the schedule repeat).
func (e *Engine) jitter(d time.Duration) time.Duration {
	span := uint64(d) * 2 * retransmitJitter / 100
	var b [8]byte
	if span == 0 || d <= 0 {
		return d
	}
	if _, err := io.ReadFull(e.opts.Rand, b[:]); err != nil {
		return d
	}
	return d - d*retransmitJitter/100 + time.Duration(binary.BigEndian.Uint64(b[:])%(span+1))
}
