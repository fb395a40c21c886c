package doctor

import (
	"net/netip"
	"strings"
	"testing"
)

// procNetUDP is /proc/net/udp as Linux 6.x writes it, plus udp6 lines.
const procNetUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  131: 0100000A:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0          
 1234: 00000000:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0          
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   12: 00000000000000000000000000000000:01F4 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 888 2 0000000000000000 0
   13: 0000000000000000FFFF0000010200C0:1194 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0
   14: 0000000000000000FFFF0000010200C0:xyz 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0
   15: 0100000A:01F4 garbage
`

func TestParseProcNetUDP(t *testing.T) {
	got := parseProcNetUDP(strings.NewReader(procNetUDP))
	want := []udpSocket{
		{netip.MustParseAddrPort("10.0.0.1:500"), 12345},
		{netip.MustParseAddrPort("0.0.0.0:4500"), 777},
		{netip.MustParseAddrPort("[::]:500"), 888},
		{netip.MustParseAddrPort("192.0.2.1:4500"), 999}, // v4-mapped, unmapped
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %d sockets %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// FuzzParseProcNetUDP: any input parses without panicking, into sockets with a valid address.
func FuzzParseProcNetUDP(f *testing.F) {
	f.Add(procNetUDP)
	f.Add("  1: 0100000A:01F4 x x x x x x x 5\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, sk := range parseProcNetUDP(strings.NewReader(s)) {
			if !sk.Local.Addr().IsValid() {
				t.Fatalf("invalid address in %+v", sk)
			}
		}
	})
}
