package loader

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader/pkttest"
)

// flowCacheSlot mirrors flow_slot in bpf/tc.c.
func flowCacheSlot(f tcFlow) uint32 {
	w0 := uint64(f.Daddr)<<32 | uint64(f.Saddr)
	w1 := uint64(f.Proto)<<32 | uint64(f.Dport)<<16 | uint64(f.Sport)
	return uint32((w0 ^ w1) * 0x9e3779b97f4a7c15 >> 56)
}

// onOneCPU runs the test's BPF programs on one CPU, so that they share one per-CPU flow cache.
func onOneCPU(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var one unix.CPUSet
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.SchedSetaffinity(0, &set) })
}

// TestFlowCache covers the per-CPU flow cache: counts of flows that evict each other from one
// slot, and flows classified again after the policies change.
func TestFlowCache(t *testing.T) {
	l := openLoader(t, Options{})
	onOneCPU(t)
	prog := l.Programs().TCEgress
	p1 := Policy{ID: 1, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")}, Priority: 100, SAUp: true}
	p2 := Policy{ID: 2, Selector: datapath.Selector{Local: pfx("10.1.0.0/24"), Remote: pfx("10.2.0.0/24")}, Priority: 10, SAUp: true}
	if err := l.SetPolicy(p1); err != nil {
		t.Fatal(err)
	}

	flowA := Flow5{Src: addr("10.1.0.1"), Dst: addr("10.2.0.1"), Proto: 6, SrcPort: 40000, DstPort: 80}
	keyOf := func(f Flow5) tcFlow {
		return tcFlow{Saddr: addrToKernel(f.Src), Daddr: addrToKernel(f.Dst), Sport: f.SrcPort, Dport: f.DstPort, Proto: f.Proto}
	}
	flowB := flowA // another flow in flowA's slot
	for flowB.SrcPort = flowA.SrcPort + 1; flowCacheSlot(keyOf(flowB)) != flowCacheSlot(keyOf(flowA)); flowB.SrcPort++ {
	}
	frame := func(f Flow5) []byte {
		return tcpFrame(f.Src.String(), f.Dst.String(), f.SrcPort, f.DstPort, pkttest.ACK, nil, nil)
	}
	send := func(f Flow5, n int) {
		t.Helper()
		for range n {
			if ret, _ := run(t, prog, frame(f)); ret != tcOK {
				t.Fatalf("verdict %d, want %d", ret, tcOK)
			}
		}
	}
	flowPackets := func() map[Flow5]uint64 {
		t.Helper()
		fs, err := l.TopFlows(0)
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[Flow5]uint64)
		for _, f := range fs {
			m[f.Flow5] = f.Packets
		}
		return m
	}
	outPackets := func(id uint32) uint64 {
		t.Helper()
		c, err := l.PolicyCounters()
		if err != nil {
			t.Fatal(err)
		}
		return c[id].Out.Packets
	}

	send(flowA, 3)
	send(flowB, 2) // moves A's counts into the flow table
	send(flowA, 1) // and B's
	if got := flowPackets(); got[flowA] != 4 || got[flowB] != 2 || len(got) != 2 {
		t.Errorf("flows %v, want %v: 4 and %v: 2", got, flowA, flowB)
	}
	if got := outPackets(1); got != 6 {
		t.Errorf("policy 1 counted %d packets, want 6", got)
	}

	// A more specific policy takes over the cached flow.
	if err := l.SetPolicy(p2); err != nil {
		t.Fatal(err)
	}
	send(flowA, 1)
	if got1, got2 := outPackets(1), outPackets(2); got1 != 6 || got2 != 1 {
		t.Errorf("after adding policy 2: policies counted %d and %d packets, want 6 and 1", got1, got2)
	}
	// Without policies the cached flow matches nothing.
	for _, id := range []uint32{1, 2} {
		if err := l.DeletePolicy(id); err != nil {
			t.Fatal(err)
		}
	}
	send(flowA, 1)
	if got := flowPackets()[flowA]; got != 5 {
		t.Errorf("flow A has %d packets after the policies went, want 5", got)
	}
	// A flow cached as matching nothing matches a policy added later.
	if err := l.SetPolicy(p1); err != nil {
		t.Fatal(err)
	}
	send(flowA, 1)
	if got := outPackets(1); got != 1 {
		t.Errorf("re-added policy 1 counted %d packets, want 1", got)
	}
}

// TestFlowCacheDeletedSA covers the copy of the policy a cached flow keeps: once its outbound
// SA is deleted and the SA's counter index goes to another SA, the flow must not count there.
func TestFlowCacheDeletedSA(t *testing.T) {
	l := openLoader(t, Options{})
	onOneCPU(t)
	prog := l.Programs().TCEgress
	const spiA, spiB = 0xc0de00a1, 0xc0de00b1
	p := Policy{ID: 1, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")}, SAUp: true, OutSPI: spiA}
	if err := l.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	frame := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.ACK, nil, nil)
	send := func() {
		t.Helper()
		if ret, _ := run(t, prog, frame); ret != tcOK {
			t.Fatalf("verdict %d, want %d", ret, tcOK)
		}
	}
	send() // caches the flow with spiA's counter index
	if err := l.DeleteSA(Outbound, spiA); err != nil {
		t.Fatal(err)
	}
	if err := l.AddSA(Outbound, spiB); err != nil { // takes spiA's index
		t.Fatal(err)
	}
	send()
	c, err := l.SACounters(Outbound)
	if err != nil {
		t.Fatal(err)
	}
	if got := c[spiB].Packets; got != 0 {
		t.Errorf("SA %#x, added after the policy's SA was deleted, counted %d packets, want 0", spiB, got)
	}
	pc, err := l.PolicyCounters()
	if err != nil {
		t.Fatal(err)
	}
	if got := pc[1].Out.Packets; got != 2 {
		t.Errorf("policy 1 counted %d packets, want 2", got)
	}
}
