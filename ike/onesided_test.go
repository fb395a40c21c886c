package ike

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/conn/bindtest"
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
	pc := pairConfig{mode: config.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k",
		dpdDelay: 30 * time.Millisecond, dpdTimeout: time.Second}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ka := &countingKernel{fakeKernel: newFakeKernel(0xa0000000), in: map[uint32]uint64{}, out: map[uint32]uint64{}}
	e := New(Options{Logger: testLogger(t, "A"), Bind: ba, Kernel: ka,
		Retransmit: RetransmitPolicy{Initial: 50 * time.Millisecond, MaxTries: 5, Timeout: 3 * time.Second}})
	if err := e.Configure([]config.Connection{ca}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &node{e: e, k: ka.fakeKernel, bind: ba, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(a.done); e.Run(ctx) }()
	t.Cleanup(a.stop)
	b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)

	ka.setRates(5, 5) // two-way
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	first := a.k.active()[0]
	time.Sleep(10 * pc.dpdDelay)
	if got := a.k.active(); len(got) != 1 || got[0].SPIIn != first.SPIIn {
		t.Fatalf("two-way traffic: child SAs %d, want the first one only", len(got))
	}

	ka.setRates(0, 5) // the peer lost it: out only
	waitFor(t, "one-sided state in status", func() bool {
		st := a.e.Status()
		return len(st.IKESAs) == 1 && len(st.IKESAs[0].ChildSAs) > 0 && !st.IKESAs[0].ChildSAs[0].OneSidedSince.IsZero()
	})
	waitFor(t, "a new pair replacing the one-sided child SA at both ends", func() bool {
		na, nb := a.k.active(), b.k.active()
		return len(na) == 1 && na[0].SPIIn != first.SPIIn && len(nb) >= 1 && nb[len(nb)-1].SPIIn == na[0].SPIOut
	})
	st := a.e.Status()
	if len(st.Errors) == 0 || !strings.Contains(st.Errors[len(st.Errors)-1].Err, "one-sided") {
		t.Errorf("status errors %+v, want the one-sided re-key", st.Errors)
	}
	// One-way traffic on the new pair too: no second re-key within the backoff.
	second := a.k.active()[0]
	time.Sleep(10 * pc.dpdDelay)
	if got := a.k.active(); len(got) != 1 || got[0].SPIIn != second.SPIIn {
		t.Errorf("re-keyed again within %v", oneSidedBackoff)
	}
}
