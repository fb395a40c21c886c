package daemon

import (
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// tc verdicts (linux/pkt_cls.h).
const (
	tcActOK   = 0
	tcActShot = 2
)

// TestEBPFSALifecycle follows one tunnel's policy through the loaded (not attached) tc
// program: dropped while down, clamped per transform while up, through a rekey in which the
// old SA goes after the new one came, down again, and passed with when_sa_down: pass.
func TestEBPFSALifecycle(t *testing.T) {
	testutil.RequireRoot(t) // loads BPF programs
	l, err := loader.Open(loader.Options{})
	if err != nil {
		t.Fatalf("loader.Open: %v", err)
	}
	e := newEBPFProgs(l, config.DefaultEBPF, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	})

	const reqID = 5
	local, remote := netip.MustParsePrefix("10.10.1.0/24"), netip.MustParsePrefix("10.20.0.0/24")
	pol := datapath.Policy{Selector: datapath.Selector{Local: local, Remote: remote}, ReqID: reqID, Priority: policyPriority}
	syn := pkttest.IPv4{Src: netip.MustParseAddr("10.10.1.5"), Dst: netip.MustParseAddr("10.20.0.7"), Proto: pkttest.ProtoTCP}.
		Frame(pkttest.TCP(40000, 443, pkttest.SYN, pkttest.MSS(1460), nil))
	child := func(in, out uint32, p proposal.ESP, natt bool) *ike.ChildSA {
		sa := &ike.ChildSA{Connection: "mega", Tunnel: "api", ReqID: reqID, SPIIn: in, SPIOut: out, Proposal: p}
		if natt {
			sa.EncapLocalPort, sa.EncapRemotePort = 4500, 4500
		}
		return sa
	}
	a := child(0x100, 0x200, proposal.ESP{Encryption: proposal.Enc3DES, Integrity: proposal.HashSHA1}, false)
	b := child(0x101, 0x201, proposal.ESP{Encryption: proposal.EncAESGCM16, KeyBits: 256}, true)
	mss := func(natt bool, enc datapath.Encryption, integ datapath.Integrity) uint16 {
		m, err := loader.ClampMSS(config.DefaultPathMTU, natt, enc, integ)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	passCfg := config.DefaultEBPF
	passCfg.WhenSADown = config.SADownPass

	steps := []struct {
		name    string
		do      func() error
		verdict uint32
		mss     uint16   // of the SYN that passed
		in, out []uint32 // SPIs counted
	}{
		{"policy, SA down", func() error { return e.setPolicy(pol, ike.TunnelInfo{Connection: "mega", Tunnel: "api"}) },
			tcActShot, 0, nil, nil},
		{"SPI allocated", func() error { e.allocSPI(a.SPIIn); return nil }, tcActShot, 0, []uint32{0x100}, nil},
		{"SA up, 3DES", func() error { e.saInstalled(a); return nil },
			tcActOK, mss(false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96), []uint32{0x100}, []uint32{0x200}},
		{"policy replaced: new selector, same tunnel", func() error {
			old := pol
			pol.Selector.Remote = netip.MustParsePrefix("10.20.0.0/16")
			return errors.Join(e.setPolicy(pol, ike.TunnelInfo{Connection: "mega", Tunnel: "api"}), e.deletePolicy(old))
		}, tcActOK, mss(false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96), []uint32{0x100}, []uint32{0x200}},
		{"rekeyed, AES-GCM with NAT-T", func() error { e.allocSPI(b.SPIIn); e.saInstalled(b); return nil },
			tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x100, 0x101}, []uint32{0x200, 0x201}},
		{"SPI allocated and released; releasing an installed one does nothing", func() error {
			e.allocSPI(0x102)
			e.releaseSPI(0x102)
			e.releaseSPI(b.SPIIn)
			return nil
		}, tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x100, 0x101}, []uint32{0x200, 0x201}},
		{"old SA deleted", func() error { e.saDeleted(a); return nil },
			tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x101}, []uint32{0x201}},
		{"last SA deleted", func() error { e.saDeleted(b); return nil }, tcActShot, 0, []uint32{}, []uint32{}},
		{"when_sa_down: pass", func() error { return e.reconfigure(&config.Config{EBPF: passCfg}) }, tcActOK, 1460, nil, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		opts := ebpf.RunOptions{Data: slices.Clone(syn), DataOut: make([]byte, len(syn)+64)}
		verdict, err := l.Programs().TCEgress.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		if verdict != s.verdict {
			t.Errorf("%s: verdict %d, want %d", s.name, verdict, s.verdict)
		}
		if s.verdict == tcActOK {
			got, _, err := pkttest.MSSOf(opts.DataOut[:len(syn)])
			if err != nil || got != s.mss {
				t.Errorf("%s: MSS %d (%v), want %d", s.name, got, err, s.mss)
			}
		}
		for _, d := range []struct {
			dir  loader.Direction
			want []uint32
		}{{loader.Inbound, s.in}, {loader.Outbound, s.out}} {
			if d.want == nil {
				continue
			}
			cs, err := l.SACounters(d.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(cs)); !slices.Equal(got, d.want) {
				t.Errorf("%s: %v SAs counted %x, want %x", s.name, d.dir, got, d.want)
			}
		}
	}
	pc, err := e.policyCounters()
	if err != nil {
		t.Fatal(err)
	}
	// The replacing policy's counters, from the step that installed it.
	if c := pc[reqID]; c.conn != "mega" || c.SADownDrops != 1 || c.SADownPasses != 1 || c.MSSRewrites != 4 || c.PacketsOut != 4 {
		t.Errorf("policy counters = %+v, want 1 drop, 1 pass, 4 clamped SYNs sent", c)
	}
}
