package metrics

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/espgw/espgw/datapath"
	espgwtestutil "github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// loaderSource adapts a real loader the way the daemon does: policy IDs and SPIs are named
// after connections and tunnels.
type loaderSource struct {
	l     *loader.Loader
	names map[uint32][2]string // policy ID -> connection, tunnel
	sas   map[uint32]uint32    // SPI -> policy ID
}

func (s *loaderSource) SAStats() ([]SAStat, error) {
	var out []SAStat
	for _, d := range []loader.Direction{loader.Inbound, loader.Outbound} {
		cs, err := s.l.SACounters(d)
		if err != nil {
			return nil, err
		}
		for spi, c := range cs {
			n := s.names[s.sas[spi]]
			out = append(out, SAStat{n[0], n[1], spi, d.String(), c.Bytes, c.Packets})
		}
	}
	return out, nil
}

func (s *loaderSource) PolicyStats() ([]PolicyStat, error) {
	pcs, err := s.l.PolicyCounters()
	if err != nil {
		return nil, err
	}
	var out []PolicyStat
	for id, c := range pcs {
		n := s.names[id]
		out = append(out, PolicyStat{n[0], n[1], c.SADownDrops, c.SADownPasses, c.MSSRewrites, c.Events})
	}
	return out, nil
}

func (s *loaderSource) FilterStats() (FilterStats, error) {
	c, err := s.l.XDPCounters()
	return FilterStats(c), err
}

func (s *loaderSource) TopFlows(n int) ([]FlowStat, error) {
	flows, err := s.l.TopFlows(n)
	if err != nil {
		return nil, err
	}
	var out []FlowStat
	for _, f := range flows {
		nm := s.names[f.PolicyID]
		out = append(out, FlowStat{nm[0], nm[1], f.Src, f.Dst, f.Proto, f.SrcPort, f.DstPort, f.Bytes, f.Packets})
	}
	return out, nil
}

func run(t *testing.T, prog *ebpf.Program, frame []byte) {
	t.Helper()
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorOnRealMaps pushes packets through the real programs and compares the export.
func TestCollectorOnRealMaps(t *testing.T) {
	espgwtestutil.RequireRoot(t) // loads BPF programs
	l, err := loader.Open(loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	for _, pol := range []loader.Policy{
		{ID: 1, Selector: datapath.Selector{Local: p("10.1.0.0/16"), Remote: p("10.2.0.0/16")}, SAUp: true, OutSPI: 0xc0000002, MSS: 1300},
		{ID: 2, Selector: datapath.Selector{Local: p("10.1.0.0/16"), Remote: p("10.3.0.0/16")}},
	} {
		if err := l.SetPolicy(pol); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AddSA(loader.Inbound, 0xc0000001); err != nil {
		t.Fatal(err)
	}
	src := &loaderSource{l: l,
		names: map[uint32][2]string{1: {"site-b", "lan"}, 2: {"site-c", "dmz"}},
		sas:   map[uint32]uint32{0xc0000001: 1, 0xc0000002: 1},
	}
	progs := l.Programs()
	syn := (pkttest.IPv4{Src: a("10.1.0.1"), Dst: a("10.2.0.1"), Proto: pkttest.ProtoTCP}).Frame(pkttest.TCP(40000, 443, pkttest.SYN, pkttest.MSS(1460), nil))
	toDown := (pkttest.IPv4{Src: a("10.1.0.1"), Dst: a("10.3.0.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(5000, 53, []byte("q")))
	esp := make([]byte, 100)
	binary.BigEndian.PutUint32(esp, 0xc0000001)
	espIn := (pkttest.IPv4{Src: a("198.51.100.2"), Dst: a("192.0.2.1"), Proto: pkttest.ProtoESP}).Frame(esp)
	binary.BigEndian.PutUint32(esp, 0x0bad0bad)
	espUnknown := (pkttest.IPv4{Src: a("198.51.100.2"), Dst: a("192.0.2.1"), Proto: pkttest.ProtoESP}).Frame(esp)
	ike := (pkttest.IPv4{Src: a("203.0.113.7"), Dst: a("192.0.2.1"), Proto: pkttest.ProtoUDP}).Frame(pkttest.UDP(500, 500, make([]byte, 28)))

	run(t, progs.TCEgress, syn)
	run(t, progs.TCEgress, syn)
	run(t, progs.TCEgress, toDown)
	run(t, progs.XDP, espIn)
	run(t, progs.XDP, espUnknown)
	run(t, progs.XDP, ike)

	c := NewCollector(src, src, 10)
	want := fmt.Sprintf(`
# HELP espgw_sa_bytes_total Bytes carried by an SA (inbound: ESP packets received, outbound: packets sent into it).
# TYPE espgw_sa_bytes_total counter
espgw_sa_bytes_total{connection="site-b",direction="in",spi="0xc0000001",tunnel="lan"} 120
espgw_sa_bytes_total{connection="site-b",direction="out",spi="0xc0000002",tunnel="lan"} %d
# HELP espgw_sa_packets_total Packets carried by an SA.
# TYPE espgw_sa_packets_total counter
espgw_sa_packets_total{connection="site-b",direction="in",spi="0xc0000001",tunnel="lan"} 1
espgw_sa_packets_total{connection="site-b",direction="out",spi="0xc0000002",tunnel="lan"} 2
# HELP espgw_policy_sa_down_drops_total Packets dropped because the tunnel's SA was not up (fail closed).
# TYPE espgw_policy_sa_down_drops_total counter
espgw_policy_sa_down_drops_total{connection="site-b",tunnel="lan"} 0
espgw_policy_sa_down_drops_total{connection="site-c",tunnel="dmz"} 1
# HELP espgw_policy_mss_rewrites_total TCP SYN and SYN-ACK segments whose MSS option was lowered.
# TYPE espgw_policy_mss_rewrites_total counter
espgw_policy_mss_rewrites_total{connection="site-b",tunnel="lan"} 2
espgw_policy_mss_rewrites_total{connection="site-c",tunnel="dmz"} 0
# HELP espgw_xdp_drops_total Packets dropped by the XDP filters, by reason (unknown_spi, non_peer).
# TYPE espgw_xdp_drops_total counter
espgw_xdp_drops_total{reason="non_peer"} 1
espgw_xdp_drops_total{reason="unknown_spi"} 1
# HELP espgw_top_flow_bytes Bytes of one of the top flows through a tunnel.
# TYPE espgw_top_flow_bytes gauge
espgw_top_flow_bytes{connection="site-b",dport="443",dst="10.2.0.1",proto="6",sport="40000",src="10.1.0.1",tunnel="lan"} %d
`, 2*(len(syn)-14), 2*(len(syn)-14))
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"espgw_sa_bytes_total", "espgw_sa_packets_total", "espgw_policy_sa_down_drops_total",
		"espgw_policy_mss_rewrites_total", "espgw_xdp_drops_total", "espgw_top_flow_bytes"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndLint(registryOf(t, c)); err != nil || len(n) != 0 {
		t.Errorf("metric lint: %v %v", n, err)
	}

	// And over HTTP, as Prometheus scrapes it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, slog.Default(), c) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `espgw_policy_ondemand_events_total{connection="site-c",tunnel="dmz"} 1`) {
		t.Errorf("/metrics lacks the on-demand event of site-c:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

type failing struct{}

func (failing) SAStats() ([]SAStat, error) { return nil, fmt.Errorf("xfrm: %w", os.ErrPermission) }

func TestCollectorSourceError(t *testing.T) {
	_, err := registryOf(t, NewCollector(failing{}, nil, 0)).Gather()
	if err == nil || !strings.Contains(err.Error(), "read SA counters") {
		t.Fatalf("scrape error %v, want it to name the SA counters", err)
	}
}
