package ike

import (
	"crypto/hmac"
	"fmt"

	"github.com/espgw/espgw/ike/isakmp"
)

// Main mode with pre-shared keys (RFC 2409 5, 5.4), with the NAT-T additions of RFC 3947:
//
//	MM1  HDR, SA, VID                    -->
//	MM2                                  <--  HDR, SA, VID
//	MM3  HDR, KE, Ni, NAT-D, NAT-D       -->
//	MM4                                  <--  HDR, KE, Nr, NAT-D, NAT-D
//	MM5  HDR*, IDii, HASH_I [, N(IC)]    -->  (from port 4500 when NAT-T floats)
//	MM6                                  <--  HDR*, IDir, HASH_R

func (e *Engine) sendMM1(sa *ikeSA) error {
	offer := ikeOffer(&sa.conn.cfg)
	sa.saiB = isakmp.MarshalBody(offer)
	sa.state = stateMM1Sent
	ps := append([]isakmp.Payload{offer}, ourVendorIDs(&sa.conn.cfg)...)
	sa.send(sa.plain(isakmp.ExchangeIdentityProtection, ps...), sa.local, sa.remote, true)
	return nil
}

// handleMainMode processes a main-mode message for an existing IKE SA.
func (e *Engine) handleMainMode(sa *ikeSA, in *inbound) error {
	if sa.dhBusy {
		return errIgnore // the peer retransmits; our answer is being computed
	}
	switch sa.state {
	case stateMM1Sent:
		return e.handleMM2(sa, in)
	case stateMM2Sent:
		return e.handleMM3(sa, in)
	case stateMM3Sent:
		return e.handleMM4(sa, in)
	case stateMM4Sent:
		return e.handleMM5(sa, in)
	case stateMM5Sent:
		return e.handleMM6(sa, in)
	}
	return errIgnore
}

// respondMM1 creates a responder IKE SA for a new main mode.
func (e *Engine) respondMM1(c *connection, in *inbound) error {
	sa, err := e.newResponderSA(c, in)
	if err != nil {
		return err
	}
	reply, err := e.chooseIKE(sa, in)
	if err != nil {
		return err
	}
	e.registerResponder(sa, in)
	sa.state = stateMM2Sent
	ps := append([]isakmp.Payload{reply}, ourVendorIDs(&c.cfg)...)
	sa.send(sa.plain(isakmp.ExchangeIdentityProtection, ps...), sa.local, sa.remote, true)
	return nil
}

func (e *Engine) handleMM2(sa *ikeSA, in *inbound) error {
	if err := checkResponderCookie(in); err != nil {
		return err
	}
	sa.rcookie = in.m.Header.ResponderCookie
	if err := sa.acceptIKEChoice(in.m.Payloads); err != nil {
		return fatal(err)
	}
	sa.noteVendorIDs(in.m.Payloads)
	e.phase1DH(sa, &dhJob{group: sa.prop.Group}, func(shared []byte) error {
		return e.sendKENonce(sa, in, stateMM3Sent, shared)
	})
	return nil
}

// sendKENonce answers in with our KE, nonce and NAT-D payloads (MM3, MM4) and moves to next.
func (e *Engine) sendKENonce(sa *ikeSA, in *inbound, next phase1State, shared []byte) error {
	ps, err := e.ourKENonceKeys(sa, shared)
	if err != nil {
		return err
	}
	sa.accepted(in.raw)
	sa.state = next
	ps = append(ps, sa.natDPayloads()...)
	sa.send(sa.plain(isakmp.ExchangeIdentityProtection, ps...), sa.local, sa.remote, true)
	return nil
}

func (e *Engine) handleMM3(sa *ikeSA, in *inbound) error {
	if err := sa.takeKENonce(in.m.Payloads); err != nil {
		return err
	}
	if !e.allowResponderDH(in.remote.Addr(), sa.prop.Group) {
		return errDHRateLimit // the peer retransmits MM3
	}
	sa.checkNATD(in.m.Payloads, in.local, in.remote)
	e.phase1DH(sa, &dhJob{group: sa.prop.Group, peer: sa.gxi}, func(shared []byte) error {
		return e.sendKENonce(sa, in, stateMM4Sent, shared)
	})
	return nil
}

func (e *Engine) handleMM4(sa *ikeSA, in *inbound) error {
	if err := sa.takeKENonce(in.m.Payloads); err != nil {
		return err
	}
	sa.checkNATD(in.m.Payloads, in.local, in.remote)
	key := sa.dhKey
	sa.dhKey = nil
	e.phase1DH(sa, &dhJob{key: key, peer: sa.gxr}, func(shared []byte) error {
		if err := sa.deriveKeys(shared); err != nil {
			return err
		}
		e.sendMM5(sa, in)
		return nil
	})
	return nil
}

// sendMM5 authenticates us to the responder, once the phase-1 keys exist.
func (e *Engine) sendMM5(sa *ikeSA, in *inbound) {
	sa.accepted(in.raw)
	sa.floatPorts()
	id := phase1ID(sa.conn.cfg.LocalID, sa.local.Addr())
	sa.idB = isakmp.MarshalBody(id)
	ps := []isakmp.Payload{id, &isakmp.Hash{Data: sa.hashI(sa.idB)}}
	if !e.hasOtherSA(sa) {
		ps = append(ps, sa.isakmpNotify(isakmp.NotifyInitialContact))
	}
	msg, iv := sa.seal(sa.header(isakmp.ExchangeIdentityProtection, 0), ps, sa.ivChain)
	sa.ivChain = iv
	sa.state = stateMM5Sent
	sa.send(msg, sa.local, sa.remote, true)
}

func (e *Engine) handleMM5(sa *ikeSA, in *inbound) error {
	id, idB, err := sa.openAuth(in, "MM5", sa.hashI)
	if err != nil {
		return err
	}
	// The initiator may have floated to port 4500: answer where MM5 came from.
	sa.local, sa.remote = in.local, in.remote
	if err := checkPeerID(&sa.conn.cfg, id); err != nil {
		e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyInvalidIDInformation)
		return fatal(err)
	}
	sa.peerIDB = idB
	my := phase1ID(sa.conn.cfg.LocalID, sa.local.Addr())
	sa.idB = isakmp.MarshalBody(my)
	msg, iv := sa.seal(sa.header(isakmp.ExchangeIdentityProtection, 0),
		[]isakmp.Payload{my, &isakmp.Hash{Data: sa.hashR(sa.idB)}}, sa.ivChain)
	sa.ivChain = iv
	sa.send(msg, sa.local, sa.remote, false)
	e.establish(sa)
	return nil
}

func (e *Engine) handleMM6(sa *ikeSA, in *inbound) error {
	id, idB, err := sa.openAuth(in, "MM6", sa.hashR)
	if err != nil {
		return err
	}
	if err := checkPeerID(&sa.conn.cfg, id); err != nil {
		return fatal(err)
	}
	sa.peerIDB = idB
	sa.stop()
	e.establish(sa)
	return nil
}

// openAuth decrypts the authenticating message of phase 1 (MM5, MM6, AM3) and checks its
// HASH with want(IDii_b or IDir_b). A message that does not decrypt into valid payloads or
// whose HASH differs means the peers' pre-shared keys differ (RFC 2409 5.4): the error
// wraps ErrPSKMismatch and the half-open SA is dropped.
func (sa *ikeSA) openAuth(in *inbound, name string, want func([]byte) []byte) (*isakmp.Identification, []byte, error) {
	ps, raws, iv, err := sa.open(in.m, in.raw, sa.ivChain)
	if err != nil {
		sa.e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyPayloadMalformed)
		return nil, nil, fatal(fmt.Errorf("%w: %s from %v: %w", ErrPSKMismatch, name, in.remote, err))
	}
	id, idRaw, okID := findPayload[*isakmp.Identification](ps, raws)
	h, _, okH := findPayload[*isakmp.Hash](ps, raws)
	if !okID || !okH {
		sa.e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyPayloadMalformed)
		return nil, nil, fatal(fmt.Errorf("%w: %s from %v lacks ID or HASH payload after decryption", ErrPSKMismatch, name, in.remote))
	}
	if !hmac.Equal(h.Data, want(idRaw.Body())) {
		sa.e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyInvalidHashInformation)
		return nil, nil, fatal(fmt.Errorf("%w: %s HASH from %v does not verify", ErrPSKMismatch, name, in.remote))
	}
	sa.ivChain = iv
	sa.accepted(in.raw)
	for _, p := range ps {
		if n, ok := p.(*isakmp.Notification); ok && n.NotifyType == isakmp.NotifyInitialContact {
			sa.initialContact = true
		}
	}
	return id, idRaw.Body(), nil
}

// checkResponderCookie rejects a responder's first message without a responder cookie
// (RFC 2408 3.1): with a zero one kept, later messages of any responder cookie would pass.
func checkResponderCookie(in *inbound) error {
	if in.m.Header.ResponderCookie == ([8]byte{}) {
		return fmt.Errorf("%s reply from %v: responder cookie is zero, want the responder's random cookie", in.m.Header.Exchange, in.remote)
	}
	return nil
}
