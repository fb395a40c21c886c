package clocktest

import (
	"slices"
	"testing"
	"time"
)

// Advance fires due timers in deadline order (arming order on ties), with the clock at each
// deadline; timers armed or reset by a firing one fire too when due; stopped ones never.
func TestAdvance(t *testing.T) {
	c := New()
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(Epoch).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(time.Second, at("a2"))
	stopped := c.AfterFunc(2*time.Second, at("never"))
	r := c.AfterFunc(2200*time.Millisecond, at("reset"))
	c.AfterFunc(2*time.Second, func() {
		got = append(got, "b@2s")
		c.AfterFunc(500*time.Millisecond, at("nested"))
		r.Reset(time.Second)
	})
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true for a pending timer, then false")
	}
	if d, ok := c.Until(); !ok || d != time.Second {
		t.Fatalf("Until = %v, %v; want 1s, true", d, ok)
	}
	c.Advance(2500 * time.Millisecond)
	want := []string{"a@1s", "a2@1s", "b@2s", "nested@2.5s"}
	if !slices.Equal(got, want) {
		t.Fatalf("after 2.5s fired %v, want %v", got, want)
	}
	c.Advance(time.Second)
	want = append(want, "c@3s", "reset@3s") // reset re-armed after c
	if !slices.Equal(got, want) || c.Now() != Epoch.Add(3500*time.Millisecond) {
		t.Fatalf("after 3.5s fired %v at %v, want %v", got, c.Now(), want)
	}
	if _, ok := c.Until(); ok {
		t.Error("timers still pending")
	}
}
