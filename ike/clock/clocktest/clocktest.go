// Package clocktest provides a manual clock.Clock for tests: time moves only when the test
// advances it, and due timers fire then, in order, on the test's goroutine.
package clocktest

import (
	"sync"
	"time"

	"github.com/espgw/espgw/ike/clock"
)

// Clock is a manual clock. It is safe for concurrent use; timer functions run without
// its lock held, so they may arm, stop and reset timers.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64 // orders timers due at the same instant by arming
	timers []*Timer
}

var _ clock.Clock = (*Clock)(nil)

// Epoch is where a new Clock starts.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a Clock at Epoch.
func New() *Clock { return &Clock{now: Epoch} }

// Timer is a pending call on a Clock.
type Timer struct {
	c   *Clock
	f   func()
	at  time.Time
	seq uint64
	on  bool // pending
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f from Advance once the clock has moved d past now.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := &Timer{c: c, f: f}
	t.Reset(d)
	return t
}

// Stop implements clock.Timer.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.remove(t)
}

// Reset implements clock.Timer.
func (t *Timer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.remove(t)
	c.seq++
	t.at, t.seq, t.on = c.now.Add(max(d, 0)), c.seq, true
	c.timers = append(c.timers, t)
	return was
}

func (c *Clock) remove(t *Timer) bool {
	if !t.on {
		return false
	}
	t.on = false
	for i, o := range c.timers {
		if o == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			break
		}
	}
	return true
}

// next returns the timer due first; the caller holds c.mu.
func (c *Clock) next() *Timer {
	var first *Timer
	for _, t := range c.timers {
		if first == nil || t.at.Before(first.at) || t.at.Equal(first.at) && t.seq < first.seq {
			first = t
		}
	}
	return first
}

// Until returns the time to the next pending timer; ok is false when none is pending.
func (c *Clock) Until() (d time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.next()
	if t == nil {
		return 0, false
	}
	return t.at.Sub(c.now), true
}

// Advance moves the clock d forward, calling the functions of the timers that fall due on
// the way, one at a time, in the order of their deadlines, with the clock at each deadline.
// Timers they arm fire too if they are due by the end. Call it without holding locks those
// functions take.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(max(d, 0))
	for {
		t := c.next()
		if t == nil || t.at.After(end) {
			break
		}
		c.remove(t)
		c.now = t.at
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}
