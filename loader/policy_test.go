package loader

import (
	"errors"
	"testing"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader/pkttest"
)

func TestSetPolicyRejects(t *testing.T) {
	l := openLoader(t, Options{})
	tests := []struct {
		name string
		sel  datapath.Selector
	}{
		{"IPv6", datapath.Selector{Local: pfx("2001:db8::/64"), Remote: pfx("10.2.0.0/16")}},
		{"unmasked", datapath.Selector{Local: pfx("10.1.0.1/16"), Remote: pfx("10.2.0.0/16")}},
		{"missing remote", datapath.Selector{Local: pfx("10.1.0.0/16")}},
		{"ports without TCP/UDP", datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16"), Proto: 1, RemotePort: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.SetPolicy(Policy{ID: 1, Selector: tt.sel}); err == nil {
				t.Fatal("SetPolicy accepted the selector")
			}
		})
	}
}

func TestPolicyLifecycle(t *testing.T) {
	l := openLoader(t, Options{})
	setupPolicies(t, l)
	prog := l.Programs().TCEgress
	udp := (pkttest.IPv4{Src: addr("10.1.5.1"), Dst: addr("10.2.0.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(1, 2, nil))
	matched := func() uint32 {
		t.Helper()
		before, _ := l.PolicyCounters()
		run(t, prog, udp)
		after, _ := l.PolicyCounters()
		for id, c := range after {
			if c.Out.Packets != before[id].Out.Packets {
				return id
			}
		}
		return 0
	}
	if got := matched(); got != 10 {
		t.Fatalf("matched policy %d, want 10 (more specific, lower priority value)", got)
	}
	if err := l.DeletePolicy(10); err != nil {
		t.Fatal(err)
	}
	if got := matched(); got != 7 {
		t.Fatalf("after deleting 10, matched policy %d, want 7", got)
	}
	if err := l.SetSAState(7, false, 0); err != nil {
		t.Fatal(err)
	}
	if ret, _ := run(t, prog, udp); ret != tcShot {
		t.Fatalf("verdict %d with the SA down, want drop", ret)
	}
	if err := l.DeletePolicy(7); err != nil {
		t.Fatal(err)
	}
	if got := matched(); got != 0 {
		t.Fatalf("after deleting 7, matched policy %d, want none", got)
	}
	if err := l.SetSAState(7, true, 1); err == nil {
		t.Fatal("SetSAState on a deleted policy succeeded")
	}
	// Fill every slot; one more must fail.
	for id := uint32(100); l.SetPolicy(Policy{ID: id, Selector: testPolicies[0].Selector}) == nil; id++ {
		if id > 100+MaxPolicies {
			t.Fatal("more policies than MaxPolicies accepted")
		}
	}
	err := l.SetPolicy(Policy{ID: 1 << 30, Selector: testPolicies[0].Selector})
	if !errors.Is(err, errNoSlot) {
		t.Fatalf("SetPolicy on a full table: %v, want errNoSlot", err)
	}
}
