package loader

import (
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader/pkttest"
)

// Policy ids of TestManyPolicies: pairID(i) for the MaxPolicies-2 subnet pairs, then a broad
// policy behind all of them and a TCP port policy in front of one.
const (
	scalePairs  = MaxPolicies - 2
	scaleBroad  = 1_000_000
	scalePort   = 1_000_001
	scalePortOf = 7 // the pair whose selectors the port policy shares
)

func pairID(i int) uint32 { return uint32(1000 + i) }

// addrAt returns base + n as an IPv4 address.
func addrAt(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// pairLocal and pairRemote are the selectors of pair i: a /28 of 10.64.0.0/16 and a /24 of
// 10.128.0.0/12, distinct for every pair.
func pairLocal(i int) netip.Prefix  { return netip.PrefixFrom(addrAt(addr("10.64.0.0"), 16*i), 28) }
func pairRemote(i int) netip.Prefix { return netip.PrefixFrom(addrAt(addr("10.128.0.0"), 256*i), 24) }

// TestManyPolicies fills every policy slot and classifies a sample of packets through
// BPF_PROG_TEST_RUN: each lands on the most specific policy that matches, a port policy wins
// over the pair it refines, traffic between two pairs' subnets falls to the broad policy, and
// deleting and re-adding pairs at full size keeps the rest classified.
func TestManyPolicies(t *testing.T) {
	l := openLoader(t, Options{EventInterval: time.Hour})
	prog := l.Programs().TCEgress
	policies := []Policy{{ID: scaleBroad, Priority: 1000, SAUp: true,
		Selector: datapath.Selector{Local: pfx("10.64.0.0/16"), Remote: pfx("10.128.0.0/12")}}}
	for i := range scalePairs {
		policies = append(policies, Policy{ID: pairID(i), Priority: 100, SAUp: true,
			Selector: datapath.Selector{Local: pairLocal(i), Remote: pairRemote(i)}})
	}
	policies = append(policies, Policy{ID: scalePort, Priority: 50, SAUp: true,
		Selector: datapath.Selector{Local: pairLocal(scalePortOf), Remote: pairRemote(scalePortOf), Proto: 6, RemotePort: 443}})
	start := time.Now()
	for _, p := range policies {
		if err := l.SetPolicy(p); err != nil {
			t.Fatalf("SetPolicy(%d): %v", p.ID, err)
		}
	}
	t.Logf("%d policies installed in %v", len(policies), time.Since(start))
	if err := l.SetPolicy(Policy{ID: 1, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")}}); err == nil {
		t.Fatal("SetPolicy accepted a policy beyond MaxPolicies")
	}

	type sample struct {
		local, remote netip.Addr
		dport         uint16
		want          uint32 // policy id; 0 = none
	}
	var samples []sample
	for i := 0; i < scalePairs; i += 61 {
		samples = append(samples,
			sample{addrAt(pairLocal(i).Addr(), 1+i%14), addrAt(pairRemote(i).Addr(), 1+i%250), 80, pairID(i)},
			// Another pair's remote subnet: only the broad policy contains both.
			sample{pairLocal(i).Addr(), pairRemote((i + 1) % scalePairs).Addr(), 80, scaleBroad})
	}
	samples = append(samples,
		sample{pairLocal(scalePairs - 1).Addr(), pairRemote(scalePairs - 1).Addr(), 80, pairID(scalePairs - 1)},
		sample{pairLocal(scalePortOf).Addr(), pairRemote(scalePortOf).Addr(), 443, scalePort},
		sample{pairLocal(scalePortOf).Addr(), pairRemote(scalePortOf).Addr(), 80, pairID(scalePortOf)},
		sample{addr("10.65.0.1"), pairRemote(3).Addr(), 80, 0}, // local outside every selector
		sample{pairLocal(3).Addr(), addr("10.2.0.1"), 80, 0},   // remote outside every selector
		sample{pairLocal(3).Addr(), addr("10.200.0.1"), 80, 0}, // outside the broad /12
	)
	check := func(step string, deleted map[uint32]bool) {
		t.Helper()
		before, err := l.PolicyCounters()
		if err != nil {
			t.Fatal(err)
		}
		want := make(map[uint32]uint64)
		for _, s := range samples {
			id := s.want
			if deleted[id] {
				id = scaleBroad
			}
			if id != 0 {
				want[id]++
			}
			frame := (pkttest.IPv4{Src: s.local, Dst: s.remote, Proto: pkttest.ProtoTCP}).Frame(
				pkttest.TCP(40000, s.dport, pkttest.ACK, nil, nil))
			if ret, _ := run(t, prog, frame); ret != tcOK {
				t.Errorf("%s: %v -> %v:%d: verdict %d, want %d", step, s.local, s.remote, s.dport, ret, tcOK)
			}
		}
		after, err := l.PolicyCounters()
		if err != nil {
			t.Fatal(err)
		}
		for id, c := range after {
			if got := c.Out.Packets - before[id].Out.Packets; got != want[id] {
				t.Errorf("%s: policy %d counted %d packets, want %d", step, id, got, want[id])
			}
		}
	}
	check("all installed", nil)

	deleted := map[uint32]bool{pairID(0): true, pairID(61): true, scalePort: true}
	for id := range deleted {
		if err := l.DeletePolicy(id); err != nil {
			t.Fatal(err)
		}
	}
	// The port policy's packets now fall to the pair it refined, not to the broad policy.
	for i, s := range samples {
		if s.want == scalePort {
			samples[i].want = pairID(scalePortOf)
		}
	}
	check("after deleting", deleted)
	for _, p := range policies {
		if p.ID != scalePort && deleted[p.ID] {
			if err := l.SetPolicy(p); err != nil {
				t.Fatalf("re-add %d: %v", p.ID, err)
			}
		}
	}
	check("after re-adding", nil)
}

// TestOverlappingPortPolicies covers the bound on the policies one selector pair leaves to the
// protocol and port checks: one more is refused and leaves the maps as they were.
func TestOverlappingPortPolicies(t *testing.T) {
	l := openLoader(t, Options{})
	sel := datapath.Selector{Local: pfx("10.1.0.0/24"), Remote: pfx("10.2.0.0/24"), Proto: 6}
	var c tcCandidates
	for i := range len(c.Slot) {
		sel.RemotePort = uint16(1000 + i)
		if err := l.SetPolicy(Policy{ID: uint32(1 + i), Priority: 10, Selector: sel, SAUp: true}); err != nil {
			t.Fatalf("SetPolicy(%d): %v", 1+i, err)
		}
	}
	sel.RemotePort = 443
	if err := l.SetPolicy(Policy{ID: 100, Priority: 10, Selector: sel, SAUp: true}); err == nil {
		t.Fatalf("SetPolicy accepted policy %d beyond %d overlapping port policies", 100, len(c.Slot))
	}
	if _, ok := l.policies.slots[100]; ok {
		t.Fatal("the refused policy holds a slot")
	}
	// A policy without ports ends the list: everything behind it is unreachable anyway.
	if err := l.SetPolicy(Policy{ID: 200, Priority: 1, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")}, SAUp: true}); err != nil {
		t.Fatalf("SetPolicy of a wildcard policy in front: %v", err)
	}
	frame := tcpFrame("10.1.0.1", "10.2.0.1", 40000, 1003, pkttest.ACK, nil, nil)
	before, _ := l.PolicyCounters()
	run(t, l.Programs().TCEgress, frame)
	after, _ := l.PolicyCounters()
	if got := after[200].Out.Packets - before[200].Out.Packets; got != 1 {
		t.Fatalf("wildcard policy with the lowest priority value counted %d packets, want 1", got)
	}
}
