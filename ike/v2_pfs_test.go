package ike

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// startTunnels starts every tunnel of n, in order (the first comes with IKE_AUTH), and runs
// until each reported its outcome.
func startTunnels(t *testing.T, s *sim, n *node) []error {
	t.Helper()
	n.e.mu.Lock()
	ts, _ := n.e.lookupTunnels("peer", "")
	errcs := make([]chan error, len(ts))
	for i, tn := range ts {
		errcs[i] = make(chan error, 1)
		n.e.startTunnel(tn, errcs[i])
	}
	n.e.mu.Unlock()
	errs := make([]error, len(ts))
	for i, c := range errcs {
		s.run("tunnel outcome", time.Minute, func() bool {
			select {
			case errs[i] = <-c:
				return true
			default:
				return false
			}
		})
	}
	return errs
}

// newestError is n's newest recorded error, failing the test if there is none.
func newestError(t *testing.T, n *node) ConnError {
	t.Helper()
	errs := n.e.Status().Errors
	if len(errs) == 0 {
		t.Fatal("no error recorded")
	}
	return errs[len(errs)-1]
}

// TestIKEv2PFSRefused: B's tunnels ask for PFS (modp2048), A's do not. The first child SA
// comes with IKE_AUTH, which has no KE for anyone; A's CREATE_CHILD_SA for the second tunnel
// and its rekey of the first carry no KE, and B refuses both with NO_PROPOSAL_CHOSEN, naming
// both sides' proposals in swanctl syntax, and keeps the child SA it has.
func TestIKEv2PFSRefused(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", espB: "aes128gcm16-modp2048", pskA: "k", tunnels: 2},
		"aes128-sha256-modp2048", "aes128-sha256-modp2048")
	errs := startTunnels(t, s, a)
	if errs[0] != nil || !errors.Is(errs[1], ErrNoProposalChosen) {
		t.Fatalf("tunnels: %v; want the IKE_AUTH child up, the CREATE_CHILD_SA one refused with NO_PROPOSAL_CHOSEN", errs)
	}
	requirePFSError(t, newestError(t, b))

	before := b.k.active()
	if len(before) != 1 {
		t.Fatalf("B has %d child SAs, want the IKE_AUTH one", len(before))
	}
	b.e.mu.Lock()
	b.e.errs = nil
	b.e.mu.Unlock()
	a.e.Expire(a.k.active()[0].SPIIn, false) // A rekeys it, without KE
	s.advance(time.Minute)
	requirePFSError(t, newestError(t, b))
	if after := b.k.active(); len(after) != 1 || after[0].SPIIn != before[0].SPIIn {
		t.Errorf("B's child SAs after the refused rekey: %v, want the old one %08x only", after, before[0].SPIIn)
	}
}

// requirePFSError checks B's record of a refused CREATE_CHILD_SA without KE.
func requirePFSError(t *testing.T, e ConnError) {
	t.Helper()
	if e.Ours != "aes128gcm16-modp2048" || e.Theirs != "esp:aes128gcm16" || !strings.Contains(e.Err, "without the PFS our ESP proposals ask for (peer sent no KE payload)") {
		t.Errorf("B's error %+v: want ours aes128gcm16-modp2048, theirs esp:aes128gcm16, and why", e)
	}
}

// TestIKEv2PFSOtherGroup: A offers ecp256 and modp2048 with a KE of ecp256, B accepts only
// modp2048: B answers INVALID_KE_PAYLOAD naming modp2048 rather than computing with ecp256,
// and A retries with a KE of modp2048, which B accepts; the same when A rekeys.
func TestIKEv2PFSOtherGroup(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16-ecp256, aes128gcm16-modp2048", espB: "aes128gcm16-modp2048", pskA: "k", tunnels: 2},
		"aes128-sha256-modp2048", "aes128-sha256-modp2048")
	if errs := startTunnels(t, s, a); errs[0] != nil || errs[1] != nil {
		t.Fatalf("tunnels: %v; want both up, the second after one INVALID_KE_PAYLOAD", errs)
	}
	if e := newestError(t, b); !strings.Contains(e.Err, "peer sent a KE of ecp256, we chose its proposal esp:aes128gcm16-modp2048 (ours: aes128gcm16-modp2048): asking for modp2048") {
		t.Errorf("B's error %q: want the groups of both sides", e.Err)
	}
	requirePFSChild(t, a, b, 2, 1) // the IKE_AUTH one has no KE
	for _, ch := range a.k.active() {
		a.e.Expire(ch.SPIIn, false)
	}
	s.advance(time.Minute)
	requirePFSChild(t, a, b, 2, 2)
}

// requirePFSChild checks that A and B have n mirrored child SAs, withPFS of them made with
// a modp2048 exchange.
func requirePFSChild(t *testing.T, a, b *node, n, withPFS int) {
	t.Helper()
	ia, ib := a.k.active(), b.k.active()
	if len(ia) != n || len(ib) != n {
		t.Fatalf("%d/%d child SAs, want %d/%d", len(ia), len(ib), n, n)
	}
	pfs := 0
	for _, x := range ia {
		i := slices.IndexFunc(ib, func(y *ChildSA) bool { return y.SPIIn == x.SPIOut })
		if i < 0 {
			t.Fatalf("A's child SA %08x/%08x has no peer at B", x.SPIIn, x.SPIOut)
		}
		checkMirrored(t, x, ib[i])
		if x.Proposal.Group == 14 {
			pfs++
		}
	}
	if pfs != withPFS {
		t.Errorf("%d child SAs with modp2048 PFS, want %d", pfs, withPFS)
	}
}
