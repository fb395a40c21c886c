package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/model"
)

// alwaysCookie makes B demand a COOKIE for every IKE_SA_INIT.
func alwaysCookie(_, b *model.Connection) { b.IKE.CookieThreshold = 0 }

// saInits decodes the IKE_SA_INIT messages among sent, with their notifications.
func saInits(t *testing.T, sent []conn.Packet) []*ikev2.Message {
	t.Helper()
	var ms []*ikev2.Message
	for _, p := range sent {
		m, err := ikev2.Decode(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Exchange == ikev2.ExchangeIKESAInit {
			ms = append(ms, m)
		}
	}
	return ms
}

// firstCookie returns the data of m's first payload if it is a COOKIE notification.
func firstCookie(m *ikev2.Message) []byte {
	if len(m.Payloads) == 0 {
		return nil
	}
	if n, ok := m.Payloads[0].(*ikev2.Notify); ok && n.NotifyType == ikev2.NotifyCookie {
		return n.Data
	}
	return nil
}

// TestIKEv2Cookie: a responder at cookie_threshold 0 answers the first IKE_SA_INIT with a
// COOKIE only; the initiator sends it again with the COOKIE first, the same SPIi and Ni,
// and the IKE SA comes up.
func TestIKEv2Cookie(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", alwaysCookie)
	s.up(a, b)
	reqs, resps := saInits(t, a.bind.Sent()), saInits(t, b.bind.Sent())
	if len(reqs) != 2 || len(resps) != 2 {
		t.Fatalf("%d IKE_SA_INIT requests, %d responses; want 2 and 2", len(reqs), len(resps))
	}
	cookie := firstCookie(resps[0])
	if len(resps[0].Payloads) != 1 || len(cookie) != 33 || resps[0].Header.SPIr != (ikev2.SPI{}) {
		t.Fatalf("first response %s, SPIr %v: want only a 33-byte COOKIE and no responder SPI", payloadNames(resps[0].Payloads), resps[0].Header.SPIr)
	}
	if firstCookie(reqs[0]) != nil || !bytes.Equal(firstCookie(reqs[1]), cookie) {
		t.Errorf("requests start with %s / %s, want no COOKIE, then the responder's", payloadNames(reqs[0].Payloads), payloadNames(reqs[1].Payloads))
	}
	ni := func(m *ikev2.Message) []byte { return ikev2.Find[*ikev2.Nonce](m.Payloads).Data }
	if reqs[0].Header.SPIi != reqs[1].Header.SPIi || !bytes.Equal(ni(reqs[0]), ni(reqs[1])) {
		t.Errorf("the retry changed SPIi or Ni, which the cookie covers")
	}
}

// TestIKEv2CookieInvalidKE: COOKIE, then INVALID_KE_PAYLOAD (RFC 7296 2.6): the third
// request carries the cookie and the responder's group.
func TestIKEv2CookieInvalidKE(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-modp2048, aes128-sha256-ecp256", "aes128-sha256-ecp256", alwaysCookie)
	s.up(a, b)
	reqs := saInits(t, a.bind.Sent())
	if len(reqs) != 3 {
		t.Fatalf("%d IKE_SA_INIT requests, want 3 (no cookie, cookie, cookie with ecp256)", len(reqs))
	}
	groups := []uint16{}
	for _, m := range reqs {
		groups = append(groups, ikev2.Find[*ikev2.KE](m.Payloads).Group)
	}
	c := firstCookie(reqs[1])
	if c == nil || !bytes.Equal(firstCookie(reqs[2]), c) || groups[0] != groups[1] || groups[2] != 19 {
		t.Errorf("requests %s %s %s with KE groups %v: want the cookie in the last two and group 19 in the last",
			payloadNames(reqs[0].Payloads), payloadNames(reqs[1].Payloads), payloadNames(reqs[2].Payloads), groups)
	}
	if got := a.e.Status().IKESAs[0].Proposal; !strings.Contains(got, "ecp256") {
		t.Errorf("proposal %q, want the ecp256 one", got)
	}
}

// TestIKEv2CookieStateless: without a valid cookie IKE_SA_INITs leave no state and no DH
// work; a cookie of the previous secret still works, one of two secrets ago does not.
func TestIKEv2CookieStateless(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256", alwaysCookie)
	a.e.mu.Lock()
	ts, _ := a.e.lookupTunnels("peer", "")
	a.e.startV2(ts[0].conn)
	a.e.mu.Unlock()
	req := a.bind.Sent()[0]
	// send hands msg to B and returns how many IKE SAs B has then.
	send := func(msg []byte) int {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		b.e.handlePacket(conn.Packet{Data: msg, Local: netip.AddrPortFrom(addrB, 500), Remote: req.Local})
		return len(b.e.v2SAs)
	}
	n := 0
	for i := range 1000 {
		msg := bytes.Clone(req.Data)
		msg[0], msg[1] = byte(i), byte(i>>8) // another SPIi
		n = max(n, send(msg))
	}
	b.e.mu.Lock()
	buckets := len(b.e.dhLimit.peers)
	b.e.mu.Unlock()
	if n != 0 || buckets != 0 {
		t.Fatalf("%d IKE SAs, %d DH buckets after 1000 IKE_SA_INITs without a cookie, want none", n, buckets)
	}
	answers := saInits(t, b.bind.Sent())
	if len(answers) != 1000 || firstCookie(answers[999]) == nil {
		t.Fatalf("%d answers, want 1000 COOKIEs", len(answers))
	}
	// Echo the cookie of the last answer (SPIi 999) after the secret changed once, twice.
	withCookie := func(cookie []byte) []byte {
		m, err := ikev2.Decode(req.Data)
		if err != nil {
			t.Fatal(err)
		}
		m.Header.SPIi[0], m.Header.SPIi[1] = byte(999&0xff), byte(999>>8)
		m.Payloads = append([]ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyCookie, Data: cookie}}, m.Payloads...)
		return m.Marshal()
	}
	cookie := firstCookie(answers[999])
	s.clk.Advance(cookieSecretLife + time.Second)
	if n := send(withCookie(cookie)); n != 1 {
		t.Fatalf("%d IKE SAs after a cookie of the previous secret, want 1", n)
	}
	s.clk.Advance(cookieSecretLife) // the half-open SA times out, the secret changes again
	if n := send(withCookie(cookie)); n != 0 {
		t.Errorf("%d IKE SAs: a cookie two secrets old was accepted", n)
	}
}

// discardBind is a bindtest.Bind that drops what the engine sends, keeping no record.
type discardBind struct{ *bindtest.Bind }

func (discardBind) SendIKE([]byte, netip.AddrPort, netip.AddrPort) error { return nil }

// BenchmarkV2CookieAnswer is a responder's cost for one IKE_SA_INIT without a cookie at
// cookie_threshold 0 (a spoofed flood's per-packet price): decode, connection lookup,
// cookie MAC, answer, and no state kept.
func BenchmarkV2CookieAnswer(b *testing.B) {
	s := newSim(b)
	ba, bb := bindtest.NewPair()
	ca, cb := v2Pair(b, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256")
	alwaysCookie(&ca, &cb)
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
	resp := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	resp.e.opts.Bind = discardBind{bb} // start wires bb; answers are dropped instead
	a.e.mu.Lock()
	ts, _ := a.e.lookupTunnels("peer", "")
	a.e.startV2(ts[0].conn)
	a.e.mu.Unlock()
	req := a.bind.Sent()[0]
	pkt := conn.Packet{Data: req.Data, Local: netip.AddrPortFrom(addrB, 500), Remote: req.Local}
	resp.e.mu.Lock()
	defer resp.e.mu.Unlock()
	b.ReportAllocs()
	b.SetBytes(int64(len(req.Data)))
	for b.Loop() {
		resp.e.handlePacket(pkt)
	}
	if n := len(resp.e.v2SAs); n != 0 {
		b.Fatalf("%d IKE SAs kept", n)
	}
}

// TestIKEv2CookieRenewed: a responder may answer the retry with a new cookie (its secret
// changed); the initiator follows a few times, then ignores further ones.
func TestIKEv2CookieRenewed(t *testing.T) {
	_, a, _, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k"}, "aes128-sha256-ecp256", "aes128-sha256-ecp256")
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	ts, _ := a.e.lookupTunnels("peer", "")
	a.e.startV2(ts[0].conn)
	sa := a.e.negotiatingV2(ts[0].conn)
	var got []bool
	for _, c := range []string{"one", "one", "two", "three", "four"} {
		err := a.e.takeCookie(sa, &ikev2.Notify{NotifyType: ikev2.NotifyCookie, Data: []byte(c)})
		got = append(got, err == nil)
	}
	if want := []bool{true, false, true, true, false}; !slices.Equal(got, want) {
		t.Errorf("retries for cookies one, one, two, three, four: %v, want %v", got, want)
	}
	if err := a.e.takeCookie(sa, &ikev2.Notify{NotifyType: ikev2.NotifyCookie, Data: make([]byte, 65)}); err == nil || errors.Is(err, errIgnore) {
		t.Errorf("65-byte COOKIE: %v, want an error naming its length", err)
	}
}
