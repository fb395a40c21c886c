//go:build vmtest

package kernel

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/xfrm"
)

// transform is an ESP transform with its key sizes.
type transform struct {
	name        string // strongSwan keyword
	enc         datapath.Encryption
	encKeyLen   int // bytes, for GCM including the 4-byte salt
	integ       datapath.Integrity
	integKeyLen int
}

var transforms = []transform{
	{name: "3des-sha1", enc: datapath.Enc3DESCBC, encKeyLen: 24, integ: datapath.IntegHMACSHA1_96, integKeyLen: 20},
	{name: "aes256-sha256", enc: datapath.EncAESCBC, encKeyLen: 32, integ: datapath.IntegHMACSHA256_128, integKeyLen: 32},
	{name: "aes256gcm16", enc: datapath.EncAESGCM16, encKeyLen: 36},
}

const reqID = 7

// keys is the key material of one direction of a tunnel.
type keys struct{ enc, integ datapath.Key }

func newKeys(tb testing.TB, t transform) keys {
	tb.Helper()
	k := keys{enc: make(datapath.Key, t.encKeyLen)}
	if t.integKeyLen > 0 {
		k.integ = make(datapath.Key, t.integKeyLen)
	}
	if _, err := rand.Read(k.enc); err != nil {
		tb.Fatal(err)
	}
	if _, err := rand.Read(k.integ); err != nil {
		tb.Fatal(err)
	}
	return k
}

// tunnel is the static-key configuration of one a <-> b tunnel.
type tunnel struct {
	t        transform
	encap    bool
	lifetime datapath.Lifetime
	spiAB    uint32 // the SA a -> b (inbound at b)
	spiBA    uint32
	kAB, kBA keys
}

// sa is the SA from -> to, with the selector as seen from host me.
func (tn *tunnel) sa(from, to, me, peer *site, spi uint32, k keys) datapath.SA {
	sa := datapath.SA{
		SPI: spi, Src: from.outer, Dst: to.outer,
		Enc: tn.t.enc, EncKey: k.enc, Integ: tn.t.integ, IntegKey: k.integ,
		ReplayWindow: 32,
		Lifetime:     tn.lifetime,
		ReqID:        reqID,
		Selectors:    []datapath.Selector{{Local: me.protect, Remote: peer.protect}},
	}
	if tn.encap {
		sa.EncapSrcPort, sa.EncapDstPort = 4500, 4500
	}
	return sa
}

// pairAt is the SA pair site me installs.
func (tn *tunnel) pairAt(l *lab, me *site) datapath.SAPair {
	if me == &l.a {
		return datapath.SAPair{
			In:  tn.sa(&l.b, &l.a, &l.a, &l.b, tn.spiBA, tn.kBA),
			Out: tn.sa(&l.a, &l.b, &l.a, &l.b, tn.spiAB, tn.kAB),
		}
	}
	return datapath.SAPair{
		In:  tn.sa(&l.a, &l.b, &l.b, &l.a, tn.spiAB, tn.kAB),
		Out: tn.sa(&l.b, &l.a, &l.b, &l.a, tn.spiBA, tn.kBA),
	}
}

func policyAt(me, peer *site) datapath.Policy {
	return datapath.Policy{
		Selector:    datapath.Selector{Local: me.protect, Remote: peer.protect},
		TunnelLocal: me.outer, TunnelRemote: peer.outer,
		ReqID: reqID, Priority: 1000,
	}
}

// newXfrm opens the xfrm datapath in s's namespace; it is closed at cleanup (tests that check
// what Close leaves behind close it themselves first).
func newXfrm(tb testing.TB, s *site) *xfrm.Datapath {
	tb.Helper()
	d, err := xfrm.New(xfrm.Options{Netns: s.ns.NsHandle(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		tb.Fatalf("netns %s: xfrm.New: %v", s.ns.Name(), err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// install reserves each inbound SPI with AllocSPI (as quick mode does), then installs the SA
// pair and policy on both sites: the UPDSA-over-larval-state path of the xfrm datapath.
func (tn *tunnel) install(tb testing.TB, ctx context.Context, l *lab, da, db *xfrm.Datapath) {
	tb.Helper()
	tn.allocSPIs(tb, ctx, l, da, db)
	tn.installAt(tb, ctx, l, &l.a, da)
	tn.installAt(tb, ctx, l, &l.b, db)
}

func (tn *tunnel) allocSPIs(tb testing.TB, ctx context.Context, l *lab, da, db *xfrm.Datapath) {
	tb.Helper()
	var err error
	if tn.spiBA, err = da.AllocSPI(ctx, l.a.outer, l.b.outer); err != nil {
		tb.Fatalf("a: AllocSPI: %v", err)
	}
	if tn.spiAB, err = db.AllocSPI(ctx, l.b.outer, l.a.outer); err != nil {
		tb.Fatalf("b: AllocSPI: %v", err)
	}
}

// installAt installs the SA pair and the policy of site me.
func (tn *tunnel) installAt(tb testing.TB, ctx context.Context, l *lab, me *site, d *xfrm.Datapath) {
	tb.Helper()
	peer := &l.b
	if me == &l.b {
		peer = &l.a
	}
	if err := d.AddSAPair(ctx, tn.pairAt(l, me)); err != nil {
		tb.Fatalf("netns %s: AddSAPair %s encap=%v: %v", me.ns.Name(), tn.t.name, tn.encap, err)
	}
	if err := d.AddPolicy(ctx, policyAt(me, peer)); err != nil {
		tb.Fatalf("netns %s: AddPolicy: %v", me.ns.Name(), err)
	}
}

// TestXfrmStaticKeys carries pings between two namespaces over kernel ESP that
// datapath/xfrm programmed with static keys, for each transform, raw and in UDP.
func TestXfrmStaticKeys(t *testing.T) {
	const pings = 3
	for _, tr := range transforms {
		for _, encap := range []bool{false, true} {
			name := tr.name + "/raw"
			if encap {
				name = tr.name + "/udp4500"
			}
			t.Run(name, func(t *testing.T) {
				ctx := t.Context()
				l := newLab(t)
				if encap {
					listenESPInUDP(t, &l.a)
					listenESPInUDP(t, &l.b)
				}
				da, db := newXfrm(t, &l.a), newXfrm(t, &l.b)
				tn := &tunnel{t: tr, encap: encap, kAB: newKeys(t, tr), kBA: newKeys(t, tr)}
				tn.install(t, ctx, l, da, db)

				sent := uint64(pingOverESP(t, l, encap, pings))

				for _, c := range []struct {
					who  string
					d    *xfrm.Datapath
					s    *site
					dst  *site
					spi  uint32
					what string
				}{
					{"a", da, &l.a, &l.b, tn.spiAB, "out"}, {"a", da, &l.a, &l.a, tn.spiBA, "in"},
					{"b", db, &l.b, &l.b, tn.spiAB, "in"}, {"b", db, &l.b, &l.a, tn.spiBA, "out"},
				} {
					cnt, err := c.d.Counters(c.dst.outer, c.spi)
					if err != nil {
						t.Errorf("%s: Counters(%s, 0x%08x): %v", c.who, c.dst.outer, c.spi, err)
						continue
					}
					if cnt.Packets != sent || cnt.Bytes == 0 || cnt.AuthFailures != 0 || cnt.ReplayDrops != 0 {
						t.Errorf("%s %s SA 0x%08x: Counters = %+v, want %d packets (one per ping sent), bytes > 0, no failures", c.who, c.what, c.spi, cnt, sent)
					}
					if n := ipXfrmPackets(t, c.s.ns, c.spi); n != sent {
						t.Errorf("%s %s SA 0x%08x: ip -s xfrm state shows %d packets, want %d", c.who, c.what, c.spi, n, sent)
					}
				}

				closeLeavingNoXfrm(t, l, da, db)
			})
		}
	}
}

// waitEvent returns the first event of kind from d within timeout, failing the test otherwise.
// Events of other kinds are logged and skipped.
func waitEvent(tb testing.TB, d *xfrm.Datapath, kind datapath.EventKind, timeout time.Duration) datapath.Event {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-d.Events():
			if !ok {
				tb.Fatalf("events channel closed while waiting for event kind %d", kind)
			}
			if ev.Kind == kind {
				return ev
			}
			tb.Logf("skipping event %+v while waiting for kind %d", ev, kind)
		case <-deadline:
			tb.Fatalf("no event of kind %d within %v", kind, timeout)
		}
	}
}
