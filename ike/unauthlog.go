package ike

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/espgw/espgw/ike/clock"
)

// Failures that an unauthenticated packet can cause (an MM1 or AM1 from any source address,
// or the half-open SA it leaves behind) go through a limiter, so that a flood of spoofed
// packets does not flood the log: per reason and peer address the first is logged at Warn
// and the ones that follow within unauthLogWindow are counted, then summed up in one line
// ("…: N more suppressed") at the end of the window. Failures after the peer has shown it
// receives our messages (it echoed our responder cookie) are logged normally.

// unauthLogWindow is the longest a suppressed failure waits for its summary line.
const unauthLogWindow = time.Minute

// maxUnauthLogKeys bounds the (reason, peer) pairs tracked; peers beyond it share one
// entry, so that random spoofed source addresses cannot grow the table.
const maxUnauthLogKeys = 64

type unauthKey struct {
	msg  string
	peer netip.Addr // the zero Addr: the entry shared by peers beyond maxUnauthLogKeys
}

type unauthEntry struct {
	suppressed int
	timer      clock.Timer
}

// unauthLog is the limiter's state; the Engine's lock guards it.
type unauthLog struct {
	window  time.Duration
	entries map[unauthKey]*unauthEntry
}

// logUnauth logs msg with args at Warn unless msg was logged for peer within the window,
// and reports whether it did. The caller holds e.mu.
func (e *Engine) logUnauth(msg string, peer netip.Addr, args ...any) bool {
	l := &e.unauth
	k := unauthKey{msg, peer}
	if _, ok := l.entries[k]; !ok && len(l.entries) >= maxUnauthLogKeys {
		k.peer = netip.Addr{}
	}
	if ent, ok := l.entries[k]; ok {
		ent.suppressed++
		return false
	}
	ent := &unauthEntry{}
	l.entries[k] = ent
	ent.timer = e.afterFunc(l.window, func() { e.endUnauthWindow(k, ent) })
	e.log.Warn(msg, args...)
	return true
}

// endUnauthWindow sums up what the window of k suppressed and starts the next window, or
// forgets k after a quiet one.
func (e *Engine) endUnauthWindow(k unauthKey, ent *unauthEntry) {
	if e.unauth.entries[k] != ent {
		return
	}
	if ent.suppressed == 0 {
		delete(e.unauth.entries, k)
		return
	}
	e.logSuppressed(k, ent)
	ent.timer.Reset(e.unauth.window)
}

// flushUnauthLog writes the pending summary lines and stops the limiter's timers.
func (e *Engine) flushUnauthLog() {
	for k, ent := range e.unauth.entries {
		ent.timer.Stop()
		if ent.suppressed > 0 {
			e.logSuppressed(k, ent)
		}
	}
	clear(e.unauth.entries)
}

func (e *Engine) logSuppressed(k unauthKey, ent *unauthEntry) {
	peer := "other peers"
	if k.peer.IsValid() {
		peer = k.peer.String()
	}
	e.log.Warn(fmt.Sprintf("%s: %d more suppressed", k.msg, ent.suppressed),
		"peer", peer, "suppressed", ent.suppressed, "window", e.unauth.window)
	ent.suppressed = 0
}

// peerUnverified reports whether sa is a responder SA that has seen only the peer's first
// message: nothing shows the peer receives at its address, so that message may be spoofed.
func (sa *ikeSA) peerUnverified() bool {
	return !sa.initiator && (sa.state == stateMM2Sent || sa.state == stateAM2Sent)
}
