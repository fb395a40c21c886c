package ike

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/proposal"
)

// fakeKernel records what the engine installs; it stands in for the datapath.
type fakeKernel struct {
	mu        sync.Mutex
	nextSPI   uint32
	allocated []uint32 // by AllocSPI
	released  []uint32 // by ReleaseSPI
	installed []*ChildSA
	deleted   []*ChildSA
	changed   chan struct{}
}

func newFakeKernel(base uint32) *fakeKernel {
	return &fakeKernel{nextSPI: base, changed: make(chan struct{}, 1)}
}

func (k *fakeKernel) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextSPI++
	k.allocated = append(k.allocated, k.nextSPI)
	return k.nextSPI, nil
}

func (k *fakeKernel) ReleaseSPI(ctx context.Context, local, remote netip.Addr, spi uint32) error {
	k.mu.Lock()
	k.released = append(k.released, spi)
	k.mu.Unlock()
	k.signal()
	return nil
}

func (k *fakeKernel) InstallChildSA(ctx context.Context, sa *ChildSA) error {
	return k.record(&k.installed, sa)
}

func (k *fakeKernel) DeleteChildSA(ctx context.Context, sa *ChildSA) error {
	return k.record(&k.deleted, sa)
}

// record appends a copy of sa to list: the engine may change or zero sa afterwards.
func (k *fakeKernel) record(list *[]*ChildSA, sa *ChildSA) error {
	k.mu.Lock()
	c := *sa
	*list = append(*list, &c)
	k.mu.Unlock()
	k.signal()
	return nil
}

func (k *fakeKernel) signal() {
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

// active returns the installed child SAs not deleted since.
func (k *fakeKernel) active() []*ChildSA {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*ChildSA
	for _, in := range k.installed {
		gone := false
		for _, d := range k.deleted {
			gone = gone || d.SPIIn == in.SPIIn
		}
		if !gone {
			out = append(out, in)
		}
	}
	return out
}

// waitFor waits until cond holds, re-checking on every kernel change and engine event.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func mustIKE(tb testing.TB, s string) []proposal.IKE {
	tb.Helper()
	p, err := proposal.ParseIKE(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func mustESP(tb testing.TB, s string) []proposal.ESP {
	tb.Helper()
	p, err := proposal.ParseESP(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// pairConfig describes both ends of a test connection.
type pairConfig struct {
	mode       model.Mode
	ike, esp   string
	espB       string // responder's ESP proposals if different
	ikeB       string
	pskA, pskB string
	natt       model.NATTraversal
	lifetimeA  time.Duration
	lifetimeB  time.Duration
	tunnels    int
	dpdDelay   time.Duration
	dpdTimeout time.Duration
	retransmit RetransmitPolicy
}

// connPair returns mirrored connection configs for A (192.0.2.1) and B (192.0.2.2).
func connPair(tb testing.TB, pc pairConfig) (a, b model.Connection) {
	tb.Helper()
	if pc.ikeB == "" {
		pc.ikeB = pc.ike
	}
	if pc.espB == "" {
		pc.espB = pc.esp
	}
	if pc.pskB == "" {
		pc.pskB = pc.pskA
	}
	if pc.tunnels == 0 {
		pc.tunnels = 1
	}
	mk := func(local, remote netip.Addr, ike, esp, psk string, life time.Duration, localNet, remoteNet string) model.Connection {
		c := model.Connection{
			Name: "peer", LocalAddress: local, RemoteAddress: remote, PSK: model.Secret(psk),
			IKE: model.IKE{Mode: pc.mode, Proposals: mustIKE(tb, ike), Lifetime: time.Hour, NATTraversal: cmp.Or(pc.natt, model.NATTAuto),
				DPDDelay: pc.dpdDelay, DPDTimeout: pc.dpdTimeout},
		}
		for i := range pc.tunnels {
			c.Tunnels = append(c.Tunnels, model.Tunnel{
				Name:          fmt.Sprintf("t%d", i),
				LocalSubnets:  []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf(localNet, i))},
				RemoteSubnets: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf(remoteNet, i))},
				Proposals:     mustESP(tb, esp), Lifetime: life, Start: model.StartManual,
			})
		}
		return c
	}
	a = mk(addrA, addrB, pc.ike, pc.esp, pc.pskA, pc.lifetimeA, "10.10.%d.1/32", "10.20.%d.0/24")
	b = mk(addrB, addrA, pc.ikeB, pc.espB, pc.pskB, pc.lifetimeB, "10.20.%d.0/24", "10.10.%d.1/32")
	return a, b
}

// node is one engine under test.
type node struct {
	e      *Engine
	k      *fakeKernel
	bind   *bindtest.Bind
	cancel context.CancelFunc
	done   chan struct{}
}

func testLogger(tb testing.TB, name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

func startNode(tb testing.TB, name string, b *bindtest.Bind, spiBase uint32, rp RetransmitPolicy, conns ...model.Connection) *node {
	tb.Helper()
	k := newFakeKernel(spiBase)
	if rp.Initial == 0 {
		rp = RetransmitPolicy{Initial: 50 * time.Millisecond, MaxTries: 5, Timeout: 3 * time.Second, Linger: 3 * time.Second}
	}
	e := New(Options{Logger: testLogger(tb, name), Bind: b, Kernel: k, Retransmit: rp})
	if err := e.Configure(conns); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{e: e, k: k, bind: b, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		e.Run(ctx)
	}()
	tb.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

// startPair runs two engines connected back to back.
func startPair(tb testing.TB, pc pairConfig) (a, b *node) {
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(tb, pc)
	a = startNode(tb, "A", ba, 0xa0000000, pc.retransmit, ca)
	b = startNode(tb, "B", bb, 0xb0000000, pc.retransmit, cb)
	return a, b
}

func upCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// checkMirrored verifies that two child SAs are the two ends of one tunnel.
func checkMirrored(tb testing.TB, x, y *ChildSA) {
	tb.Helper()
	if x.SPIIn != y.SPIOut || x.SPIOut != y.SPIIn {
		tb.Errorf("SPIs not mirrored: %08x/%08x vs %08x/%08x", x.SPIIn, x.SPIOut, y.SPIIn, y.SPIOut)
	}
	if !bytes.Equal(x.EncKeyIn, y.EncKeyOut) || !bytes.Equal(x.EncKeyOut, y.EncKeyIn) ||
		!bytes.Equal(x.IntegKeyIn, y.IntegKeyOut) || !bytes.Equal(x.IntegKeyOut, y.IntegKeyIn) {
		tb.Errorf("keys not mirrored")
	}
	if bytes.Equal(x.EncKeyIn, x.EncKeyOut) {
		tb.Errorf("inbound and outbound keys are equal")
	}
	if len(x.EncKeyIn) != x.Proposal.EncKeyLen() || len(x.IntegKeyIn) != x.Proposal.IntegKeyLen() {
		tb.Errorf("key lengths %d/%d, want %d/%d", len(x.EncKeyIn), len(x.IntegKeyIn), x.Proposal.EncKeyLen(), x.Proposal.IntegKeyLen())
	}
	if x.Proposal != y.Proposal || !slices.Equal(x.LocalTS, y.RemoteTS) || !slices.Equal(x.RemoteTS, y.LocalTS) {
		tb.Errorf("proposal/selectors differ: %v %v %v / %v %v %v", x.Proposal, x.LocalTS, x.RemoteTS, y.Proposal, y.LocalTS, y.RemoteTS)
	}
	if x.Initiator == y.Initiator {
		tb.Errorf("both ends claim Initiator=%v", x.Initiator)
	}
}

func TestEstablish(t *testing.T) {
	tests := []struct {
		name string
		pc   pairConfig
	}{
		{"main 3des-sha1-modp1024 pfs", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024"}},
		{"main 3des-sha1-modp1024 no pfs", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1"}},
		{"main aes256-sha256-modp2048", pairConfig{mode: model.ModeMain, ike: "aes256-sha256-modp2048", esp: "aes256-sha256-modp2048"}},
		{"main aes256gcm16", pairConfig{mode: model.ModeMain, ike: "aes256-sha256-modp2048", esp: "aes256gcm16-modp2048"}},
		{"main ecp256", pairConfig{mode: model.ModeMain, ike: "aes128-sha256-ecp256", esp: "aes128gcm16-ecp256"}},
		{"aggressive 3des", pairConfig{mode: model.ModeAggressive, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024"}},
		{"aggressive aes256gcm16 no pfs", pairConfig{mode: model.ModeAggressive, ike: "aes256-sha256-modp2048", esp: "aes256gcm16"}},
		{"main nat-t forced", pairConfig{mode: model.ModeMain, ike: "aes256-sha256-modp2048", esp: "aes256gcm16-modp2048", natt: model.NATTForce}},
		{"aggressive nat-t forced", pairConfig{mode: model.ModeAggressive, ike: "aes256-sha256-modp2048", esp: "aes256gcm16-modp2048", natt: model.NATTForce}},
		{"main nat-t off", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", natt: model.NATTOff}},
		{"two tunnels", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", tunnels: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.pc.pskA = "secret-0123456789"
			a, b := startPair(t, tt.pc)
			if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
				t.Fatalf("Up: %v", err)
			}
			n := max(tt.pc.tunnels, 1)
			waitFor(t, "responder child SAs", func() bool { return len(b.k.active()) == n })
			ia, ib := a.k.active(), b.k.active()
			if len(ia) != n {
				t.Fatalf("initiator has %d child SAs, want %d", len(ia), n)
			}
			for i := range ia {
				var peer *ChildSA
				for _, c := range ib {
					if c.Tunnel == ia[i].Tunnel {
						peer = c
					}
				}
				if peer == nil {
					t.Fatalf("responder lacks tunnel %s", ia[i].Tunnel)
				}
				checkMirrored(t, ia[i], peer)
				wantEncap := uint16(0)
				if tt.pc.natt == model.NATTForce {
					wantEncap = 4500
				}
				if ia[i].EncapLocalPort != wantEncap || ia[i].EncapRemotePort != wantEncap || peer.EncapLocalPort != wantEncap {
					t.Errorf("encap ports %d/%d, want %d", ia[i].EncapLocalPort, ia[i].EncapRemotePort, wantEncap)
				}
			}
			st := a.e.Status()
			if len(st.IKESAs) != 1 || st.IKESAs[0].State != "ESTABLISHED" || len(st.IKESAs[0].ChildSAs) != n {
				t.Errorf("status: %+v", st)
			}
			if got := st.IKESAs[0].NATDetected; got != (tt.pc.natt == model.NATTForce) {
				t.Errorf("NATDetected = %v", got)
			}
		})
	}
}

// keyLog records what the engine exports for Wireshark.
type keyLog struct {
	mu     sync.Mutex
	ike    map[[8]byte][]byte
	childs []*ChildSA
	v2     []IKEv2Keys
}

func (k *keyLog) IKESA(icookie [8]byte, encKey []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ike == nil {
		k.ike = make(map[[8]byte][]byte)
	}
	k.ike[icookie] = append([]byte(nil), encKey...)
}

func (k *keyLog) ChildSA(sa *ChildSA) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := *sa
	k.childs = append(k.childs, &c)
}

func TestKeyLogAndIdentities(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "aes256-sha1-modp1024", esp: "aes128-sha256", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	ca.LocalID = model.Identity{Kind: model.IDFQDN, Name: "a.example"}
	cb.RemoteID = ca.LocalID
	cb.LocalID = model.Identity{Kind: model.IDUserFQDN, Name: "ops@b.example"}
	ca.RemoteID = cb.LocalID
	var kla, klb keyLog
	mk := func(name string, b *bindtest.Bind, base uint32, kl *keyLog, c model.Connection) *node {
		k := newFakeKernel(base)
		e := New(Options{Logger: testLogger(t, name), Bind: b, Kernel: k, KeyLog: kl,
			Retransmit: RetransmitPolicy{Initial: 50 * time.Millisecond, MaxTries: 5, Timeout: 3 * time.Second}})
		if err := e.Configure([]model.Connection{c}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{e: e, k: k, bind: b, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(n.done); e.Run(ctx) }()
		t.Cleanup(n.stop)
		return n
	}
	a := mk("A", ba, 0xa0000000, &kla, ca)
	b := mk("B", bb, 0xb0000000, &klb, cb)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	kla.mu.Lock()
	klb.mu.Lock()
	defer kla.mu.Unlock()
	defer klb.mu.Unlock()
	if len(kla.ike) != 1 || len(klb.ike) != 1 {
		t.Fatalf("IKE keys exported: %d/%d, want 1/1", len(kla.ike), len(klb.ike))
	}
	for c, ka := range kla.ike {
		if kb := klb.ike[c]; len(ka) != 32 || !bytes.Equal(ka, kb) {
			t.Errorf("phase-1 keys differ or have length %d, want 32", len(ka))
		}
	}
	if len(kla.childs) != 1 || len(klb.childs) != 1 {
		t.Fatalf("child SAs exported: %d/%d", len(kla.childs), len(klb.childs))
	}
	checkMirrored(t, kla.childs[0], klb.childs[0])
}
