package ike

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// countingKernel is a fakeKernel whose child SAs carry traffic the test decides: every
// read of an SA's counters adds its current rates.
type countingKernel struct {
	*fakeKernel
	mu      sync.Mutex
	in, out map[uint32]uint64 // packets so far, by inbound SPI
	inRate  uint64
	outRate uint64
}

func (k *countingKernel) ChildSAPackets(ctx context.Context, sa *ChildSA) (in, out uint64, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.in[sa.SPIIn] += k.inRate
	k.out[sa.SPIIn] += k.outRate
	return k.in[sa.SPIIn], k.out[sa.SPIIn], nil
}

func (k *countingKernel) setRates(in, out uint64) {
	k.mu.Lock()
	k.inRate, k.outRate = in, out
	k.mu.Unlock()
}

// A tunnel whose packets go out while none come in, with the peer answering DPD, is
// re-keyed: a new pair at both ends, the one-sided state in Status and its reason in the
// errors. Two-way traffic, or one-way traffic the peer cannot be asked about, is left alone.
func TestOneSidedTunnelRekeyed(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
		dpdDelay: 30 * time.Second, dpdTimeout: 150 * time.Second}
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ka := &countingKernel{fakeKernel: newFakeKernel(0xa0000000), in: map[uint32]uint64{}, out: map[uint32]uint64{}}
	a := s.start("A", ba, ka.fakeKernel, Options{Kernel: ka}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)

	ka.setRates(5, 5) // two-way
	s.up(a, b)
	first := a.k.active()[0]
	s.advance(10 * pc.dpdDelay)
	if got := a.k.active(); len(got) != 1 || got[0].SPIIn != first.SPIIn {
		t.Fatalf("two-way traffic: child SAs %d, want the first one only", len(got))
	}
	if since := a.e.Tunnels()[0].OneSidedSince; !since.IsZero() {
		t.Fatalf("two-way traffic: tunnel one-sided since %v", since)
	}

	ka.setRates(0, 5) // the peer lost it: out only
	lost := s.clk.Now()
	s.run("one-sided state in status", 10*pc.dpdDelay, func() bool {
		st := a.e.Status()
		return len(st.IKESAs) == 1 && len(st.IKESAs[0].ChildSAs) > 0 && !st.IKESAs[0].ChildSAs[0].OneSidedSince.IsZero()
	})
	s.run("a new pair replacing the one-sided child SA at both ends", 10*pc.dpdDelay, func() bool {
		na, nb := a.k.active(), b.k.active()
		return len(na) == 1 && na[0].SPIIn != first.SPIIn && len(nb) >= 1 && nb[len(nb)-1].SPIIn == na[0].SPIOut
	})
	// Re-keyed in the oneSidedRounds-th round (the first only samples), replaced a few
	// retransmission intervals later.
	if got, most := s.elapsed(lost), (oneSidedRounds+1)*pc.dpdDelay+(replacedChildDelay+1)*DefaultRetransmit.Initial; got > most {
		t.Errorf("one-sided child SA replaced %v after the peer lost it, want within %v", got, most)
	}
	st := a.e.Status()
	if len(st.Errors) == 0 || !strings.Contains(st.Errors[len(st.Errors)-1].Err, "one-sided") {
		t.Errorf("status errors %+v, want the one-sided re-key", st.Errors)
	}
	// One-way traffic on the new pair too: no second re-key within the backoff.
	second := a.k.active()[0]
	s.advance(oneSidedBackoff - time.Minute)
	if got := a.k.active(); len(got) != 1 || got[0].SPIIn != second.SPIIn {
		t.Errorf("re-keyed again within %v", oneSidedBackoff)
	}
	// The tunnel stays one-sided (metrics, status) until traffic comes back.
	if a.e.Tunnels()[0].OneSidedSince.IsZero() {
		t.Error("one-way traffic on the new pair: tunnel not reported one-sided")
	}
	ka.setRates(5, 5)
	s.advance(2 * pc.dpdDelay)
	if since := a.e.Tunnels()[0].OneSidedSince; !since.IsZero() {
		t.Errorf("traffic back both ways: tunnel still one-sided since %v", since)
	}
}

// dropQM3s drops every message after the first of a Bind's first quick mode as initiator:
// its QM3 and the answers to the peer's retransmitted QM2s. Later quick modes pass.
func dropQM3s() bindtest.Filter {
	var mu sync.Mutex
	var first uint32
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		if !isIKE || err != nil || h.Exchange != isakmp.ExchangeQuickMode {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if first == 0 {
			first = h.MessageID
			return true
		}
		return h.MessageID != first
	}
}

// lostQM3Sim is two engines, A with a countingKernel and every QM3 of its first quick mode lost.
func lostQM3Sim(t *testing.T) (*sim, *node, *node, *countingKernel) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ba.SetFilter(dropQM3s())
	ca, cb := connPair(t, pc)
	ka := &countingKernel{fakeKernel: newFakeKernel(0xa0000000), in: map[uint32]uint64{}, out: map[uint32]uint64{}}
	a := s.start("A", ba, ka.fakeKernel, Options{Kernel: ka}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	return s, a, b, ka
}

// replacedAtBothEnds reports whether a pair other than lost is installed at A and B.
func replacedAtBothEnds(a, b *node, lost *ChildSA) bool {
	for _, cb := range b.k.active() {
		for _, ca := range a.k.active() {
			if ca.SPIOut == cb.SPIIn && ca.SPIIn != lost.SPIIn {
				return true
			}
		}
	}
	return false
}

// A child SA whose QM3 the peer never got, without DPD: the peer gave up on the quick
// mode, we send into a child SA it never installed. Traffic out and none in on a child SA
// that never carried the peer's ESP re-keys the tunnel; the new pair is installed at both
// ends. Once the new pair carries traffic both ways, it is left alone.
func TestLostQM3RecoveredWithoutDPD(t *testing.T) {
	s, a, b, ka := lostQM3Sim(t)

	ka.setRates(0, 5) // we send, the peer has nothing to send with
	a.e.Acquire(a.e.Tunnels()[0].ReqID)
	s.run("the initiator's child SA", time.Minute, func() bool { return len(a.k.active()) == 1 })
	lost := a.k.active()[0]
	start := s.clk.Now()
	s.run("a pair installed at both ends", 5*time.Minute, func() bool { return replacedAtBothEnds(a, b, lost) })
	if got, most := s.elapsed(start), (oneSidedRounds+1)*5*DefaultRetransmit.Initial; got > most {
		t.Errorf("recovered %v after the child SA was installed, want within %v", got, most)
	}
	ka.setRates(5, 5)
	replaced := a.k.active()
	s.advance(time.Hour)
	if got := a.k.active(); len(got) != 1 || got[0].SPIIn != replaced[len(replaced)-1].SPIIn {
		t.Errorf("two-way traffic on the new pair: child SAs %d, want it alone", len(got))
	}
}

// The same, with a peer that drops its ISAKMP SA when it gives up on the quick mode, as
// strongSwan does, without a Delete: our re-key's QM1 goes unanswered under the old
// ISAKMP SA. A quick mode without a word from the peer for its whole timeout means the
// peer lost the ISAKMP SA (or died): it is deleted and the tunnel negotiated afresh.
func TestLostQM3PeerDroppedISAKMPSA(t *testing.T) {
	s, a, b, ka := lostQM3Sim(t)

	ka.setRates(0, 5)
	a.e.Acquire(a.e.Tunnels()[0].ReqID)
	s.run("the initiator's child SA", time.Minute, func() bool { return len(a.k.active()) == 1 })
	lost := a.k.active()[0]
	b.e.mu.Lock()
	for _, sa := range b.e.ikeSAs {
		b.e.deleteIKESA(sa, false, errDeleted)
	}
	b.e.mu.Unlock()
	start := s.clk.Now()
	s.run("a pair installed at both ends", 5*time.Minute, func() bool { return replacedAtBothEnds(a, b, lost) })
	t.Logf("recovered %v after the child SA was installed", s.elapsed(start))
	if st := a.e.Status(); len(st.IKESAs) != 1 {
		t.Errorf("initiator has %d IKE SAs, want the new one alone", len(st.IKESAs))
	}
}
