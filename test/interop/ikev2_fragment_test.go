package interop

import (
	"strconv"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// payloadSKF is the Encrypted and Authenticated Fragment payload's type (RFC 7383 2.5).
const payloadSKF = "53"

// TestIKEv2Fragmentation: IKE fragmentation (RFC 7383) with strongSwan in both roles.
// Both announce it; with 200-byte datagrams (charon.fragment_size, ike.fragment_size) each
// sends its IKE_AUTH message in SKF fragments, which the other reassembles: the IKE_SA is
// ESTABLISHED, the CHILD_SA INSTALLED, a ping passes, and the wire shows SKF datagrams
// from both sides, none longer than 200 bytes, that tshark decrypts with espgw's saved keys
// and reassembles into IKE_AUTH messages with their AUTH payloads.
func TestIKEv2Fragmentation(t *testing.T) {
	inBothRoles(t, func(t *testing.T, initiator string) {
		r := negotiateV2Captured(t, v2Sets[1], initiator, nil, func(s *strongswan.Config, c *espgwtest.Connection) {
			c.FragmentSize = "200"
			s.ExtraConn = "fragmentation = yes"
			s.Charon = "fragment_size = 200"
		})
		if err := testutil.Ping(r.l.gw, serviceAddr, hostAddr, 3); err != nil {
			t.Error(err)
		}
		pcap := r.capture.Stop()
		frags := map[string]int{}
		longest := map[string]int{}
		for _, row := range testutil.TShark(t, pcap, testutil.Keys{}, "isakmp.exchangetype == 35 && isakmp.nextpayload == "+payloadSKF, "ip.src", "ip.len") {
			src := row.First("ip.src")
			frags[src]++
			n, _ := strconv.Atoi(row.First("ip.len"))
			longest[src] = max(longest[src], n)
		}
		if frags[gwAddr] < 2 || frags[partnerAddr] < 2 || longest[gwAddr] > 200 || longest[partnerAddr] > 200 {
			t.Errorf("wire: IKE_AUTH SKF datagrams from espgw %d (longest %d bytes), from strongSwan %d (longest %d); want at least 2 each, at most 200 bytes",
				frags[gwAddr], longest[gwAddr], frags[partnerAddr], longest[partnerAddr])
		}
		// tshark decrypts each fragment with espgw's saved keys and shows the reassembled
		// IKE_AUTH, with its AUTH payload, at the last one.
		reassembled := map[string]int{}
		for _, row := range testutil.TShark(t, pcap, r.g.Keys(t), "isakmp.exchangetype == 35 && isakmp.frag.number && isakmp.auth.method", "ip.src") {
			reassembled[row.First("ip.src")]++
		}
		if reassembled[gwAddr] != 1 || reassembled[partnerAddr] != 1 {
			t.Errorf("tshark with espgw's keys reassembled %d fragmented IKE_AUTH messages from espgw, %d from strongSwan, with AUTH; want 1 and 1",
				reassembled[gwAddr], reassembled[partnerAddr])
		}
		if !r.sw.LogContains("reassembled fragmented IKE message") {
			t.Errorf("charon log lacks %q: strongSwan did not reassemble espgw's fragments", "reassembled fragmented IKE message")
		}
		t.Logf("strongSwan: IKE_SA %s, CHILD_SA %s %08x/%08x; wire: IKE_AUTH in %d SKF datagrams from espgw (longest %d bytes), %d from strongSwan (longest %d)",
			r.ike.State, r.child.State, r.child.SPIIn, r.child.SPIOut, frags[gwAddr], longest[gwAddr], frags[partnerAddr], longest[partnerAddr])
	})
}
