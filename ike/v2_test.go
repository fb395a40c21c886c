package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/model"
)

// IKEv2SA records an IKEv2 SA's keys.
func (k *keyLog) IKEv2SA(x IKEv2Keys) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.v2 = append(k.v2, x)
}

// v2Pair is connPair speaking IKEv2 with IKE proposals ikeA (A) and ikeB (B).
func v2Pair(tb testing.TB, pc pairConfig, ikeA, ikeB string) (a, b model.Connection) {
	tb.Helper()
	pc.ike = "aes128-sha1-modp2048" // unused: the IKEv1 proposals
	a, b = connPair(tb, pc)
	for c, s := range map[*model.Connection]string{&a: ikeA, &b: ikeB} {
		ps, err := proposal.ParseIKEv2(s)
		if err != nil {
			tb.Fatal(err)
		}
		c.IKE.Version, c.IKE.V2Proposals, c.IKE.Mode = 2, ps, ""
		c.IKE.CookieThreshold = model.DefaultCookieThreshold
	}
	return a, b
}

// v2Sim starts two IKEv2 engines on a manual clock; tweak, if given, changes their
// connections first.
func v2Sim(t testing.TB, pc pairConfig, ikeA, ikeB string, tweak ...func(a, b *model.Connection)) (*sim, *node, *node, *keyLog, *keyLog) {
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := v2Pair(t, pc, ikeA, ikeB)
	for _, f := range tweak {
		f(&ca, &cb)
	}
	var kla, klb keyLog
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{Retransmit: pc.retransmit, KeyLog: &kla}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{Retransmit: pc.retransmit, KeyLog: &klb}, cb)
	return s, a, b, &kla, &klb
}

func TestIKEv2Establish(t *testing.T) {
	for _, tt := range []struct{ ike, esp string }{
		{"aes256-sha256-modp2048", "aes256gcm16-modp2048"},
		{"aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256"},
		{"aes128-sha1-modp2048", "aes128-sha256"},
	} {
		for _, natt := range []model.NATTraversal{model.NATTAuto, model.NATTForce} {
			t.Run(tt.ike+"/"+string(natt), func(t *testing.T) {
				s, a, b, kla, klb := v2Sim(t, pairConfig{esp: tt.esp, pskA: "secret", natt: natt, tunnels: 3}, tt.ike, tt.ike)
				s.up(a, b)
				ia, ib := a.k.active(), b.k.active()
				for _, x := range ia {
					var peer *ChildSA
					for _, y := range ib {
						if y.SPIIn == x.SPIOut {
							peer = y
						}
					}
					if peer == nil {
						t.Fatalf("no peer for child %+v", x)
					}
					checkMirrored(t, x, peer)
					wantEncap := uint16(0)
					if natt == model.NATTForce {
						wantEncap = 4500
					}
					if x.EncapLocalPort != wantEncap || peer.EncapRemotePort != wantEncap {
						t.Errorf("encapsulation ports %d/%d, want %d", x.EncapLocalPort, peer.EncapRemotePort, wantEncap)
					}
				}
				st := a.e.Status()
				if len(st.IKESAs) != 1 || st.IKESAs[0].Version != 2 || st.IKESAs[0].State != "ESTABLISHED" || len(st.IKESAs[0].ChildSAs) != 3 {
					t.Fatalf("status %+v", st)
				}
				if len(kla.v2) != 1 || len(klb.v2) != 1 || !bytes.Equal(kla.v2[0].EI, klb.v2[0].EI) || kla.v2[0].SPIr != klb.v2[0].SPIr {
					t.Errorf("IKEv2 keys exported: %+v / %+v", kla.v2, klb.v2)
				}
				// Liveness and Delete: B deletes one child, A follows; shutdown deletes the IKE SA.
				deleteOneChild(b)
				s.run("child deleted at A", time.Minute, func() bool { return len(a.k.active()) == 2 })
				b.e.shutdown()
				s.run("IKE SA deleted at A", time.Minute, func() bool { return len(a.e.Status().IKESAs) == 0 })
				if len(a.k.active()) != 0 {
					t.Errorf("A keeps %d child SAs after the peer deleted the IKE SA", len(a.k.active()))
				}
				if p := a.k.spiProblems(); len(p) > 0 {
					t.Error(p)
				}
			})
		}
	}
}

// TestIKEv2InvalidKE: the responder wants the second group the initiator proposes.
func TestIKEv2InvalidKE(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-modp2048, aes128-sha256-ecp256", "aes128-sha256-ecp256")
	s.up(a, b)
	if got := a.e.Status().IKESAs[0].Proposal; !strings.Contains(got, "ecp256") {
		t.Errorf("proposal %q, want the ecp256 one", got)
	}
}

func TestIKEv2Failures(t *testing.T) {
	for _, tt := range []struct {
		name         string
		pc           pairConfig
		ikeA, ikeB   string
		want         error
		wantA, wantB string
	}{
		{"psk", pairConfig{esp: "aes128gcm16", pskA: "one", pskB: "two"}, "aes128-sha256-modp2048", "aes128-sha256-modp2048",
			ErrPSKMismatch, "AUTHENTICATION_FAILED", "does not verify with our pre-shared key"},
		{"ike proposal", pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-modp2048", "aes256-sha384-ecp384",
			ErrNoProposalChosen, "aes128-sha256-prfsha256-modp2048", "aes256-sha384-prfsha384-ecp384"},
		{"esp proposal", pairConfig{esp: "aes128gcm16", espB: "aes256-sha256", pskA: "k"}, "aes128-sha256-modp2048", "aes128-sha256-modp2048",
			ErrNoProposalChosen, "ESP proposals for the CHILD_SA of t0 (NO_PROPOSAL_CHOSEN); ours in swanctl syntax: aes128gcm16", "aes256-sha256"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.pc.retransmit = RetransmitPolicy{Initial: time.Second, MaxTries: 3, Timeout: 10 * time.Second}
			s, a, b, _, _ := v2Sim(t, tt.pc, tt.ikeA, tt.ikeB)
			errc := make(chan error, 1)
			a.e.mu.Lock()
			ts, _ := a.e.lookupTunnels("peer", "")
			a.e.startTunnel(ts[0], errc)
			a.e.mu.Unlock()
			var err error
			s.run("failure", time.Minute, func() bool {
				select {
				case err = <-errc:
					return true
				default:
					return false
				}
			})
			s.advance(time.Second)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Up: %v, want %v", err, tt.want)
			}
			ea, eb := a.e.Status().Errors, b.e.Status().Errors
			if len(ea) == 0 || !strings.Contains(ea[len(ea)-1].Err, tt.wantA) {
				t.Errorf("A's errors %+v, want one with %q", ea, tt.wantA)
			}
			if len(eb) == 0 || !strings.Contains(eb[len(eb)-1].Err+eb[len(eb)-1].Theirs+eb[len(eb)-1].Ours, tt.wantB) {
				t.Errorf("B's errors %+v, want one with %q", eb, tt.wantB)
			}
			for _, n := range []*node{a, b} {
				if p := n.k.spiProblems(); len(p) > 0 {
					t.Error(p)
				}
			}
		})
	}
}

// TestIKEv2Liveness: a peer that goes silent is declared dead after dpd_timeout.
func TestIKEv2Liveness(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k", dpdDelay: 10 * time.Second, dpdTimeout: 30 * time.Second}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	s.up(a, b)
	// Liveness checks answered: a check goes out once nothing came for dpd_delay, so the
	// last message from the peer is never much older than that (doctor warns beyond it).
	for range 300 {
		s.advance(time.Second)
		st := a.e.Status()
		if len(st.IKESAs) != 1 {
			t.Fatalf("IKE SA gone while the peer answers liveness checks")
		}
		if idle := s.clk.Now().Sub(st.IKESAs[0].LastReceived); idle > pc.dpdDelay+time.Second {
			t.Fatalf("last message from the peer %v ago, with liveness checks every %v", idle, pc.dpdDelay)
		}
	}
	b.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	a.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	s.advance(2 * time.Minute)
	if n := len(a.e.Status().IKESAs); n != 0 {
		t.Errorf("%d IKE SAs after the peer went silent, want 0", n)
	}
}

// TestIKEv2ChildRekey: the initiator rekeys its child SAs (CREATE_CHILD_SA with N(REKEY_SA)
// and PFS) before their lifetime ends and deletes the old ones; both sides end with the new
// pairs only, hour after hour.
func TestIKEv2ChildRekey(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16-modp2048", pskA: "k", tunnels: 2, lifetimeA: 10 * time.Minute, lifetimeB: time.Hour}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	s.up(a, b)
	first := a.k.active()
	s.advance(3 * time.Hour)
	ia, ib := a.k.active(), b.k.active()
	if len(ia) != 2 || len(ib) != 2 {
		t.Fatalf("after 3 h: %d/%d child SAs, want 2/2", len(ia), len(ib))
	}
	for _, x := range ia {
		for _, f := range first {
			if x.SPIIn == f.SPIIn {
				t.Errorf("child SA %08x of the first negotiation still installed after 3 h of 10-minute lifetimes", x.SPIIn)
			}
		}
	}
	requireMirroredSets(t, ia, ib)
	for _, n := range []*node{a, b} {
		if p := n.k.spiProblems(); len(p) > 0 {
			t.Error(p)
		}
	}
	if st := a.e.Status(); len(st.IKESAs) != 1 {
		t.Errorf("%d IKE SAs, want 1", len(st.IKESAs))
	}
}

// TestIKEv2IKERekey: the original initiator replaces the IKE SA before ike.lifetime ends
// (CREATE_CHILD_SA, new SPIs and keys from the old SK_d); the child SAs stay installed and
// move to the new SA, the old SA is deleted on both sides, and the new one still works.
func TestIKEv2IKERekey(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2, dpdDelay: time.Minute}
	s, a, b, kla, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	s.up(a, b)
	children := a.k.active()
	first := a.e.Status().IKESAs[0]
	s.advance(150 * time.Minute) // lifetime 1 h: two rekeys
	for _, n := range []*node{a, b} {
		st := n.e.Status()
		if len(st.IKESAs) != 1 || st.IKESAs[0].State != "ESTABLISHED" || len(st.IKESAs[0].ChildSAs) != 2 {
			t.Fatalf("status after rekeys: %+v", st.IKESAs)
		}
		if st.IKESAs[0].InitiatorCookie == first.InitiatorCookie {
			t.Errorf("IKE SA %s not replaced after 150 min of a 1 h lifetime", first.InitiatorCookie)
		}
	}
	if got := a.k.active(); len(got) != 2 || got[0].SPIIn != children[0].SPIIn && got[0].SPIIn != children[1].SPIIn {
		t.Errorf("child SAs changed with the IKE SA rekey: %v, were %v", got, children)
	}
	if len(kla.v2) < 3 {
		t.Errorf("%d IKEv2 SAs exported, want 3 (the first and two rekeyed)", len(kla.v2))
	}
	// The new SA carries child SA work: delete a child on B, A follows.
	deleteOneChild(b)
	s.run("child deleted at A", time.Minute, func() bool { return len(a.k.active()) == 1 })
}

// TestIKEv2HalfOpen: spoofed IKE_SA_INITs from the peer's address cost bounded state: at
// most maxHalfOpenPerPeer half-open SAs at once, each gone after the retransmission timeout.
func TestIKEv2HalfOpen(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256")
	a.e.mu.Lock()
	ts, _ := a.e.lookupTunnels("peer", "")
	a.e.startV2(ts[0].conn)
	a.e.mu.Unlock()
	req := a.bind.Sent()[0]
	most := 0
	for i := range 100 {
		msg := bytes.Clone(req.Data)
		msg[0], msg[1] = byte(i), byte(i>>8) // another SPIi
		s.clk.Advance(time.Second)           // the DH budget refills
		b.e.mu.Lock()
		b.e.handlePacket(conn.Packet{Data: msg, Local: netip.AddrPortFrom(addrB, 500), Remote: req.Local})
		n := len(b.e.v2SAs)
		b.e.mu.Unlock()
		if n > maxHalfOpenPerPeer {
			t.Fatalf("%d half-open IKE SAs after %d IKE_SA_INITs, want at most %d", n, i+1, maxHalfOpenPerPeer)
		}
		most = max(most, n)
	}
	if most != maxHalfOpenPerPeer {
		t.Errorf("at most %d half-open IKE SAs, want the limit %d reached (the SAs were not created?)", most, maxHalfOpenPerPeer)
	}
	s.clk.Advance(time.Minute)
	b.e.mu.Lock()
	defer b.e.mu.Unlock()
	if n := len(b.e.v2SAs); n != 0 || b.e.halfOpen != 0 {
		t.Errorf("%d IKE SAs (%d half-open) a minute later, want none", n, b.e.halfOpen)
	}
}

// deleteOneChild deletes one of n's child SAs, telling the peer.
func deleteOneChild(n *node) {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	for _, ch := range n.e.children {
		n.e.deleteChild(ch, true)
		return
	}
}

// TestIKEv2RekeyCollision: both sides rekey the same child SA at once (RFC 7296 2.8.1); the
// redundant replacement is deleted and both sides end with one mirrored child SA.
func TestIKEv2RekeyCollision(t *testing.T) {
	for i := range 8 { // the nonces decide which side deletes: try several
		s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16-modp2048", pskA: "k"}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
		s.up(a, b)
		spiA, spiB := a.k.active()[0].SPIIn, b.k.active()[0].SPIIn
		a.e.Expire(spiA, false)
		b.e.Expire(spiB, false)
		s.advance(time.Minute)
		ia, ib := a.k.active(), b.k.active()
		if len(ia) != 1 || len(ib) != 1 {
			t.Fatalf("run %d: %d/%d child SAs after simultaneous rekeys, want 1/1", i, len(ia), len(ib))
		}
		checkMirrored(t, ia[0], ib[0])
		if ia[0].SPIIn == spiA || ib[0].SPIIn == spiB {
			t.Errorf("run %d: the old child SA survived", i)
		}
		for _, n := range []*node{a, b} {
			if p := n.k.spiProblems(); len(p) > 0 {
				t.Error(p)
			}
		}
	}
}

// TestIKEv2AcquireWhileResponding: traffic for a second tunnel at B while B answers A's
// IKE_SA_INIT waits for that IKE SA, then gets its child SA by CREATE_CHILD_SA under it,
// without another acquire.
func TestIKEv2AcquireWhileResponding(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16-modp2048", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	if !a.e.Acquire(a.e.Tunnels()[0].ReqID) {
		t.Error("A's acquire started nothing")
	}
	s.deliver() // B answers A's IKE_SA_INIT
	if !b.e.Acquire(b.e.Tunnels()[1].ReqID) {
		t.Error("B's acquire started nothing")
	}
	s.run("both tunnels up", time.Minute, func() bool { return len(a.k.active()) == 2 && len(b.k.active()) == 2 })
	if st := b.e.Status(); len(st.IKESAs) != 1 || st.IKESAs[0].Initiator {
		t.Errorf("B's IKE SAs %+v, want only the one A initiated", st.IKESAs)
	}
	// Traffic the tunnels' child SAs do not carry (narrowed away) asks again: nothing starts.
	for _, ti := range b.e.Tunnels() {
		if b.e.Acquire(ti.ReqID) {
			t.Errorf("acquire for %s with its child SA up started a negotiation", ti.Tunnel)
		}
	}
}

// TestIKEv2ResponderRekeysIKESA: the responder's ike.lifetime (1 h) is shorter than the
// initiator's (a day): the responder rekeys the IKE SA itself, at 90 to 95 % of its hour,
// and the child SAs move to the new SA untouched.
func TestIKEv2ResponderRekeysIKESA(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2, dpdDelay: time.Minute}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048", func(a, b *model.Connection) {
		a.IKE.Lifetime, b.IKE.Lifetime = 24*time.Hour, time.Hour
	})
	s.up(a, b)
	children := a.k.active()
	first := a.e.Status().IKESAs[0].InitiatorCookie
	start := s.clk.Now()
	s.run("IKE SA replaced on both sides", time.Hour, func() bool {
		sa, sb := a.e.Status().IKESAs, b.e.Status().IKESAs
		return len(sa) == 1 && len(sb) == 1 && sa[0].InitiatorCookie != first &&
			sa[0].InitiatorCookie == sb[0].InitiatorCookie && sa[0].State == "ESTABLISHED" && sb[0].State == "ESTABLISHED"
	})
	if got := s.elapsed(start); got < time.Hour*90/100 || got > time.Hour*95/100+DefaultRetransmit.Timeout {
		t.Errorf("IKE SA replaced after %v, want at 90 to 95 %% of the responder's hour", got)
	}
	for _, n := range []*node{a, b} {
		st := n.e.Status().IKESAs[0]
		if len(st.ChildSAs) != 2 {
			t.Errorf("the new IKE SA has %d child SAs, want 2", len(st.ChildSAs))
		}
	}
	if got := a.k.active(); len(got) != 2 || got[0].SPIIn != children[0].SPIIn && got[0].SPIIn != children[1].SPIIn {
		t.Errorf("child SAs changed with the IKE SA rekey: %v, were %v", got, children)
	}
}
