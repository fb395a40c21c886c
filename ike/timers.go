package ike

import (
	"time"

	"github.com/espgw/espgw/ike/clock"
)

// Every delay of the engine runs on Options.Clock through afterFunc, so a test drives them
// all with a manual clock (ike/clock/clocktest). The timers, by the state that owns them:
//
//	exchange.timer         retransmit the last message (jittered), give up at    retransmit.go
//	                       the timeout
//	quick mode linger      answer retransmitted QM2/QM3 for Linger, then forget  quickmode.go
//	ikeSA.expiry           IKE SA lifetime: retire it                             rekey.go
//	ikeSA.rekey            initiator: reauthenticate at 85-90 % of the lifetime  rekey.go
//	ikeSA.retire           delete a replaced IKE SA after the overlap             rekey.go
//	ikeSA.dpd.timer        R-U-THERE every DPDDelay, dead after DPDTimeout;       dpd.go
//	                       one-sided check per round                              onesided.go
//	ikeSA.keepalive        NAT-keepalive every Options.NATKeepalive               keepalive.go
//	childSA.expiry         hard lifetime: delete (and restart start: always)     sa.go
//	childSA.softExpiry     initiator: rekey at 85-90 % of the lifetime            sa.go
//	watchUnconfirmed       initiator: one-sided check until the peer's ESP came   onesided.go
//	retireChild            delete a child SA we replaced, a little later          sa.go
//	settleDuplicates       delete the losing duplicate child SA                   duplicate.go
//	restartAlwaysAfter     bring start: always tunnels back after a pause         informational.go
//	tunnel.retry           start: always tunnel after failures, backing off      retry.go
//	unauthEntry.timer      end of a log rate-limit window: summary line           unauthlog.go

// afterFunc calls f after d with the engine locked, unless the engine has shut down by then.
// Callers that can be superseded check in f that their state is still current.
func (e *Engine) afterFunc(d time.Duration, f func()) clock.Timer {
	return e.opts.Clock.AfterFunc(d, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if !e.closed {
			f()
		}
	})
}

// now is the engine's time: timestamps, ages, DPD and rate limits.
func (e *Engine) now() time.Time { return e.opts.Clock.Now() }
