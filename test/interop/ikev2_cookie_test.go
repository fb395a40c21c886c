package interop

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// notifyCookie is the COOKIE notification's type as tshark prints it (RFC 7296 3.10.1).
const notifyCookie = "16390"

// TestIKEv2Cookie: the COOKIE exchange of RFC 7296 2.6 in both roles. espgw at
// cookie_threshold 0 answers strongSwan's first IKE_SA_INIT with a COOKIE and strongSwan's
// retry with it establishes the SAs; strongSwan with cookie_threshold 1 and one half-open
// IKE_SA (a forged IKE_SA_INIT from another port) demands a COOKIE from espgw, which
// retries with it. The wire shows the COOKIE in the response and in the retried request.
func TestIKEv2Cookie(t *testing.T) {
	inBothRoles(t, func(t *testing.T, initiator string) {
		r := negotiateV2Captured(t, v2Sets[1], initiator, func(l *lab) {
			if initiator == byEspgwUp {
				leaveHalfOpen(t, l, v2Sets[1].ike)
			}
		}, func(s *strongswan.Config, c *espgwtest.Connection) {
			c.CookieThreshold = "0"
			// strongSwan's 0 means never: 1 with one half-open IKE_SA means now.
			s.Charon = "cookie_threshold = 1"
		})
		pcap := r.capture.Stop()
		requester, responder := partnerAddr, gwAddr
		if initiator == byEspgwUp {
			requester, responder = gwAddr, partnerAddr
		}
		var answered, echoed int
		for _, r := range testutil.TShark(t, pcap, testutil.Keys{}, "isakmp.exchangetype == 34 && isakmp.notify.msgtype == "+notifyCookie,
			"ip.src", "isakmp.flag_r", "udp.srcport") {
			switch src, resp := r.First("ip.src"), r.First("isakmp.flag_r"); {
			case src == responder && resp == "1":
				answered++
			case src == requester && resp == "0" && r.First("udp.srcport") == "500":
				echoed++
			}
		}
		if answered < 1 || echoed < 1 {
			t.Errorf("wire: %d IKE_SA_INIT responses from %s with a COOKIE, %d requests from %s echoing it; want at least 1 each",
				answered, responder, echoed, requester)
		}
		t.Logf("strongSwan: IKE_SA %s, CHILD_SA %s %08x/%08x; wire: %d COOKIE answers from %s, %d retried requests from %s",
			r.ike.State, r.child.State, r.child.SPIIn, r.child.SPIOut, answered, responder, echoed, requester)
	})
}

// inBothRoles runs f in parallel subtests, one per initiator: strongSwan, espgw.
func inBothRoles(t *testing.T, f func(t *testing.T, initiator string)) {
	for _, initiator := range []string{byStrongSwan, byEspgwUp} {
		t.Run(initiator, func(t *testing.T) {
			t.Parallel()
			f(t, initiator)
		})
	}
}

// v2Run is one IKEv2 negotiation in a fresh lab, captured on espgw's WAN link.
type v2Run struct {
	l       *lab
	sw      *strongswan.Charon
	g       *espgwtest.Gateway
	ike     strongswan.IKESA
	child   strongswan.ChildSA
	capture *testutil.Capture
}

// negotiateV2Captured starts the partner and espgw with set's proposals (startV2 with
// tweak) while capturing, runs before (if any) and brings the tunnel up by initiator.
func negotiateV2Captured(t *testing.T, set proposalSet, initiator string, before func(*lab),
	tweak func(*strongswan.Config, *espgwtest.Connection)) v2Run {
	t.Helper()
	r := v2Run{l: newLab(t)}
	r.capture = testutil.StartCapture(t, r.l.gw, gwWAN, "udp")
	sw, g := startV2(t, r.l, set, labPSK, "manual", tweak)
	if before != nil {
		before(r.l)
	}
	r.sw, r.g = sw, g
	r.ike, r.child, _, _ = negotiate(t, g, sw, initiator)
	return r
}

// leaveHalfOpen sends strongSwan a valid IKE_SA_INIT from espgw's address but another port
// and ignores the answer: charon keeps a half-open IKE_SA (for its half_open_timeout, 30 s).
func leaveHalfOpen(t *testing.T, l *lab, ike string) {
	t.Helper()
	props, err := proposal.ParseIKEv2(ike)
	if err != nil {
		t.Fatal(err)
	}
	g, err := dh.ByID(props[0].Group)
	if err != nil {
		t.Fatal(err)
	}
	key, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := ikev2.Message{Header: ikev2.Header{Version: ikev2.Version, Exchange: ikev2.ExchangeIKESAInit, Flags: ikev2.FlagInitiator},
		Payloads: []ikev2.Payload{&ikev2.SA{Proposals: []ikev2.Proposal{props[0].Proposal(1, nil)}},
			&ikev2.KE{Group: props[0].Group, Data: key.Public()}, &ikev2.Nonce{Data: make([]byte, 32)}}}
	if _, err := rand.Read(m.Header.SPIi[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(m.Payloads[2].(*ikev2.Nonce).Data); err != nil {
		t.Fatal(err)
	}
	l.gw.In(t, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(gwAddr), Port: 5500}, &net.UDPAddr{IP: net.ParseIP(partnerAddr), Port: 500})
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(m.Marshal()); err != nil {
			return fmt.Errorf("forged IKE_SA_INIT: %w", err)
		}
		return nil
	})
}

// TestIKEv2CookieInvalidKE: COOKIE, then INVALID_KE_PAYLOAD (RFC 7296 2.6). espgw offers
// modp2048 first and ecp256 second; strongSwan takes only ecp256 and demands a cookie. The
// wire shows espgw's three IKE_SA_INIT requests: modp2048 without a cookie, modp2048 with
// it, ecp256 with it; strongSwan lists the IKE_SA ESTABLISHED with ECP_256.
func TestIKEv2CookieInvalidKE(t *testing.T) {
	t.Parallel()
	set := proposalSet{name: "modp2048-then-ecp256", ike: "aes128gcm16-prfsha256-modp2048, aes128gcm16-prfsha256-ecp256", esp: v2Sets[1].esp}
	r := negotiateV2Captured(t, set, byEspgwUp, func(l *lab) { leaveHalfOpen(t, l, v2Sets[1].ike) },
		func(s *strongswan.Config, c *espgwtest.Connection) {
			s.IKEProposals = v2Sets[1].ike
			s.Charon = "cookie_threshold = 1"
		})
	pcap := r.capture.Stop()
	var got []string
	for _, row := range testutil.TShark(t, pcap, testutil.Keys{}, "isakmp.exchangetype == 34 && isakmp.flag_r == 0 && udp.srcport == 500 && ip.src == "+gwAddr,
		"isakmp.key_exchange.dh_group", "isakmp.notify.msgtype") {
		got = append(got, row.First("isakmp.key_exchange.dh_group")+"/"+strings.Join(row["isakmp.notify.msgtype"], ","))
	}
	want := []string{"14/", "14/" + notifyCookie, "19/" + notifyCookie}
	if len(got) != 3 || !strings.HasPrefix(got[0], want[0]) || strings.Contains(got[0], notifyCookie) ||
		!strings.HasPrefix(got[1], want[1]) || !strings.HasPrefix(got[2], want[2]) {
		t.Errorf("espgw's IKE_SA_INIT requests (group/notifications first COOKIE): %q, want %q", got, want)
	}
	if !strings.Contains(r.ike.Proposal(), "ECP_256") {
		t.Errorf("strongSwan's IKE_SA proposal %s, want ECP_256", r.ike.Proposal())
	}
	t.Logf("strongSwan: IKE_SA %s %s; espgw's IKE_SA_INIT requests (group/notifications): %q", r.ike.State, r.ike.Proposal(), got)
}
