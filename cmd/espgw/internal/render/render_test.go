package render

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/espgw/espgw/control"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var renderNow = time.Date(2018, 10, 2, 10, 39, 21, 0, time.UTC)

// seedStatus is the seed article's tunnel, up, plus a second connection failing.
var seedStatus = &control.Status{
	Datapath: "xfrm",
	IKESAs: []control.IKESA{{
		Connection: "megatelecom", Local: netip.MustParseAddrPort("192.0.2.1:500"), Peer: netip.MustParseAddrPort("192.0.2.2:500"),
		InitiatorCookie: "356a7e11111a93f0", ResponderCookie: "367111530375c065", State: "ESTABLISHED",
		Initiator: true, Mode: "main", Algorithms: "3des-sha1-modp1024",
		Established: renderNow.Add(-4597 * time.Second), AgeSeconds: 4597,
	}, {
		Connection: "partner", Local: netip.MustParseAddrPort("192.0.2.1:4500"), Peer: netip.MustParseAddrPort("203.0.113.9:4500"),
		InitiatorCookie: "0102030405060708", ResponderCookie: "0000000000000000", State: "MM3_SENT",
		Initiator: true, Mode: "aggressive", AgeSeconds: 3, NATT: true,
	}, {
		Connection: "modern", Version: 2, Mode: "ikev2", Local: netip.MustParseAddrPort("192.0.2.1:4500"), Peer: netip.MustParseAddrPort("198.51.100.7:4500"),
		InitiatorCookie: "6b78d4266cbed733", ResponderCookie: "6bdec56bbba7e9f0", State: "ESTABLISHED",
		Algorithms: "aes128gcm16-prfsha256-ecp256", Established: renderNow.Add(-60 * time.Second), AgeSeconds: 60, NATT: true,
	}},
	IPsecSAs: []control.IPsecSA{{
		Connection: "megatelecom", Tunnel: "api", ReqID: 1, SPIIn: "800a8fc7", SPIOut: "02b804f8",
		Algorithms: "esp 3des-sha1 pfs modp1024", Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		LocalSelector: "10.10.1.1/32", RemoteSelector: "10.20.0.0/24",
		BytesIn: 84, BytesOut: 168, PacketsIn: 1, PacketsOut: 2,
		Established: renderNow.Add(-4597 * time.Second), LifetimeSeconds: 28800, RemainingSeconds: 24203,
	}, {
		Connection: "megatelecom", Tunnel: "web", ReqID: 2, SPIIn: "c0ffee01", SPIOut: "0badf00d",
		Algorithms: "esp aes256gcm16", Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		LocalSelector: "10.10.1.0/24[6/443]", RemoteSelector: "10.20.0.0/24",
		LifetimeSeconds: 3600, RemainingSeconds: 12, EncapLocalPort: 4500, EncapRemotePort: 4500,
		CountersError: "no such SA",
	}},
	Tunnels: []control.TunnelState{
		{Connection: "megatelecom", Tunnel: "api", State: control.TunnelUp, Start: "on-demand", LocalSelector: "10.10.1.1/32", RemoteSelector: "10.20.0.0/24"},
		{Connection: "megatelecom", Tunnel: "web", State: control.TunnelUp, Start: "always", LocalSelector: "10.10.1.0/24[6/443]", RemoteSelector: "10.20.0.0/24",
			OneSidedSince: renderNow.Add(-130 * time.Second)},
		{Connection: "partner", Tunnel: "db", State: control.TunnelConnecting, Start: "manual", LocalSelector: "10.10.2.0/24", RemoteSelector: "10.40.0.0/16",
			LastError: "pre-shared key mismatch: MM5 from 203.0.113.9:4500 does not decrypt", LastErrorTime: renderNow.Add(-95 * time.Second)},
		{Connection: "partner", Tunnel: "mq", State: control.TunnelDown, Start: "always", LocalSelector: "10.10.2.0/24", RemoteSelector: "10.41.0.0/16",
			LastError: "quick mode: NO-PROPOSAL-CHOSEN from the peer", Failures: 3, RetryAt: renderNow.Add(38 * time.Second)},
	},
}

func TestRenderStatus(t *testing.T) {
	var b bytes.Buffer
	if err := Status(&b, seedStatus, renderNow); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", b.Bytes())
}

func TestRenderStatusEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := Status(&b, &control.Status{Datapath: "userspace", EBPF: control.EBPFStatus{Reason: "ebpf.enabled is false"}}, renderNow); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-empty.golden", b.Bytes())
}

// TestRenderStatusEBPF adds the eBPF programs' counters to the seed's status.
func TestRenderStatusEBPF(t *testing.T) {
	st := *seedStatus
	st.Datapath = "userspace"
	st.EBPF = control.EBPFStatus{Loaded: true, Attached: []string{"tc egress espgw0", "tc ingress espgw0", "xdp eth0"},
		UnknownSPIDrops: 17, NonPeerDrops: 4, NonPeerPasses: 1}
	st.Tunnels = slices.Clone(st.Tunnels)
	st.Tunnels[0].Policy = &control.PolicyCounters{PacketsOut: 2, BytesOut: 168, PacketsIn: 1, BytesIn: 84,
		SADownDrops: 1, Events: 1, MSS: 1195, MSSRewrites: 2}
	st.Tunnels[1].Policy = &control.PolicyCounters{SADownPasses: 5}
	var b bytes.Buffer
	if err := Status(&b, &st, renderNow); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-ebpf.golden", b.Bytes())
}

func TestRenderFlows(t *testing.T) {
	policies := []control.Flow{
		{Connection: "megatelecom", Tunnel: "api", ReqID: 1, LocalSelector: "10.10.1.1/32", RemoteSelector: "10.20.0.0/24",
			Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2")},
		{Connection: "partner", Tunnel: "db", ReqID: 17, LocalSelector: "10.10.2.0/24[17/53]", RemoteSelector: "10.40.0.0/16",
			Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("203.0.113.9")},
	}
	top := []control.TopFlow{
		{Connection: "megatelecom", Tunnel: "api", ReqID: 1, Src: netip.MustParseAddr("10.10.1.1"), Dst: netip.MustParseAddr("10.20.0.7"),
			Proto: 6, SrcPort: 40112, DstPort: 443, Packets: 1200, Bytes: 1_650_000},
		{Connection: "megatelecom", Tunnel: "api", ReqID: 1, Src: netip.MustParseAddr("10.20.0.7"), Dst: netip.MustParseAddr("10.10.1.1"),
			Proto: 1, Packets: 3, Bytes: 252},
		{ReqID: 9, Src: netip.MustParseAddr("10.10.2.1"), Dst: netip.MustParseAddr("10.40.0.1"), Proto: 17, SrcPort: 5353, DstPort: 53, Packets: 1, Bytes: 60},
	}
	var b bytes.Buffer
	for _, r := range []*control.FlowReport{
		{TopFlows: top, Policies: policies},
		{TopFlows: []control.TopFlow{}},
		{EBPFOff: "load tc programs: operation not permitted", Policies: policies[:1]},
	} {
		if err := Flows(&b, r); err != nil {
			t.Fatal(err)
		}
		b.WriteString("----\n")
	}
	golden(t, "flows.golden", b.Bytes())
}
