//go:build vmtest

package kernel

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

// sendUDP sends one datagram from s.inner to dst:9 inside s's namespace.
func sendUDP(tb testing.TB, s *site, dst *site) {
	tb.Helper()
	err := s.ns.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: s.inner.AsSlice()}, &net.UDPAddr{IP: dst.inner.AsSlice(), Port: 9})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("acquire"))
		return err
	})
	// EAGAIN: the kernel queues nothing while the SA is larval; the datagram is dropped.
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		tb.Fatalf("netns %s: send UDP to %s: %v", s.ns.Name(), dst.inner, err)
	}
}

// TestXfrmAcquire: a policy without SAs makes the kernel send ACQUIRE on the first packet;
// the datapath reports it with the policy's reqid and selector; installing the SAs then (as
// start: on-demand does) carries traffic, and replaces the kernel's larval acquire state.
func TestXfrmAcquire(t *testing.T) {
	ctx := t.Context()
	l := newLab(t)
	da, db := newXfrm(t, &l.a), newXfrm(t, &l.b)
	if err := da.AddPolicy(ctx, policyAt(&l.a, &l.b)); err != nil {
		t.Fatalf("a: AddPolicy: %v", err)
	}

	sendUDP(t, &l.a, &l.b)
	ev := waitEvent(t, da, datapath.EventAcquire, 5*time.Second)
	want := datapath.Selector{Local: l.a.protect, Remote: l.b.protect}
	if ev.ReqID != reqID || ev.Selector != want {
		t.Fatalf("acquire = %+v, want reqid %d selector %+v", ev, reqID, want)
	}
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1); err == nil {
		t.Fatalf("ping went through a policy without SAs: want it dropped")
	}

	tr := transforms[2]
	tn := &tunnel{t: tr, kAB: newKeys(t, tr), kBA: newKeys(t, tr)}
	tn.install(t, ctx, l, da, db)
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 3); err != nil {
		t.Fatalf("after installing the SAs: %v", err)
	}
	closeLeavingNoXfrm(t, l, da, db)
}

// TestXfrmExpire: SAs with short lifetimes make the kernel report a soft expire (time to
// rekey) and then a hard expire, after which it has removed the SA.
func TestXfrmExpire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := newLab(t)
	da, db := newXfrm(t, &l.a), newXfrm(t, &l.b)
	tr := transforms[1]
	tn := &tunnel{t: tr, kAB: newKeys(t, tr), kBA: newKeys(t, tr),
		lifetime: datapath.Lifetime{Soft: 2 * time.Second, Hard: 4 * time.Second}}
	tn.install(t, ctx, l, da, db)
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1); err != nil {
		t.Fatalf("before expiry: %v", err)
	}

	// a holds both SAs: inbound spiBA (dst a) and outbound spiAB (dst b).
	want := map[uint32]netip.Addr{tn.spiBA: l.a.outer, tn.spiAB: l.b.outer}
	for _, kind := range []datapath.EventKind{datapath.EventSoftExpire, datapath.EventHardExpire} {
		seen := map[uint32]bool{}
		for len(seen) < len(want) {
			ev := waitEvent(t, da, kind, 8*time.Second)
			dst, ok := want[ev.SPI]
			if !ok || ev.Dst != dst || seen[ev.SPI] {
				t.Fatalf("expire event %+v: want one per SA of %v", ev, want)
			}
			seen[ev.SPI] = true
		}
	}
	if states := xfrmStates(t, &l.a); len(states) != 0 {
		t.Fatalf("after hard expire the kernel still holds %d states, want none", len(states))
	}
	// The dropped ping leaves an acquire placeholder (SPI 0) that no netlink call can delete;
	// let it expire quickly.
	l.a.ns.Sysctl(t, "net.core.xfrm_acq_expires", "1")
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 1); err == nil {
		t.Fatalf("ping went through after hard expire: want it dropped")
	}
	if err := da.Close(); err != nil {
		t.Errorf("a: Close after hard expire: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, func() (bool, error) {
		return len(xfrmStates(t, &l.a)) == 0, nil
	})
	requireNoXfrm(t, l.a.ns)
}

// TestXfrmWrongKey: with a different key on each side the receiver rejects every packet and
// counts the failures, so the static-key tests above can fail.
func TestXfrmWrongKey(t *testing.T) {
	ctx := t.Context()
	l := newLab(t)
	da, db := newXfrm(t, &l.a), newXfrm(t, &l.b)
	tr := transforms[1]
	tn := &tunnel{t: tr, kAB: newKeys(t, tr), kBA: newKeys(t, tr)}
	tn.allocSPIs(t, ctx, l, da, db)
	tn.installAt(t, ctx, l, &l.a, da)
	tn.kAB = newKeys(t, tr) // b expects other keys for a -> b than a uses
	tn.installAt(t, ctx, l, &l.b, db)
	if err := testutil.Ping(l.a.ns, l.a.inner.String(), l.b.inner.String(), 2); err == nil {
		t.Fatalf("ping went through with mismatched keys")
	}
	c, err := db.Counters(l.b.outer, tn.spiAB)
	if err != nil {
		t.Fatalf("b: Counters: %v", err)
	}
	if c.AuthFailures < 2 || c.Packets != 0 {
		t.Fatalf("b inbound SA with the wrong key: Counters = %+v, want >= 2 auth failures, 0 packets", c)
	}
}
