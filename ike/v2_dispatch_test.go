package ike

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/ikev2"
)

// lastSentOf returns the last message of exchange x, a request or a response, that n sent.
func lastSentOf(t *testing.T, n *node, x ikev2.ExchangeType, response bool) conn.Packet {
	t.Helper()
	sent := n.bind.Sent()
	for i := len(sent) - 1; i >= 0; i-- {
		if h, err := ikev2.ParseHeader(sent[i].Data); err == nil && h.Exchange == x && h.IsResponse() == response {
			return sent[i]
		}
	}
	t.Fatalf("no %s %s sent", x, map[bool]string{false: "request", true: "response"}[response])
	return conn.Packet{}
}

// responderState is what B's processing of a request would change.
func responderState(n *node) string {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	ids := ""
	for _, sa := range n.e.v2SAs {
		ids += fmt.Sprintf(" %s:%s/%d", sa.spiI, sa.state, sa.peerID)
	}
	return fmt.Sprintf("SAs%s; SPIs allocated %d, installed %d, deleted %d; %d errors",
		ids, len(n.k.allocated), len(n.k.installed), len(n.k.deleted), len(n.e.errs))
}

// requireAnsweredAgain hands B the last request of exchange x that A sent once more: B must
// send its cached response again, byte for byte, and change nothing (RFC 7296 2.1).
func requireAnsweredAgain(t *testing.T, a, b *node, x ikev2.ExchangeType) {
	t.Helper()
	req, resp := lastSentOf(t, a, x, false), lastSentOf(t, b, x, true)
	before, n := responderState(b), len(b.bind.Sent())
	deliver(b, req.Data, req.Remote, req.Local)
	again := b.bind.Sent()[n:]
	if len(again) != 1 || !bytes.Equal(again[0].Data, resp.Data) {
		t.Errorf("%s request retransmitted: B sent %d messages, want its cached response once", x, len(again))
	}
	if after := responderState(b); after != before {
		t.Errorf("%s request retransmitted: B's state went from\n%s to\n%s", x, before, after)
	}
}

// TestIKEv2RetransmittedRequests: a retransmitted request of every exchange type gets the
// cached response again and is not processed twice (RFC 7296 2.1): no second IKE SA, child
// SA, SPI or Delete.
func TestIKEv2RetransmittedRequests(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16-ecp256", pskA: "k", tunnels: 2}, "aes128-sha256-ecp256", "aes128-sha256-ecp256")
	ts := a.e.Tunnels()
	a.e.Acquire(ts[0].ReqID)
	s.run("IKE_SA_INIT answered", time.Minute, func() bool { return len(b.e.v2SAs) == 1 && len(a.bind.IKE()) == 1 })
	requireAnsweredAgain(t, a, b, ikev2.ExchangeIKESAInit)
	s.run("IKE_AUTH done", time.Minute, func() bool { return len(a.k.active()) == 1 })
	requireAnsweredAgain(t, a, b, ikev2.ExchangeIKEAuth)
	a.e.Acquire(ts[1].ReqID)
	s.run("CREATE_CHILD_SA done", time.Minute, func() bool { return len(a.k.active()) == 2 })
	requireAnsweredAgain(t, a, b, ikev2.ExchangeCreateChildSA)
	deleteOneChild(a)
	s.run("Delete answered", time.Minute, func() bool { return len(b.k.active()) == 1 && len(a.bind.IKE()) == 0 })
	requireAnsweredAgain(t, a, b, ikev2.ExchangeInformational)
}

// v2SAOf returns n's only IKE SA.
func v2SAOf(t *testing.T, n *node) *v2SA {
	t.Helper()
	if len(n.e.v2SAs) != 1 {
		t.Fatalf("%d IKE SAs, want 1", len(n.e.v2SAs))
	}
	for _, sa := range n.e.v2SAs {
		return sa
	}
	return nil
}

// TestIKEv2MessageIDWindow: with a window of one (RFC 7296 2.3), a request whose message ID
// is ahead of the next one expected, or older than the last one answered, is dropped
// unanswered even though it verifies; so is a response to a request we never sent, or with
// a message ID other than our request's in flight, and a message that does not verify.
// Nothing of them is kept: a thousand forged messages leave B's state as it was, and the
// next genuine exchange works.
func TestIKEv2MessageIDWindow(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2}, "aes128-sha256-ecp256", "aes128-sha256-ecp256")
	s.up(a, b)
	a.e.mu.Lock()
	sa := v2SAOf(t, a)
	next := sa.reqID // B expects this ID next; it answered next-1 last
	seal := func(msgID uint32, response bool, ps ...ikev2.Payload) []byte {
		msgs, err := sa.seal(sa.header(ikev2.ExchangeInformational, msgID, response), ps)
		if err != nil || len(msgs) != 1 {
			t.Fatal(err)
		}
		return msgs[0]
	}
	forged := seal(next, false)
	forged[len(forged)-1] ^= 1 // the ICV no longer verifies
	b.e.mu.Lock()
	peerReqID := v2SAOf(t, b).reqID
	b.e.mu.Unlock()
	cases := map[string][]byte{
		"request ahead of the window":    seal(next+1, false),
		"request far ahead":              seal(next+1000, false),
		"request older than the last":    seal(next-2, false),
		"response to no request":         seal(peerReqID, true),
		"response with another ID":       seal(peerReqID+7, true),
		"request that does not verify":   forged,
		"a Delete ahead of the window":   seal(next+1, false, &ikev2.Delete{Protocol: ikev2.ProtocolIKE}),
		"a Delete older than the window": seal(next-2, false, &ikev2.Delete{Protocol: ikev2.ProtocolIKE}),
	}
	local, remote := sa.local, sa.remote
	a.e.mu.Unlock()
	before := responderState(b)
	for name, msg := range cases {
		n := len(b.bind.Sent())
		for range 1000 / len(cases) {
			deliver(b, msg, remote, local)
		}
		if sent := len(b.bind.Sent()) - n; sent != 0 {
			t.Errorf("%s: B sent %d messages, want none", name, sent)
		}
		if after := responderState(b); after != before {
			t.Errorf("%s: B's state went from\n%s to\n%s", name, before, after)
		}
	}
	b.e.mu.Lock()
	if d := v2SAOf(t, b).defrag; d != [2]*v2Defrag{} {
		t.Errorf("B holds reassembly state after the forged messages")
	}
	b.e.mu.Unlock()
	deleteOneChild(a)
	s.run("child deleted at B", time.Minute, func() bool { return len(b.k.active()) == 1 })
}
