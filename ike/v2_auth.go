package ike

import (
	"bytes"
	"context"
	"crypto/hmac"
	"fmt"
	"net/netip"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/model"
)

// IKE_AUTH with pre-shared keys (RFC 7296 1.2, 2.15) and the first CHILD_SA:
//
//	HDR, SK {IDi, [N(INITIAL_CONTACT)], AUTH, SAi2, TSi, TSr}  -->
//	                                   <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
//
// AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <signed octets>), where a side's signed octets
// are its IKE_SA_INIT message, the peer's nonce and prf(SK_p, its ID payload body). A
// child SA the responder refuses (N(NO_PROPOSAL_CHOSEN), N(TS_UNACCEPTABLE)) fails alone:
// the IKE SA is established all the same.

// v2ID is the ID payload of an identity; a zero Identity is the IKE address.
func v2ID(id model.Identity, addr netip.Addr, responder bool) *ikev2.ID {
	p := &ikev2.ID{Responder: responder}
	switch id.Kind {
	case model.IDFQDN:
		p.IDType, p.Data = ikev2.IDFQDN, []byte(id.Name)
	case model.IDUserFQDN:
		p.IDType, p.Data = ikev2.IDRFC822, []byte(id.Name)
	case model.IDKeyID:
		p.IDType, p.Data = ikev2.IDKeyID, []byte(id.Name)
	default:
		if id.Kind == model.IDAddr {
			addr = id.Addr
		}
		addr = addr.Unmap()
		p.IDType, p.Data = ikev2.IDIPv4Addr, addr.AsSlice()
		if addr.Is6() {
			p.IDType = ikev2.IDIPv6Addr
		}
	}
	return p
}

// idBody is the ID payload's body, which AUTH signs (RFC 7296 2.15: IDi').
func idBody(id *ikev2.ID) []byte { return append([]byte{byte(id.IDType), 0, 0, 0}, id.Data...) }

// v2IDString formats an ID payload for errors.
func v2IDString(id *ikev2.ID) string {
	switch id.IDType {
	case ikev2.IDIPv4Addr, ikev2.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return fmt.Sprintf("%s %s", id.IDType, a)
		}
	case ikev2.IDFQDN, ikev2.IDRFC822, ikev2.IDKeyID:
		return fmt.Sprintf("%s %q", id.IDType, id.Data)
	}
	return fmt.Sprintf("%s %x", id.IDType, id.Data)
}

// authData is the AUTH value of one side: ours (mine) or the peer's, from its ID payload.
func (sa *v2SA) authData(id *ikev2.ID, mine bool) []byte {
	h := sa.prop.PRF
	first, nonce, skp := sa.initReq, sa.nonceR, sa.keys.PI
	if sa.initiator != mine { // the responder's side
		first, nonce, skp = sa.initResp, sa.nonceI, sa.keys.PR
	}
	return keymat.PSKAuth(h, sa.conn.cfg.PSK, keymat.SignedOctets(h, first, nonce, skp, idBody(id)))
}

// verifyPeer checks the peer's identity against remote_id and its AUTH against our key.
func (sa *v2SA) verifyPeer(ps []ikev2.Payload) error {
	idType := ikev2.PayloadIDi
	if sa.initiator {
		idType = ikev2.PayloadIDr
	}
	var id *ikev2.ID
	for _, p := range ps {
		if i, ok := p.(*ikev2.ID); ok && i.Type() == idType {
			id = i
		}
	}
	auth := ikev2.Find[*ikev2.Auth](ps)
	if id == nil || auth == nil {
		return fmt.Errorf("%w: IKE_AUTH from %v lacks %s or AUTH (got %s)", ErrPSKMismatch, sa.remote, idType, payloadNames(ps))
	}
	want := v2ID(sa.conn.cfg.RemoteID, sa.conn.cfg.RemoteAddress, !sa.initiator)
	if id.IDType != want.IDType || !bytes.Equal(id.Data, want.Data) {
		return fmt.Errorf("%w: peer identity %s, want remote_id %s", ErrIDMismatch, v2IDString(id), v2IDString(want))
	}
	if auth.Method != ikev2.AuthSharedKeyMIC {
		return fmt.Errorf("%w: peer authenticates with %s, want %s (pre-shared key)", ErrPSKMismatch, auth.Method, ikev2.AuthSharedKeyMIC)
	}
	if !hmac.Equal(auth.Data, sa.authData(id, false)) {
		return fmt.Errorf("%w: the peer's AUTH payload does not verify with our pre-shared key (AUTHENTICATION_FAILED)", ErrPSKMismatch)
	}
	return nil
}

// ourIDAuth are our ID and AUTH payloads.
func (sa *v2SA) ourIDAuth() []ikev2.Payload {
	id := v2ID(sa.conn.cfg.LocalID, sa.local.Addr(), !sa.initiator)
	return []ikev2.Payload{id, &ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: sa.authData(id, true)}}
}

// sendAuth sends the IKE_AUTH request with the first waiting tunnel's child SA.
func (e *Engine) sendAuth(sa *v2SA) error {
	c := sa.conn
	idAuth := sa.ourIDAuth()
	ps := idAuth[:1:1]
	if !e.hasOtherV2(sa) {
		ps = append(ps, &ikev2.Notify{NotifyType: ikev2.NotifyInitialContact})
	}
	ps = append(ps, idAuth[1])
	if len(c.waiting) > 0 {
		t := c.waiting[0]
		c.waiting = c.waiting[1:]
		spi, err := e.opts.Kernel.AllocSPI(context.Background(), sa.local.Addr(), sa.remote.Addr())
		if err != nil {
			t.notify(fmt.Errorf("ike: allocating SPI: %w", err))
		} else {
			sa.authTunnel, sa.authSPI = t, spi
			t.v2Pending = true
			local, remote := t.offerTS(nil)
			ps = append(ps, childOffer(&t.cfg, spi, false), tsPayload(local, false), tsPayload(remote, true))
		}
	}
	sa.state = v2AuthSent
	sa.reqID = 1
	sa.request(&v2Request{exchange: ikev2.ExchangeIKEAuth, payloads: ps,
		onReply: func(ps []ikev2.Payload) error { return e.handleAuthResponse(sa, ps) }})
	return nil
}

// hasOtherV2 reports whether another IKEv2 SA with the peer is established (INITIAL_CONTACT
// goes only into the first).
func (e *Engine) hasOtherV2(sa *v2SA) bool {
	for _, o := range e.v2SAs {
		if o != sa && o.state == v2Established && o.remote.Addr() == sa.remote.Addr() {
			return true
		}
	}
	return false
}

// handleAuthResponse authenticates the responder, establishes the IKE SA and installs the
// child SA it accepted.
func (e *Engine) handleAuthResponse(sa *v2SA, ps []ikev2.Payload) error {
	if ikev2.Find[*ikev2.Auth](ps) == nil {
		if n := firstError(ps); n != nil {
			return fatal(e.v2PeerError(sa, n, "IKE_AUTH", nil))
		}
	}
	if err := sa.verifyPeer(ps); err != nil {
		return fatal(err)
	}
	e.establishV2(sa, nil)
	if t := sa.authTunnel; t != nil {
		sa.authTunnel = nil
		t.v2Pending = false
		spi := sa.authSPI
		sa.authSPI = 0
		if err := e.acceptChild(sa, t, nil, ps, spi, sa.nonceI, sa.nonceR, nil); err != nil {
			e.releaseSPI(sa, spi)
			e.childFailed(sa, t, true, err)
		}
	}
	e.runQueueV2(sa.conn)
	return nil
}

// handleAuthRequest is the responder's IKE_AUTH.
func (e *Engine) handleAuthRequest(sa *v2SA, in *v2Inbound, ps []ikev2.Payload) error {
	sa.floatTo(in)
	if err := sa.verifyPeer(ps); err != nil {
		sa.respond(ikev2.ExchangeIKEAuth, in.m.Header.MessageID, &ikev2.Notify{NotifyType: ikev2.NotifyAuthenticationFailed})
		return fatal(err)
	}
	sa.initialContact = len(ikev2.Notifies(ps, ikev2.NotifyInitialContact)) > 0
	e.establishV2(sa, nil)
	out, install := sa.ourIDAuth(), func() {}
	if ikev2.Find[*ikev2.SA](ps) != nil {
		var child []ikev2.Payload
		child, install = e.answerChild(sa, ps, sa.nonceI, sa.nonceR, nil)
		out = append(out, child...)
	}
	sa.respond(ikev2.ExchangeIKEAuth, in.m.Header.MessageID, out...)
	install()
	// Tunnels asked for while the peer's IKE SA was being negotiated waited for it.
	e.runQueueV2(sa.conn)
	return nil
}

// floatTo follows the initiator to the addresses of its IKE_AUTH request (port 4500 after
// NAT detection).
func (sa *v2SA) floatTo(in *v2Inbound) {
	sa.local, sa.remote = in.local, in.remote
}

// releaseSPI returns an inbound SPI that will not be installed.
func (e *Engine) releaseSPI(sa *v2SA, spi uint32) {
	if err := e.opts.Kernel.ReleaseSPI(context.Background(), sa.local.Addr(), sa.remote.Addr(), spi); err != nil {
		e.log.Warn("releasing SPI failed", sa.logArgs("spi", hexSPI(spi), "err", err)...)
	}
}

// childOffer is the SA payload offering t's ESP proposals with our inbound SPI; withDH adds
// the PFS group (CREATE_CHILD_SA).
func childOffer(t *model.Tunnel, spi uint32, withDH bool) *ikev2.SA {
	s := &ikev2.SA{}
	spiB := spiBytes(spi)
	for i, p := range t.Proposals {
		s.Proposals = append(s.Proposals, p.IKEv2Proposal(uint8(i+1), spiB, withDH))
	}
	return s
}

func spiBytes(spi uint32) []byte {
	return []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
}
