package userspace

import (
	"net/netip"
	"testing"

	"github.com/espgw/espgw/datapath"
)

func TestSelectorMatch(t *testing.T) {
	tcp := append(icmpEcho(hostA, hostB)[:20:20], 0x30, 0x39, 0x00, 0x50) // ports 12345 -> 80
	tcp[9] = protoTCP
	frag := append([]byte(nil), tcp...)
	frag[6] = 0x00
	frag[7] = 0x10 // fragment offset 16: no ports
	tests := []struct {
		name    string
		pkt     []byte
		sel     datapath.Selector
		out, in bool // outbound match for A's selector, inbound match for B's view
	}{
		{"icmp any", icmpEcho(hostA, hostB), selA, true, false},
		{"tcp port 80", tcp, datapath.Selector{Local: selA.Local, Remote: selA.Remote, Proto: protoTCP, RemotePort: 80}, true, false},
		{"tcp port 81", tcp, datapath.Selector{Local: selA.Local, Remote: selA.Remote, Proto: protoTCP, RemotePort: 81}, false, false},
		{"udp only", tcp, datapath.Selector{Local: selA.Local, Remote: selA.Remote, Proto: protoUDP}, false, false},
		{"fragment has no ports", frag, datapath.Selector{Local: selA.Local, Remote: selA.Remote, RemotePort: 80}, false, false},
		{"inbound view", icmpEcho(hostA, hostB), selB, false, true},
		{"outside", icmpEcho(netip.MustParseAddr("10.99.0.1"), hostB), selB, false, false},
	}
	for _, tt := range tests {
		f, ok := parseFlow(tt.pkt)
		if !ok {
			t.Fatalf("%s: parseFlow failed", tt.name)
		}
		if got := outboundMatch(&tt.sel, &f); got != tt.out {
			t.Errorf("%s: outboundMatch = %v, want %v", tt.name, got, tt.out)
		}
		if got := inboundMatch(&tt.sel, &f); got != tt.in {
			t.Errorf("%s: inboundMatch = %v, want %v", tt.name, got, tt.in)
		}
	}
}

// FuzzParseFlow: decrypted inner packets come from the peer; parsing must never panic.
func FuzzParseFlow(f *testing.F) {
	f.Add(icmpEcho(hostA, hostB))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Add([]byte{0x4f})
	f.Fuzz(func(t *testing.T, p []byte) {
		fl, ok := parseFlow(p)
		if ok && !fl.src.IsValid() {
			t.Fatal("parsed flow without a source address")
		}
		outboundMatch(&selA, &fl)
		inboundMatch(&selB, &fl)
	})
}
