package ike

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
)

// lastError returns the newest recorded error of n, or "".
func lastError(n *node) string {
	errs := n.e.Status().Errors
	if len(errs) == 0 {
		return ""
	}
	return errs[len(errs)-1].Err
}

func TestPSKMismatch(t *testing.T) {
	for _, mode := range []model.Mode{model.ModeMain, model.ModeAggressive} {
		t.Run(string(mode), func(t *testing.T) {
			pc := pairConfig{mode: mode, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "right-key", pskB: "wrong-key"}
			ba, bb := bindtest.NewPair()
			ca, cb := connPair(t, pc)
			// A second, healthy connection between other addresses shows the engines keep serving.
			pc2 := pc
			pc2.pskB = pc.pskA
			ca2, cb2 := connPair(t, pc2)
			ca2.Name, cb2.Name = "other", "other"
			ca2.LocalAddress, ca2.RemoteAddress = netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")
			cb2.LocalAddress, cb2.RemoteAddress = ca2.RemoteAddress, ca2.LocalAddress
			a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca, ca2)
			b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb, cb2)

			err := a.e.Up(upCtx(t), "peer", "")
			if !errors.Is(err, ErrPSKMismatch) {
				t.Fatalf("initiator Up error = %v, want pre-shared key mismatch", err)
			}
			waitFor(t, "responder error", func() bool { return strings.Contains(lastError(b), "pre-shared key mismatch") })
			if !strings.Contains(lastError(a), "pre-shared key mismatch") {
				t.Errorf("initiator status error %q lacks pre-shared key mismatch", lastError(a))
			}
			if n := len(a.k.active()) + len(b.k.active()); n != 0 {
				t.Errorf("%d child SAs installed after PSK mismatch", n)
			}
			waitFor(t, "half-open SAs removed", func() bool {
				return len(a.e.Status().IKESAs) == 0 && len(b.e.Status().IKESAs) == 0
			})
			if err := a.e.Up(upCtx(t), "other", ""); err != nil {
				t.Fatalf("other connection: %v", err)
			}
			waitFor(t, "other child SA at responder", func() bool { return len(b.k.active()) == 1 })
		})
	}
}

func TestProposalMismatch(t *testing.T) {
	tests := []struct {
		name     string
		pc       pairConfig
		contains []string
	}{
		{"ike", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", ikeB: "aes256-sha256-modp2048", esp: "3des-sha1"},
			[]string{"no proposal chosen", "3des-sha1-modp1024", "aes256-sha256-modp2048"}},
		{"esp", pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", espB: "aes256gcm16-modp2048"},
			[]string{"no proposal chosen", "3des-sha1-modp1024", "aes256gcm16-modp2048"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.pc.pskA = "k"
			a, b := startPair(t, tt.pc)
			err := a.e.Up(upCtx(t), "peer", "")
			if err == nil {
				t.Fatal("Up succeeded with disjoint proposals")
			}
			if !strings.Contains(err.Error(), "NO-PROPOSAL-CHOSEN") && !strings.Contains(err.Error(), "no proposal chosen") {
				t.Errorf("initiator error %q does not say no proposal chosen", err)
			}
			waitFor(t, "responder error", func() bool { return lastError(b) != "" })
			for _, s := range tt.contains {
				if !strings.Contains(lastError(b), s) {
					t.Errorf("responder error %q lacks %q", lastError(b), s)
				}
			}
		})
	}
}

func TestProxyIDMismatch(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	cb.Tunnels[0].RemoteSubnets = []netip.Prefix{netip.MustParsePrefix("10.10.9.0/24")}
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	err := a.e.Up(upCtx(t), "peer", "")
	if !errors.Is(err, ErrIDMismatch) {
		t.Fatalf("Up error = %v, want identity mismatch (INVALID-ID-INFORMATION)", err)
	}
	waitFor(t, "responder error", func() bool { return lastError(b) != "" })
	for _, s := range []string{"10.10.0.1/32", "10.10.9.0/24", "10.20.0.0/24"} {
		if !strings.Contains(lastError(b), s) {
			t.Errorf("responder error %q lacks %q", lastError(b), s)
		}
	}
}

func TestPeerIDMismatch(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	cb.RemoteID = model.Identity{Kind: model.IDFQDN, Name: "gw.example"}
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb)
	err := a.e.Up(upCtx(t), "peer", "")
	if !errors.Is(err, ErrIDMismatch) {
		t.Fatalf("Up error = %v, want identity mismatch", err)
	}
	waitFor(t, "responder error", func() bool { return strings.Contains(lastError(b), `ID_FQDN "gw.example"`) })
}
