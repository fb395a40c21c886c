package ike

import (
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
)

func deletedCount(k *fakeKernel) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.deleted)
}

func TestIKEReauthentication(t *testing.T) {
	// A's IKE SA lives an hour, B's a day: A replaces it at 85 to 90 % of the hour, B
	// only loses the old SA because A deletes it after the retransmission timeout. The
	// child SA stays installed throughout.
	const life = time.Hour
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.IKE.Lifetime, cb.IKE.Lifetime = life, 24*time.Hour
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	s.up(a, b)
	child := *a.k.active()[0]
	first := a.e.Status().IKESAs[0].InitiatorCookie
	start := s.clk.Now()

	var cookie string
	s.run("old IKE SA replaced on both sides", life, func() bool {
		sa, sb := a.e.Status().IKESAs, b.e.Status().IKESAs
		if len(sa) != 1 || len(sb) != 1 || sa[0].InitiatorCookie == first || sb[0].InitiatorCookie != sa[0].InitiatorCookie {
			return false
		}
		cookie = sa[0].InitiatorCookie
		return sa[0].State == "ESTABLISHED" && sb[0].State == "ESTABLISHED"
	})
	if got, most := s.elapsed(start), life*9/10+DefaultRetransmit.Timeout; got < life*85/100 || got > most {
		t.Errorf("old IKE SA gone after %v, want between 85 %% of its %v lifetime and %v", got, life, most)
	}
	// No INITIAL-CONTACT (B would have deleted the child SAs of the old SA) and no
	// renegotiation of the child SA: the same SPIs, now owned by the new IKE SA.
	if n := deletedCount(a.k) + deletedCount(b.k); n != 0 {
		t.Errorf("%d child SAs deleted during reauthentication, want none", n)
	}
	for _, n := range []*node{a, b} {
		st := n.e.Status()
		for _, s := range st.IKESAs {
			if s.InitiatorCookie == cookie && (len(s.ChildSAs) != 1 || s.ChildSAs[0].SPIIn != child.SPIIn && s.ChildSAs[0].SPIOut != child.SPIIn) {
				t.Errorf("new IKE SA owns child SAs %+v, want the one from before", s.ChildSAs)
			}
		}
	}
	// A new quick mode (a child rekey) runs under a current IKE SA.
	a.e.Expire(child.SPIIn, false)
	s.run("child SA rekeyed after reauthentication", time.Minute, func() bool {
		aa, bb := a.k.active(), b.k.active()
		return len(aa) == 1 && aa[0].SPIIn != child.SPIIn && len(bb) == 1 && bb[0].SPIIn == aa[0].SPIOut
	})
}

func TestRekeyTimeJitter(t *testing.T) {
	e := New(Options{})
	life := 8 * time.Hour
	seen := make(map[time.Duration]bool)
	for range 50 {
		at := e.rekeyTime(life, true)
		if at > life*9/10 || at < life*85/100 {
			t.Fatalf("rekey at %v of %v, want between 85 and 90 %%", at, life)
		}
		seen[at] = true
	}
	if len(seen) < 2 {
		t.Errorf("rekey time not jittered: %v", seen)
	}
}

// TestSoftLifetime checks the one soft-limit rule, which the daemon applies to the
// datapath's time and volume limits: 90 % as initiator, 95 % as responder.
func TestSoftLifetime(t *testing.T) {
	if got := SoftLifetime(8*time.Hour, true); got != 432*time.Minute {
		t.Errorf("SoftLifetime(8h, initiator) = %v, want 7h12m", got)
	}
	if got := SoftLifetime(8*time.Hour, false); got != 456*time.Minute {
		t.Errorf("SoftLifetime(8h, responder) = %v, want 7h36m", got)
	}
	if got := SoftLifetime(uint64(1000), true); got != 900 {
		t.Errorf("SoftLifetime(1000 bytes, initiator) = %d, want 900", got)
	}
	if got := SoftLifetime(uint64(1000), false); got != 950 {
		t.Errorf("SoftLifetime(1000 bytes, responder) = %d, want 950", got)
	}
}
