package control

import (
	"net/netip"
	"testing"
)

func TestStatusConnection(t *testing.T) {
	st := &Status{
		Datapath: "xfrm", EBPF: EBPFStatus{Loaded: true},
		IKESAs:   []IKESA{{Connection: "megatelecom"}, {Connection: "partner", Peer: netip.MustParseAddrPort("203.0.113.9:4500")}},
		IPsecSAs: []IPsecSA{{Connection: "megatelecom", Tunnel: "api"}},
		Tunnels:  []TunnelState{{Connection: "megatelecom", Tunnel: "api"}, {Connection: "partner", Tunnel: "db"}},
	}
	got, ok := st.Connection("partner")
	if !ok || got.Datapath != "xfrm" || !got.EBPF.Loaded || len(got.IKESAs) != 1 || got.IKESAs[0].Peer.Port() != 4500 ||
		len(got.IPsecSAs) != 0 || len(got.Tunnels) != 1 || got.Tunnels[0].Tunnel != "db" {
		t.Fatalf("Connection(partner) = %+v, %v; want its IKE SA and tunnel db with the datapath and eBPF lines", got, ok)
	}
	if _, ok := st.Connection("nobody"); ok {
		t.Fatal("Connection(nobody) found a connection")
	}
}
