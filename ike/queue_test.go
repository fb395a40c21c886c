package ike

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// maxQuickModesInFlight replays the quick-mode messages b sent as initiator (QM1, then QM3
// with the same message ID) and returns the most that were open at once and how many
// completed. A retransmitted QM1 repeats the same bytes and opens nothing.
func maxQuickModesInFlight(b *bindtest.Bind) (most, completed int) {
	first := map[uint32][]byte{}
	open := 0
	for _, msg := range sentOf(b, isakmp.ExchangeQuickMode) {
		h, err := isakmp.ParseHeader(msg)
		if err != nil {
			continue
		}
		switch qm1, seen := first[h.MessageID]; {
		case !seen:
			first[h.MessageID] = msg
			open++
			most = max(most, open)
		case qm1 != nil && !bytes.Equal(qm1, msg):
			first[h.MessageID] = nil // QM3: complete
			open--
			completed++
		}
	}
	return most, completed
}

// Eight tunnels on one connection: no more quick modes in flight than ike.quick_modes, and
// all of them installed at both ends.
func TestQuickModesPaced(t *testing.T) {
	for _, limit := range []int{0, 1, 3} {
		want := limit
		if limit == 0 {
			want = model.DefaultQuickModes
		}
		pc := pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: 8}
		ba, bb := bindtest.NewPair()
		ca, cb := connPair(t, pc)
		ca.IKE.QuickModes = limit
		a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
		b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)
		if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
			t.Fatalf("quick_modes %d: Up: %v", limit, err)
		}
		waitFor(t, "responder child SAs", func() bool { return len(b.k.active()) == 8 })
		most, completed := maxQuickModesInFlight(ba)
		if most != want || completed != 8 {
			t.Errorf("quick_modes %d: %d quick modes in flight at most, %d completed; want %d, 8", limit, most, completed, want)
		}
	}
}

// However many quick modes the connections allow, no more than maxOurQuickModes of ours
// await the peer's QM2 in the engine (a burst of QM3s and QM1s overflowed strongSwan's
// socket); the rest wait their turn and all are installed.
func TestOurQuickModesPacedEngineWide(t *testing.T) {
	const n = maxOurQuickModes + 12
	pc := pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: n}
	ba, bb := bindtest.NewPair()
	var w unanswered
	ba.SetFilter(w.count(+1))
	bb.SetFilter(w.count(-1))
	ca, cb := connPair(t, pc)
	ca.IKE.QuickModes, cb.IKE.QuickModes = 2*n, 2*n
	a := startNode(t, "A", ba, 0xa0000000, pc.retransmit, ca)
	b := startNode(t, "B", bb, 0xb0000000, pc.retransmit, cb)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SAs", func() bool { return len(b.k.active()) == n })
	w.mu.Lock()
	most := w.most
	w.mu.Unlock()
	// Never more than the room. How much of it fills depends on the scheduler: the PFS keys
	// are made while the first QM2s come back, and a place is free again at its QM2, so on a
	// busy machine far fewer than the room can be open at once; but never one at a time.
	if most > maxOurQuickModes || most < 2 {
		t.Errorf("%d of our QM1s unanswered at most, want 2..%d", most, maxOurQuickModes)
	}
	if _, completed := maxQuickModesInFlight(ba); completed != n {
		t.Errorf("%d quick modes completed, want %d", completed, n)
	}
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	if p := a.e.qmPace; p.inFlight != 0 || len(p.waiting) != 0 {
		t.Errorf("after all quick modes: %d counted in flight, %d connections waiting; want none", p.inFlight, len(p.waiting))
	}
}

// unanswered counts the quick modes whose QM1 the initiator sent and the responder has not
// answered yet, from both Binds' filters, and the most there were.
type unanswered struct {
	mu         sync.Mutex
	seen       map[uint32]bool // message IDs of the initiator's QM1s, true once answered
	open, most int
}

// count is the filter of the initiator's Bind (+1: its QM1s) or the responder's (-1: QM2s).
func (u *unanswered) count(delta int) bindtest.Filter {
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		if !isIKE || err != nil || h.Exchange != isakmp.ExchangeQuickMode {
			return true
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.seen == nil {
			u.seen = map[uint32]bool{}
		}
		answered, known := u.seen[h.MessageID]
		switch {
		case delta > 0 && !known:
			u.seen[h.MessageID] = false
		case delta < 0 && known && !answered:
			u.seen[h.MessageID] = true
		default:
			return true
		}
		u.open += delta
		u.most = max(u.most, u.open)
		return true
	}
}

// Rekeys falling due together queue like the first negotiations.
func TestRekeysPaced(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: 6,
		lifetimeA: time.Hour}
	s := newSim(t)
	a, b := s.pair(pc)
	s.up(a, b)
	s.run("every tunnel rekeyed", time.Hour, func() bool {
		a.k.mu.Lock()
		defer a.k.mu.Unlock()
		return len(a.k.installed) >= 12
	})
	most, completed := maxQuickModesInFlight(a.bind)
	if most != model.DefaultQuickModes || completed < 12 {
		t.Errorf("%d quick modes in flight at most, %d completed; want %d, at least 12", most, completed, model.DefaultQuickModes)
	}
	if n := len(b.k.active()); n < 6 {
		t.Errorf("responder has %d child SAs, want at least 6", n)
	}
}

// A completed quick mode answers the peer's retransmitted QM2 with its QM3 for as long as
// Linger, past the retransmission timeout: strongSwan retransmits for minutes.
func TestQM2RetransmitAnsweredAfterTimeout(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	s.up(a, b)
	qm2 := sentOf(b.bind, isakmp.ExchangeQuickMode)[0]
	s.advance(DefaultRetransmit.Linger - time.Second)
	before := len(sentOf(a.bind, isakmp.ExchangeQuickMode))
	deliver(a, qm2, portA, portB)
	if got := len(sentOf(a.bind, isakmp.ExchangeQuickMode)); got != before+1 {
		t.Errorf("initiator sent %d quick-mode messages after the late QM2, want 1 (QM3 again)", got-before)
	}
}

// The peer's INVALID-SPI for our outbound SPI (it lost the SA) makes us delete that child
// SA and negotiate a new one.
func TestInvalidSPIRenegotiates(t *testing.T) {
	a, b := upPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	old := a.k.active()[0]
	a.e.mu.Lock()
	a.e.children[old.SPIIn].Established = time.Now().Add(-time.Minute)
	a.e.mu.Unlock()
	b.e.mu.Lock()
	saB := b.e.establishedSA(b.e.conns["peer"])
	lost := b.e.children[old.SPIOut]
	delete(b.e.children, lost.SPIIn) // B forgets it without a Delete, as after a crash of its datapath
	lost.tunnel.child = nil
	b.e.sendESPNotify(saB, binary.BigEndian.AppendUint32(nil, old.SPIOut), isakmp.NotifyInvalidSPI, nil)
	b.e.mu.Unlock()
	waitFor(t, "a new child SA at both ends", func() bool {
		na, nb := a.k.active(), b.k.active()
		return len(na) == 1 && na[0].SPIIn != old.SPIIn && slices.ContainsFunc(nb, func(c *ChildSA) bool { return c.SPIIn == na[0].SPIOut })
	})
	st := a.e.Status()
	if len(st.Errors) == 0 || !strings.Contains(st.Errors[len(st.Errors)-1].Err, "INVALID-SPI") {
		t.Errorf("status errors %+v, want the INVALID-SPI", st.Errors)
	}
}

// Our QM3 leaves only once our child SA is installed (with PFS, after the DH): the peer
// installs its side on QM3 and may send on the new SA at once (bench/setup rekey wave: a
// re-keyed tunnel lost 0.3–0.5 s of replies while the QM3 went first).
func TestQM3AfterInstall(t *testing.T) {
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16-modp2048", pskA: "k"})
	ka := newFakeKernel(0xa0000000)
	var qmSent, installedAtQM3 atomic.Int32
	installedAtQM3.Store(-1)
	ba.SetFilter(func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		if h, err := isakmp.ParseHeader(msg); isIKE && err == nil && h.Exchange == isakmp.ExchangeQuickMode && qmSent.Add(1) == 2 {
			ka.mu.Lock()
			installedAtQM3.Store(int32(len(ka.installed)))
			ka.mu.Unlock()
		}
		return true
	})
	a := s.start("A", ba, ka, Options{}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	s.up(a, b)
	if got := installedAtQM3.Load(); got != 1 {
		t.Errorf("initiator had %d child SAs installed when it sent QM3, want 1", got)
	}
}
