package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/model"
)

// fragmentSizes sets both sides' fragment_size.
func fragmentSizes(a, b int) func(ca, cb *model.Connection) {
	return func(ca, cb *model.Connection) { ca.IKE.FragmentSize, cb.IKE.FragmentSize = a, b }
}

// wireMessage is a sent IKEv2 message as the wire shows it.
type wireMessage struct {
	exchange       ikev2.ExchangeType
	spiI           ikev2.SPI
	response       bool
	number, total  uint16 // 0, 0 unfragmented
	length, msgID  int
	fragmentInner  ikev2.PayloadType
	skNextPayload  ikev2.PayloadType
	unencryptedLen int
}

// sentMessages decodes every IKEv2 message a node sent.
func sentMessages(t *testing.T, sent []conn.Packet) []wireMessage {
	t.Helper()
	var ws []wireMessage
	for _, p := range sent {
		m, err := ikev2.Decode(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		w := wireMessage{exchange: m.Header.Exchange, spiI: m.Header.SPIi, response: m.Header.IsResponse(), length: len(p.Data), msgID: int(m.Header.MessageID)}
		if f, ok := ikev2.Find[*ikev2.EncryptedFragment](m.Payloads), true; ok && f != nil {
			w.number, w.total, w.fragmentInner = f.Number, f.Total, f.Inner
		}
		ws = append(ws, w)
	}
	return ws
}

// authFragments counts the IKE_AUTH messages in ws sent as fragments, and the largest.
func authFragments(ws []wireMessage) (frags, whole, longest int) {
	for _, w := range ws {
		if w.exchange != ikev2.ExchangeIKEAuth {
			continue
		}
		if w.total > 0 {
			frags++
		} else {
			whole++
		}
		longest = max(longest, w.length)
	}
	return frags, whole, longest
}

// TestIKEv2Fragmentation: with both sides announcing fragmentation and a small
// fragment_size, IKE_AUTH request and response go as SKF fragments no longer than the size
// allows, each reassembled by the other side; CBC and GCM.
func TestIKEv2Fragmentation(t *testing.T) {
	for _, ike := range []string{"aes128gcm16-prfsha256-ecp256", "aes256-sha256-modp2048"} {
		t.Run(ike, func(t *testing.T) {
			const size = 160
			s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2}, ike, ike, fragmentSizes(size, size))
			s.up(a, b)
			for _, n := range []*node{a, b} {
				frags, whole, longest := authFragments(sentMessages(t, n.bind.Sent()))
				if frags < 2 || whole != 0 || longest > size-28 {
					t.Errorf("IKE_AUTH: %d fragments, %d whole messages, longest %d bytes; want fragments only, at most %d bytes (%d-byte datagrams)",
						frags, whole, longest, size-28, size)
				}
			}
			if len(a.k.active()) != 2 {
				t.Errorf("%d child SAs, want 2 (the second by CREATE_CHILD_SA)", len(a.k.active()))
			}
		})
	}
}

// TestIKEv2FragmentationAfterRekey: a rekeyed IKE SA keeps fragmentation (as strongSwan
// does): the child SA rekeys under it go in fragments and succeed.
func TestIKEv2FragmentationAfterRekey(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16-ecp256", pskA: "k", lifetimeA: 10 * time.Minute, lifetimeB: time.Hour}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(160, 160))
	s.up(a, b)
	first := sentMessages(t, a.bind.Sent())[0].spiI
	s.advance(90 * time.Minute) // IKE lifetime 1 h, child 10 min
	var later int
	for _, w := range sentMessages(t, a.bind.Sent()) {
		if w.exchange == ikev2.ExchangeCreateChildSA && w.spiI != first && w.total > 0 {
			later++
		}
	}
	if later == 0 {
		t.Errorf("no CREATE_CHILD_SA fragments on the rekeyed IKE SA")
	}
	if ia, ib := a.k.active(), b.k.active(); len(ia) != 1 || len(ib) != 1 {
		t.Fatalf("%d/%d child SAs after 90 min of rekeys, want 1/1", len(ia), len(ib))
	}
}

// TestIKEv2FragmentationNotNegotiated: when the peer does not announce fragmentation, long
// messages go whole.
func TestIKEv2FragmentationNotNegotiated(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(160, 0))
	s.up(a, b)
	frags, whole, longest := authFragments(sentMessages(t, a.bind.Sent()))
	if frags != 0 || whole != 1 || longest <= 160-28 {
		t.Errorf("IKE_AUTH request: %d fragments, %d whole messages of %d bytes; want 1 whole one longer than 132 (B does not take fragments)", frags, whole, longest)
	}
	t.Logf("IKE_AUTH request of %d bytes sent whole", longest)
}

// TestIKEv2FragmentLost: the second fragment of IKE_AUTH is lost once, of the request or
// of the response. The receiver keeps the others; the initiator's retransmission of all
// its fragments completes the request, or makes the responder resend all of its own.
func TestIKEv2FragmentLost(t *testing.T) {
	for _, tt := range []struct {
		name     string
		response bool
	}{{"request", false}, {"response", true}} {
		t.Run(tt.name, func(t *testing.T) {
			s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(160, 160))
			lossy := a
			if tt.response {
				lossy = b
			}
			dropped := 0
			lossy.bind.SetFilter(func(msg []byte, _, _ netip.AddrPort, _ bool) bool {
				m, err := ikev2.Decode(msg)
				if err != nil || dropped > 0 {
					return true
				}
				if f := ikev2.Find[*ikev2.EncryptedFragment](m.Payloads); f != nil && f.Number == 2 {
					dropped++
					return false
				}
				return true
			})
			s.up(a, b)
			sent := map[*node]int{}
			for _, n := range []*node{a, b} {
				for _, w := range sentMessages(t, n.bind.Sent()) {
					if w.exchange == ikev2.ExchangeIKEAuth && w.number == 2 {
						sent[n]++
					}
				}
			}
			if dropped != 1 || sent[a] != 2 || sent[b] != 1+btoi(tt.response) {
				t.Errorf("dropped %d fragments; IKE_AUTH fragment 2 sent %d times by the initiator, %d by the responder; want 1, 2, %d",
					dropped, sent[a], sent[b], 1+btoi(tt.response))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestIKEv2FragmentForged: a fragment that does not verify leaves nothing behind; one
// announcing too many fragments is refused before decryption.
func TestIKEv2FragmentForged(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(160, 160))
	s.up(a, b)
	b.e.mu.Lock()
	defer b.e.mu.Unlock()
	var sa *v2SA
	for _, x := range b.e.v2SAs {
		sa = x
	}
	for _, f := range []*ikev2.EncryptedFragment{
		{Number: 1, Total: 2, Inner: ikev2.PayloadNotify, Encrypted: make([]byte, 64)},
		{Number: 1, Total: maxV2Fragments + 1, Inner: ikev2.PayloadNotify, Encrypted: make([]byte, 64)},
	} {
		m := ikev2.Message{Header: sa.header(ikev2.ExchangeInformational, sa.peerID, false), Payloads: []ikev2.Payload{f}}
		m.Header.Flags ^= ikev2.FlagInitiator
		raw := m.Marshal()
		in, err := ikev2.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sa.openSK(&v2Inbound{m: in, raw: raw}); err == nil {
			t.Errorf("fragment %d/%d with a zero ICV accepted", f.Number, f.Total)
		}
		if sa.defrag != [2]*v2Defrag{} {
			t.Errorf("fragment %d/%d with a zero ICV kept for reassembly", f.Number, f.Total)
		}
	}
}

// FuzzV2Reassemble: fragments that pass the ICV (sealed with the peer's keys) but carry
// arbitrary plaintext, numbers and totals are reassembled or refused, never a panic, and
// what is kept stays within the bounds.
func FuzzV2Reassemble(f *testing.F) {
	s, a, b, _, _ := v2Sim(f, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(200, 200))
	s.up(a, b)
	inner := ikev2.AppendPayloads(nil, []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyInitialContact},
		&ikev2.Delete{Protocol: ikev2.ProtocolIKE}})
	f.Add(inner, uint8(5), uint16(1), uint16(2), uint16(2), uint16(2))
	f.Add(inner, uint8(0), uint16(2), uint16(3), uint16(1), uint16(3))
	sa := func(n *node) *v2SA {
		for _, x := range n.e.v2SAs {
			return x
		}
		return nil
	}
	sender, receiver := sa(a), sa(b)
	f.Fuzz(func(t *testing.T, inner []byte, cut uint8, n1, t1, n2, t2 uint16) {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		at := min(int(cut), len(inner))
		for i, part := range []struct {
			data          []byte
			number, total uint16
		}{{inner[:at], n1, t1}, {inner[at:], n2, t2}} {
			first := ikev2.PayloadNone
			if part.number == 1 {
				first = ikev2.PayloadNotify
			}
			fixed := []byte{byte(part.number >> 8), byte(part.number), byte(part.total >> 8), byte(part.total)}
			raw, err := sender.sk.sealSK(a.e.opts.Rand, sender.header(ikev2.ExchangeInformational, receiver.peerID, false),
				ikev2.PayloadEncryptedFragment, first, fixed, part.data)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ikev2.Decode(raw)
			if err != nil {
				continue // the codec refuses the numbers
			}
			if _, err := receiver.openSK(&v2Inbound{m: m, raw: raw}); err == nil && i == 0 && part.total > 1 {
				t.Errorf("fragment %d of %d alone gave a message", part.number, part.total)
			}
			if d := receiver.defrag[0]; d != nil && (len(d.parts) > maxV2Fragments || d.size > maxV2Reassembly) {
				t.Errorf("reassembly holds %d fragments, %d bytes", len(d.parts), d.size)
			}
		}
		receiver.defrag[0] = nil
	})
}

// dropAbove drops, on n's link, every IKE datagram longer than size bytes (IPv4 and UDP
// headers, and the non-ESP marker on port 4500, included): a path with a small MTU that
// sends no ICMP. It returns the number dropped so far.
func dropAbove(n *node, size int) *int {
	dropped := new(int)
	n.bind.SetFilter(func(msg []byte, local, _ netip.AddrPort, isIKE bool) bool {
		l := len(msg) + ipHeaderLen(true) + udpHeaderLen
		if isIKE && local.Port() == conn.NATTPort {
			l += nonESPMarkerLen
		}
		if l > size {
			*dropped++
			return false
		}
		return true
	})
	return dropped
}

// TestIKEv2FragmentPathMTU: a path that drops datagrams above 600 bytes, both ways, under
// fragment_size 1280 (RFC 7383 2.5.2). An IKE_AUTH request made long by many ESP proposals
// is sent whole twice, then in fragments of at most 576 bytes, and completes. The IKE SA
// keeps that size: the CREATE_CHILD_SA of the second tunnel, long both ways with a modp4096
// KE, goes in fragments at once; the responder's whole answer is lost, and the request's
// retransmission makes it answer again in fragments.
func TestIKEv2FragmentPathMTU(t *testing.T) {
	const path = 600
	esp := "aes128gcm16-modp4096, aes256gcm16-modp4096, aes128-sha256-modp4096, aes256-sha256-modp4096, aes128-sha1-modp4096, " +
		"aes256-sha1-modp4096, aes128-sha384-modp4096, aes256-sha384-modp4096, aes128-sha512-modp4096, aes256-sha512-modp4096"
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: esp, espB: "aes256-sha512-modp4096", pskA: "k", tunnels: 2},
		"aes128-sha256-ecp256", "aes128-sha256-ecp256", fragmentSizes(model.DefaultFragmentSize, model.DefaultFragmentSize))
	lostA, lostB := dropAbove(a, path), dropAbove(b, path)
	start := s.clk.Now()
	s.up(a, b)
	t.Logf("both tunnels up after %v; %d datagrams of A and %d of B dropped by the path", s.elapsed(start), *lostA, *lostB)
	for _, n := range []*node{a, b} {
		var whole, frags, longest int
		for _, w := range sentMessages(t, n.bind.Sent()) {
			switch {
			case w.exchange == ikev2.ExchangeIKESAInit:
			case w.total == 0:
				whole++
			default:
				frags++
				longest = max(longest, w.length+28)
			}
		}
		if frags == 0 || longest > minIPv4Datagram {
			t.Errorf("%d protected messages whole, %d fragments, the longest a %d-byte datagram; want fragments of at most %d bytes",
				whole, frags, longest, minIPv4Datagram)
		}
	}
	if *lostA < 2 || *lostB < 1 {
		t.Errorf("the path dropped %d datagrams of A and %d of B; want at least 2 (the IKE_AUTH request whole, twice) and 1 (the CREATE_CHILD_SA response whole)", *lostA, *lostB)
	}
	for _, n := range []*node{a, b} {
		n.e.mu.Lock()
		for _, sa := range n.e.v2SAs {
			if got := sa.fragmentLadder()[sa.fragStep]; got != minIPv4Datagram {
				t.Errorf("IKE SA %s sends datagrams of up to %d bytes, want %d", sa.spiI, got, minIPv4Datagram)
			}
		}
		n.e.mu.Unlock()
	}
}
