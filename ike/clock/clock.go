// Package clock is the time source of the IKE engine: the current time and the timers
// behind retransmission, DPD, lifetimes, rekeys and every other delay. The engine takes
// one Clock, so tests run it on a manual clock (clocktest) instead of waiting.
package clock

import "time"

// Clock tells the time and runs functions after a delay.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine (Real) or the caller's of the manual
	// clock's Advance once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call of a Clock's AfterFunc; it behaves as time.Timer does.
type Timer interface {
	// Stop prevents the call; it reports whether the call was still pending.
	Stop() bool
	// Reset schedules the call again, d from now; it reports whether it was pending.
	Reset(d time.Duration) bool
}

// Real is the wall clock: time.Now and time.AfterFunc.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc returns time.AfterFunc(d, f).
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
