package ike

import (
	"net/netip"
	"testing"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// informationalsSent counts the informational messages (Delete, notify, DPD) b sent.
func informationalsSent(b *bindtest.Bind) int {
	n := 0
	for _, p := range b.Sent() {
		if h, err := isakmp.ParseHeader(p.Data); err == nil && h.Exchange == isakmp.ExchangeInformational {
			n++
		}
	}
	return n
}

func reqIDs(e *Engine) map[string]uint32 {
	m := make(map[string]uint32)
	for _, ti := range e.Tunnels() {
		m[ti.Connection+"/"+ti.Tunnel] = ti.ReqID
	}
	return m
}

func TestConfigureDiff(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", tunnels: 2}
	ba, bb := bindtest.NewPair()
	ca2, cb2 := connPair(t, pc) // both tunnels
	ca1, cb1 := ca2, cb2
	ca1.Tunnels, cb1.Tunnels = ca2.Tunnels[:1], cb2.Tunnels[:1]
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca1)
	b := startNode(t, "B", bb, 0xb0000000, RetransmitPolicy{}, cb1)
	if err := a.e.Up(upCtx(t), "peer", "t0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "t0 at responder", func() bool { return len(b.k.active()) == 1 })
	first, firstB := *a.k.active()[0], *b.k.active()[0]
	ikeBefore := a.e.Status().IKESAs[0].InitiatorCookie
	idsBefore := reqIDs(a.e)
	infoA, infoB := informationalsSent(ba), informationalsSent(bb)

	// Adding t1 on both sides leaves t0 and the IKE SA alone.
	for _, step := range []struct {
		n    *node
		conn model.Connection
	}{{b, cb2}, {a, ca2}} {
		if err := step.n.e.Configure([]model.Connection{step.conn}); err != nil {
			t.Fatal(err)
		}
	}
	ids := reqIDs(a.e)
	if ids["peer/t0"] != idsBefore["peer/t0"] || ids["peer/t1"] == 0 || ids["peer/t1"] == ids["peer/t0"] {
		t.Errorf("reqids after adding t1: %v, before %v", ids, idsBefore)
	}
	if err := a.e.Up(upCtx(t), "peer", "t1"); err != nil {
		t.Fatalf("Up t1 after Configure: %v", err)
	}
	waitFor(t, "t1 at responder", func() bool { return len(b.k.active()) == 2 })
	for _, x := range []struct {
		name string
		n    *node
		want ChildSA
	}{{"A", a, first}, {"B", b, firstB}} {
		x.n.k.mu.Lock()
		deleted := len(x.n.k.deleted)
		x.n.k.mu.Unlock()
		if deleted != 0 {
			t.Errorf("%s deleted %d child SAs, want none", x.name, deleted)
		}
		found := false
		for _, c := range x.n.k.active() {
			found = found || c.Tunnel == "t0" && c.SPIIn == x.want.SPIIn && c.SPIOut == x.want.SPIOut && c.ReqID == x.want.ReqID
		}
		if !found {
			t.Errorf("%s: t0 child SA %08x/%08x (reqid %d) is gone", x.name, x.want.SPIIn, x.want.SPIOut, x.want.ReqID)
		}
	}
	if n := informationalsSent(ba) - infoA; n != 0 {
		t.Errorf("A sent %d informational messages while adding a tunnel, want none", n)
	}
	if n := informationalsSent(bb) - infoB; n != 0 {
		t.Errorf("B sent %d informational messages while adding a tunnel, want none", n)
	}
	st := a.e.Status()
	if len(st.IKESAs) != 1 || st.IKESAs[0].InitiatorCookie != ikeBefore || len(st.IKESAs[0].ChildSAs) != 2 {
		t.Errorf("IKE SA replaced or children missing: %+v", st.IKESAs)
	}

	// Removing t0 again deletes only t0, on both sides (a Delete reaches B); t1 stays.
	if err := a.e.Configure([]model.Connection{func() model.Connection { c := ca2; c.Tunnels = ca2.Tunnels[1:]; return c }()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "t0 deleted at responder", func() bool {
		act := b.k.active()
		return len(act) == 1 && act[0].Tunnel == "t1"
	})
	if act := a.k.active(); len(act) != 1 || act[0].Tunnel != "t1" {
		t.Errorf("A keeps %d child SAs after removing t0, want t1 only", len(act))
	}
	// Adding t0 back gives it its old reqid.
	if err := a.e.Configure([]model.Connection{ca2}); err != nil {
		t.Fatal(err)
	}
	if got := reqIDs(a.e); got["peer/t0"] != idsBefore["peer/t0"] || got["peer/t1"] != ids["peer/t1"] {
		t.Errorf("reqids after removing and re-adding t0: %v, want %v", got, ids)
	}

	// A changed PSK rebuilds the connection: everything is torn down, reqids stay.
	changed := ca2
	changed.PSK = model.Secret("other")
	if err := a.e.Configure([]model.Connection{changed}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connection torn down on both sides", func() bool {
		return len(a.k.active()) == 0 && len(b.k.active()) == 0 && len(a.e.Status().IKESAs) == 0
	})
	if got := reqIDs(a.e); got["peer/t0"] != ids["peer/t0"] || got["peer/t1"] != ids["peer/t1"] {
		t.Errorf("reqids after rebuilding the connection: %v, want %v", got, ids)
	}
}

func TestConfigureTunnelChange(t *testing.T) {
	// Changing one tunnel's selectors replaces only that tunnel's child SA.
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", tunnels: 2}
	a, b := startPair(t, pc)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both tunnels at responder", func() bool { return len(b.k.active()) == 2 })
	var keep ChildSA
	for _, c := range a.k.active() {
		if c.Tunnel == "t0" {
			keep = *c
		}
	}
	ca, _ := connPair(t, pc)
	ca.Tunnels[1].LocalSubnets = []netip.Prefix{netip.MustParsePrefix("10.10.7.1/32")}
	if err := a.e.Configure([]model.Connection{ca}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "changed tunnel deleted on both sides", func() bool {
		return len(a.k.active()) == 1 && len(b.k.active()) == 1
	})
	if act := a.k.active()[0]; act.SPIIn != keep.SPIIn || act.Tunnel != "t0" {
		t.Errorf("remaining child SA %s %08x, want t0 %08x", act.Tunnel, act.SPIIn, keep.SPIIn)
	}
	if len(a.e.Status().IKESAs) != 1 {
		t.Errorf("IKE SA gone after changing a tunnel")
	}
}
