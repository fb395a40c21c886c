package ebpfdp

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/datapathtest"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// tc verdicts (linux/pkt_cls.h).
const (
	tcActOK   = 0
	tcActShot = 2
)

// defaults are the programs' settings of a configuration without an ebpf: section.
var defaults = Options{WhenDown: loader.ActionDrop, MSSClamp: true, PathMTU: 1500}

var (
	localAddr  = netip.MustParseAddr("192.0.2.1")
	remoteAddr = netip.MustParseAddr("192.0.2.2")
)

// backend records, at each DeleteSA, what the tc egress program did with a probe packet
// at that moment: the guard must close before the SA goes.
type backend struct {
	*datapathtest.Datapath
	probe   func() uint32
	verdict map[uint32]uint32 // by SPI, at DeleteSA
}

func (b *backend) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	b.verdict[spi] = b.probe()
	return b.Datapath.DeleteSA(ctx, dst, spi)
}

// open wraps a datapathtest backend whose SPIs count from spiBase+1 with a loaded (not
// attached) loader.
func open(t *testing.T, spiBase uint32, lopts loader.Options) (*Datapath, *backend, *loader.Loader) {
	t.Helper()
	return openAs(t, spiBase, lopts, func(b *backend) datapath.Datapath { return b })
}

// openAs is open with the backend as as makes it.
func openAs(t *testing.T, spiBase uint32, lopts loader.Options, as func(*backend) datapath.Datapath) (*Datapath, *backend, *loader.Loader) {
	t.Helper()
	testutil.RequireRoot(t) // loads BPF programs
	l, err := loader.Open(lopts)
	if err != nil {
		t.Fatalf("loader.Open: %v", err)
	}
	b := &backend{Datapath: datapathtest.New(spiBase), verdict: make(map[uint32]uint32)}
	d, err := New(as(b), l, defaults, nil)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d, b, l
}

// syn is a TCP SYN (MSS 1460) from the tests' local subnet 10.10.1.0/24 to their remote
// 10.20.0.0/24.
var syn = pkttest.IPv4{Src: netip.MustParseAddr("10.10.1.5"), Dst: netip.MustParseAddr("10.20.0.7"), Proto: pkttest.ProtoTCP}.
	Frame(pkttest.TCP(40000, 443, pkttest.SYN, pkttest.MSS(1460), nil))

// egress runs syn through l's tc egress program: its verdict and the packet as it left.
func egress(t *testing.T, l *loader.Loader) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: slices.Clone(syn), DataOut: make([]byte, len(syn)+64)}
	verdict, err := l.Programs().TCEgress.Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return verdict, opts.DataOut[:len(syn)]
}

// pair is a tunnel's SA pair between localAddr and remoteAddr.
func pair(reqID, in, out uint32, enc datapath.Encryption, integ datapath.Integrity, natt bool) datapath.SAPair {
	p := datapath.SAPair{
		In:  datapath.SA{SPI: in, Src: remoteAddr, Dst: localAddr, Enc: enc, Integ: integ, ReqID: reqID},
		Out: datapath.SA{SPI: out, Src: localAddr, Dst: remoteAddr, Enc: enc, Integ: integ, ReqID: reqID},
	}
	if natt {
		p.In.EncapSrcPort, p.In.EncapDstPort, p.Out.EncapSrcPort, p.Out.EncapDstPort = 4500, 4500, 4500, 4500
	}
	return p
}

// deletePair deletes both SAs of p, inbound first, as the daemon does.
func deletePair(ctx context.Context, d *Datapath, p datapath.SAPair) error {
	return errors.Join(d.DeleteSA(ctx, p.In.Dst, p.In.SPI), d.DeleteSA(ctx, p.Out.Dst, p.Out.SPI))
}

// TestSALifecycle follows one tunnel through the decorator and the loaded (not attached)
// tc program: dropped while down, clamped per transform while up, through a rekey in which
// the old SA goes after the new one came, down again (closed before the backend deletes
// the SA), and passed with when_sa_down: pass. The backend holds what it was asked to.
func TestSALifecycle(t *testing.T) {
	ctx := context.Background()
	d, b, l := open(t, 0xff, loader.Options{})

	const reqID = 5
	local, remote := netip.MustParsePrefix("10.10.1.0/24"), netip.MustParsePrefix("10.20.0.0/24")
	pol := datapath.Policy{Selector: datapath.Selector{Local: local, Remote: remote}, ReqID: reqID, Priority: 1000}
	run := func() (uint32, []byte) { return egress(t, l) }
	b.probe = func() uint32 { v, _ := run(); return v }
	a := pair(reqID, 0x100, 0x200, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, false)
	c := pair(reqID, 0x101, 0x201, datapath.EncAESGCM16, datapath.IntegNone, true)
	alloc := func(want uint32) error {
		spi, err := d.AllocSPI(ctx, localAddr, remoteAddr)
		if err == nil && spi != want {
			err = errors.New("AllocSPI did not pass the backend's SPI on")
		}
		return err
	}
	mss := func(natt bool, enc datapath.Encryption, integ datapath.Integrity) uint16 {
		m, err := loader.ClampMSS(defaults.PathMTU, natt, enc, integ)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pass := defaults
	pass.WhenDown = loader.ActionPass

	steps := []struct {
		name    string
		do      func() error
		verdict uint32
		mss     uint16   // of the SYN that passed
		in, out []uint32 // SPIs counted
	}{
		{"policy, SA down", func() error { return d.AddPolicy(ctx, pol) }, tcActShot, 0, nil, nil},
		{"SPI allocated", func() error { return alloc(a.In.SPI) }, tcActShot, 0, []uint32{0x100}, nil},
		{"SA up, 3DES", func() error { return d.AddSAPair(ctx, a) },
			tcActOK, mss(false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96), []uint32{0x100}, []uint32{0x200}},
		{"policy replaced: new selector, same tunnel", func() error {
			old := pol
			pol.Selector.Remote = netip.MustParsePrefix("10.20.0.0/16")
			return errors.Join(d.AddPolicy(ctx, pol), d.DeletePolicy(ctx, old))
		}, tcActOK, mss(false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96), []uint32{0x100}, []uint32{0x200}},
		{"rekeyed, AES-GCM with NAT-T", func() error { return errors.Join(alloc(c.In.SPI), d.AddSAPair(ctx, c)) },
			tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x100, 0x101}, []uint32{0x200, 0x201}},
		{"SPI allocated and released", func() error {
			return errors.Join(alloc(0x102), d.DeleteSA(ctx, localAddr, 0x102))
		}, tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x100, 0x101}, []uint32{0x200, 0x201}},
		{"old SA deleted", func() error { return deletePair(ctx, d, a) },
			tcActOK, mss(true, datapath.EncAESGCM16, datapath.IntegNone), []uint32{0x101}, []uint32{0x201}},
		{"last SA deleted", func() error { return deletePair(ctx, d, c) }, tcActShot, 0, []uint32{}, []uint32{}},
		{"when_sa_down: pass", func() error { return d.Reconfigure(pass) }, tcActOK, 1460, nil, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		verdict, out := run()
		if verdict != s.verdict {
			t.Errorf("%s: verdict %d, want %d", s.name, verdict, s.verdict)
		}
		if s.verdict == tcActOK {
			got, _, err := pkttest.MSSOf(out)
			if err != nil || got != s.mss {
				t.Errorf("%s: MSS %d (%v), want %d", s.name, got, err, s.mss)
			}
		}
		for _, dir := range []struct {
			dir  loader.Direction
			want []uint32
		}{{loader.Inbound, s.in}, {loader.Outbound, s.out}} {
			if dir.want == nil {
				continue
			}
			cs, err := l.SACounters(dir.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(cs)); !slices.Equal(got, dir.want) {
				t.Errorf("%s: %v SAs counted %x, want %x", s.name, dir.dir, got, dir.want)
			}
		}
	}
	// The old SA went while the new one carried the tunnel; the last one after the guard closed.
	if v := b.verdict[a.Out.SPI]; v != tcActOK {
		t.Errorf("verdict when the rekeyed-away SA %08x was deleted: %d, want %d", a.Out.SPI, v, tcActOK)
	}
	if v := b.verdict[c.Out.SPI]; v != tcActShot {
		t.Errorf("verdict when the last SA %08x was deleted: %d, want %d (fail closed first)", c.Out.SPI, v, tcActShot)
	}
	sas, policies, _ := b.Snapshot()
	if len(sas) != 0 || len(b.ReservedSPIs()) != 0 || !slices.Equal(policies, []datapath.Policy{pol}) {
		t.Errorf("backend holds SAs %v, reserved SPIs %x, policies %v; want none, none, [%v]", sas, b.ReservedSPIs(), policies, pol)
	}
	pc, err := d.TunnelCounters()
	if err != nil {
		t.Fatal(err)
	}
	// The replacing policy's counters, from the step that installed it: 4 steps and the
	// probes at the 5 DeleteSA calls after it, 4 of them while the tunnel was up.
	if c := pc[reqID]; c.SADownDrops != 2 || c.SADownPasses != 1 || c.MSSRewrites != 8 || c.PacketsOut != 8 {
		t.Errorf("tunnel counters = %+v, want 2 drops, 1 pass, 8 clamped SYNs sent", c)
	}
}

// TestNewestSADeletedFirst: two SA pairs of one tunnel, and the newer one goes first — the
// loser of a simultaneous negotiation (both ends start: always) is often the one installed
// last. The tunnel stays up on the older pair, with its MSS clamp, and its SPI is the one
// the classifier counts; only deleting that one too closes the tunnel.
func TestNewestSADeletedFirst(t *testing.T) {
	ctx := context.Background()
	d, b, l := open(t, 0xff, loader.Options{})
	const reqID = 7
	pol := datapath.Policy{Selector: datapath.Selector{Local: netip.MustParsePrefix("10.10.1.0/24"),
		Remote: netip.MustParsePrefix("10.20.0.0/24")}, ReqID: reqID, Priority: 1000}
	run := func() (uint32, uint16) {
		verdict, out := egress(t, l)
		mss, _, _ := pkttest.MSSOf(out)
		return verdict, mss
	}
	b.probe = func() uint32 { v, _ := run(); return v }
	kept := pair(reqID, 0x100, 0x200, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, false)
	dropped := pair(reqID, 0x101, 0x201, datapath.EncAESGCM16, datapath.IntegNone, true)
	if err := errors.Join(d.AddPolicy(ctx, pol), d.AddSAPair(ctx, kept), d.AddSAPair(ctx, dropped), deletePair(ctx, d, dropped)); err != nil {
		t.Fatal(err)
	}
	want, err := loader.ClampMSS(defaults.PathMTU, false, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96)
	if err != nil {
		t.Fatal(err)
	}
	if v, mss := run(); v != tcActOK || mss != want {
		t.Errorf("after the newer pair went: verdict %d, MSS %d; want %d (the older pair carries the tunnel), %d", v, mss, tcActOK, want)
	}
	if v := b.verdict[dropped.Out.SPI]; v != tcActOK {
		t.Errorf("verdict while the newer SA %08x was deleted: %d, want %d", dropped.Out.SPI, v, tcActOK)
	}
	if err := deletePair(ctx, d, kept); err != nil {
		t.Fatal(err)
	}
	if v, _ := run(); v != tcActShot || b.verdict[kept.Out.SPI] != tcActShot {
		t.Errorf("after the last pair went: verdict %d (%d at its DeleteSA), want %d", v, b.verdict[kept.Out.SPI], tcActShot)
	}
}

// TestEvents: Events delivers the backend's events and turns the classifier's reports of
// traffic for a tunnel whose SA is down into acquires for the tunnel's reqid, with the
// packet's addresses.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	d, b, l := open(t, 0x1000, loader.Options{})
	pol := datapath.Policy{Selector: datapath.Selector{Local: netip.MustParsePrefix("10.10.1.0/24"),
		Remote: netip.MustParsePrefix("10.20.0.0/24")}, ReqID: 9, Priority: 1000}
	if err := d.AddPolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	expire := datapath.Event{Kind: datapath.EventSoftExpire, SPI: 0x1234, Dst: remoteAddr}
	b.Send(expire)
	frame := pkttest.IPv4{Src: netip.MustParseAddr("10.10.1.5"), Dst: netip.MustParseAddr("10.20.0.7"), Proto: pkttest.ProtoUDP}.
		Frame(pkttest.UDP(1, 2, nil))
	if _, err := l.Programs().TCEgress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	want := []datapath.Event{expire, {Kind: datapath.EventAcquire, ReqID: pol.ReqID,
		PacketSrc: netip.MustParseAddr("10.10.1.5"), PacketDst: netip.MustParseAddr("10.20.0.7")}}
	var got []datapath.Event
	for len(got) < len(want) {
		select {
		case ev := <-d.Events():
			got = append(got, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("events %+v, want %+v", got, want)
		}
	}
	slices.SortFunc(got, func(a, b datapath.Event) int { return int(b.Kind) - int(a.Kind) })
	if !slices.Equal(got, want) {
		t.Errorf("events %+v, want %+v", got, want)
	}
}

// TestSeveralPolicies: a tunnel with two subnets per side has four policies with its reqid,
// each its own classifier slot; its one SA pair opens all four for the tc program and its
// deletion closes them all.
func TestSeveralPolicies(t *testing.T) {
	ctx := context.Background()
	d, b, l := open(t, 0xff, loader.Options{})
	b.probe = func() uint32 { return 0 }
	const reqID = 7
	type combo struct{ src, dst string }
	var combos []combo
	for _, local := range []string{"10.10.1", "10.11.0"} {
		for _, remote := range []string{"10.20.0", "10.21.0"} {
			pol := datapath.Policy{Selector: datapath.Selector{Local: netip.MustParsePrefix(local + ".0/24"), Remote: netip.MustParsePrefix(remote + ".0/24")},
				ReqID: reqID, Priority: 1000}
			if err := d.AddPolicy(ctx, pol); err != nil {
				t.Fatal(err)
			}
			combos = append(combos, combo{local + ".5", remote + ".7"})
		}
	}
	verdicts := func() []uint32 {
		var out []uint32
		for _, c := range combos {
			syn := pkttest.IPv4{Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), Proto: pkttest.ProtoTCP}.
				Frame(pkttest.TCP(40000, 443, pkttest.SYN, pkttest.MSS(1460), nil))
			opts := ebpf.RunOptions{Data: syn, DataOut: make([]byte, len(syn)+64)}
			v, err := l.Programs().TCEgress.Run(&opts)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	shot, ok := slices.Repeat([]uint32{tcActShot}, 4), slices.Repeat([]uint32{tcActOK}, 4)
	if v := verdicts(); !slices.Equal(v, shot) {
		t.Errorf("SA down: verdicts %v, want %v", v, shot)
	}
	p := pair(reqID, 0x100, 0x200, datapath.EncAESGCM16, datapath.IntegNone, true)
	if err := d.AddSAPair(ctx, p); err != nil {
		t.Fatal(err)
	}
	if v := verdicts(); !slices.Equal(v, ok) {
		t.Errorf("SA up: verdicts %v, want %v", v, ok)
	}
	if err := deletePair(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	if v := verdicts(); !slices.Equal(v, shot) {
		t.Errorf("SA deleted: verdicts %v, want %v", v, shot)
	}
}
