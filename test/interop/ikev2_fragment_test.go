package interop

import (
	"fmt"
	"strconv"
	"strings"
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

// pathMTU makes the partner's side of the link drop espgw's UDP datagrams longer than
// ipLen bytes (a path with a small MTU that sends no ICMP) and returns how many it dropped.
func pathMTU(t *testing.T, l *lab, ipLen int) func() int {
	t.Helper()
	testutil.RequireTool(t, "nft", "nftables")
	applyNFT(t, l.partner, `table inet v2mtu {
	counter dropped {}
	chain in { type filter hook input priority -10; ip saddr `+gwAddr+` ip length > `+strconv.Itoa(ipLen)+` counter name "dropped" drop; }
}`)
	t.Cleanup(func() { _ = l.partner.Command("nft", "delete", "table", "inet", "v2mtu").Run() })
	return func() int { return nftCounter(l.partner, "v2mtu", "dropped") }
}

// espgwSends sorts espgw's datagrams of exchange (requests or responses) in pcap into whole
// messages (SK) and fragments (SKF), with the longest of each (IP length).
func espgwSends(t *testing.T, pcap string, exchange int, response bool) (whole, frags, longestWhole, longestFrag int) {
	t.Helper()
	filter := fmt.Sprintf("ip.src == %s && isakmp.exchangetype == %d && isakmp.flag_r == %d", gwAddr, exchange, btoi(response))
	for _, row := range testutil.TShark(t, pcap, testutil.Keys{}, filter, "ip.len", "isakmp.nextpayload") {
		n, _ := strconv.Atoi(row.First("ip.len"))
		if row.First("isakmp.nextpayload") == payloadSKF {
			frags, longestFrag = frags+1, max(longestFrag, n)
		} else {
			whole, longestWhole = whole+1, max(longestWhole, n)
		}
	}
	return whole, frags, longestWhole, longestFrag
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestIKEv2FragmentPathMTU: the path from espgw to strongSwan drops datagrams over 600
// bytes; espgw's fragment_size is the default 1280 (RFC 7383 2.5.2). espgw initiating: its
// IKE_AUTH request, long with twelve ESP proposals, is lost whole, then sent again in
// fragments of at most 576 bytes, which strongSwan reassembles. strongSwan initiating
// (fragment_size 500): its CHILD_SA rekey with a modp4096 KE makes espgw's answer long; it
// is lost whole, and strongSwan's retransmission gets it again in fragments. Each time the
// partner ends with the SAs INSTALLED and a ping passes.
func TestIKEv2FragmentPathMTU(t *testing.T) {
	const path = 600
	inBothRoles(t, func(t *testing.T, initiator string) {
		set := v2Sets[1]
		var dropped func() int
		espgwFirst := initiator == byEspgwUp
		r := negotiateV2Captured(t, set, initiator, func(l *lab) { dropped = pathMTU(t, l, path) }, func(s *strongswan.Config, c *espgwtest.Connection) {
			s.ExtraConn = "fragmentation = yes"
			s.Charon = "fragment_size = 500"
			if espgwFirst {
				var long []string
				for _, enc := range []string{"aes256", "aes128", "aes192"} {
					for _, integ := range []string{"sha512", "sha384", "sha256", "sha1"} {
						long = append(long, enc+"-"+integ+"-ecp256")
					}
				}
				c.Tunnels[0].ESPProposal = strings.Join(long, ", ") + ", " + set.esp
			} else {
				s.ESPProposals, c.Tunnels[0].ESPProposal = "aes128gcm16-modp4096", "aes128gcm16-modp4096"
			}
		})
		exchange := 35 // IKE_AUTH
		if !espgwFirst {
			if out, err := r.sw.Swanctl("--rekey", "--child", "s2s"); err != nil {
				t.Fatalf("swanctl --rekey --child: %v\n%s", err, out)
			}
			err := testutil.Poll(negotiationTimeout, func() (bool, error) {
				_, ch := r.sw.WaitInstalled(t, "s2s", negotiationTimeout)
				if ch.SPIIn == r.child.SPIIn || ch.DHGroup != "MODP_4096" {
					return false, fmt.Errorf("strongSwan's CHILD_SA %08x (DH %q), want a rekeyed one with MODP_4096", ch.SPIIn, ch.DHGroup)
				}
				return true, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			exchange = 36 // CREATE_CHILD_SA
			if !r.sw.LogContains("retransmit 1 of request") {
				t.Errorf("charon log lacks %q: its rekey was answered at once, the path-MTU case went untested", "retransmit 1 of request")
			}
		}
		if err := testutil.Ping(r.l.gw, serviceAddr, hostAddr, 3); err != nil {
			t.Error(err)
		}
		pcap := r.capture.Stop()
		whole, frags, longestWhole, longestFrag := espgwSends(t, pcap, exchange, !espgwFirst)
		if n := dropped(); n < 1 || whole < 1 || longestWhole <= path || frags < 2 || longestFrag > 576 {
			t.Errorf("wire: espgw sent exchange %d whole %d times (longest %d bytes) and in %d fragments (longest %d), the path dropped %d; "+
				"want at least one whole message over %d bytes dropped, then fragments of at most 576", exchange, whole, longestWhole, frags, longestFrag, n, path)
		}
		if !r.sw.LogContains("reassembled fragmented IKE message") {
			t.Errorf("charon log lacks %q", "reassembled fragmented IKE message")
		}
		t.Logf("exchange %d: espgw sent %d whole messages (longest %d bytes, %d dropped by the path), then %d fragments (longest %d bytes)",
			exchange, whole, longestWhole, dropped(), frags, longestFrag)
	})
}
