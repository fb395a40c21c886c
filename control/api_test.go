package control

import (
	"net/netip"
	"testing"
)

func TestStatusConnection(t *testing.T) {
	st := &Status{
		Datapath: "xfrm", EBPF: EBPFStatus{Loaded: true},
		IKESAs:   []IKESA{{Connection: "MegaTelecom"}, {Connection: "Partner", Peer: netip.MustParseAddrPort("203.0.113.9:4500")}},
		IPsecSAs: []IPsecSA{{Connection: "MegaTelecom", Tunnel: "API"}},
		Tunnels:  []TunnelState{{Connection: "MegaTelecom", Tunnel: "API"}, {Connection: "Partner", Tunnel: "db"}},
	}
	got, err := st.Connection("partner") // case does not matter while it is unambiguous
	if err != nil || got.Datapath != "xfrm" || !got.EBPF.Loaded || len(got.IKESAs) != 1 || got.IKESAs[0].Peer.Port() != 4500 ||
		len(got.IPsecSAs) != 0 || len(got.Tunnels) != 1 || got.Tunnels[0].Tunnel != "db" {
		t.Fatalf("Connection(partner) = %+v, %v; want its IKE SA and tunnel db with the datapath and eBPF lines", got, err)
	}
	if _, err := st.Connection("nobody"); err == nil || err.Error() != `no connection "nobody" (configured: MegaTelecom, Partner)` {
		t.Fatalf("Connection(nobody) = %v, want no connection", err)
	}
}
