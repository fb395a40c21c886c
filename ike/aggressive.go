package ike

import (
	"crypto/hmac"
	"fmt"

	"github.com/espgw/espgw/ike/isakmp"
)

// Aggressive mode with pre-shared keys (RFC 2409 5.4) and RFC 3947 NAT-D:
//
//	AM1  HDR, SA, KE, Ni, IDii, VID                        -->
//	AM2         <--  HDR, SA, KE, Nr, IDir, HASH_R, VID, NAT-D, NAT-D
//	AM3  HDR*, HASH_I, NAT-D, NAT-D                        -->  (port 4500 when NAT-T floats)
//
// The KE in AM1 fixes the DH group, so every configured proposal should use the same one;
// the initiator uses the first proposal's. AM3 is sent encrypted and accepted either way.

func (e *Engine) sendAM1(sa *ikeSA) error {
	c := &sa.conn.cfg
	offer := ikeOffer(c)
	sa.saiB = isakmp.MarshalBody(offer)
	sa.prop.Group = c.IKE.Proposals[0].Group
	sa.state = stateAM1Sent
	e.phase1DH(sa, &dhJob{group: sa.prop.Group}, func([]byte) error {
		kn, err := e.ourKENonce(sa)
		if err != nil {
			return err
		}
		id := phase1ID(c.LocalID, sa.local.Addr())
		sa.idB = isakmp.MarshalBody(id)
		ps := append([]isakmp.Payload{offer}, kn...)
		ps = append(ps, id)
		ps = append(ps, ourVendorIDs(c)...)
		sa.send(sa.plain(isakmp.ExchangeAggressive, ps...), sa.local, sa.remote, true)
		return nil
	})
	return nil
}

// handleAggressive processes an aggressive-mode message for an existing IKE SA.
func (e *Engine) handleAggressive(sa *ikeSA, in *inbound) error {
	if sa.dhBusy {
		return errIgnore // the peer retransmits; our answer is being computed
	}
	switch sa.state {
	case stateAM1Sent:
		return e.handleAM2(sa, in)
	case stateAM2Sent:
		return e.handleAM3(sa, in)
	}
	return errIgnore
}

// respondAM1 answers a peer's AM1 with AM2.
func (e *Engine) respondAM1(c *connection, in *inbound) error {
	sa, err := e.newResponderSA(c, in)
	if err != nil {
		return err
	}
	ke, _, okKE := findPayload[*isakmp.KeyExchange](in.m.Payloads, nil)
	id, idRaw, okID := findPayload[*isakmp.Identification](in.m.Payloads, in.m.Raw)
	if !okKE || !okID {
		return fmt.Errorf("AM1 from %v lacks KE or ID payload", in.remote)
	}
	sa.kePeerLen = len(ke.Data)
	reply, err := e.chooseIKE(sa, in)
	if err != nil {
		return err
	}
	if err := checkPeerID(&c.cfg, id); err != nil {
		e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyInvalidIDInformation)
		return err
	}
	sa.peerIDB = idRaw.Body()
	if err := sa.takeKENonce(in.m.Payloads); err != nil {
		return err
	}
	if !e.allowResponderDH(in.remote.Addr(), sa.prop.Group) {
		return errDHRateLimit
	}
	// Registered now, so that the peer's retransmitted AM1 finds the SA while its DH is out.
	e.registerResponder(sa, in)
	sa.state = stateAM2Sent
	e.phase1DH(sa, &dhJob{group: sa.prop.Group, peer: sa.gxi}, func(shared []byte) error {
		kn, err := e.ourKENonceKeys(sa, shared)
		if err != nil {
			return err
		}
		my := phase1ID(c.cfg.LocalID, sa.local.Addr())
		sa.idB = isakmp.MarshalBody(my)
		ps := append([]isakmp.Payload{reply}, kn...)
		ps = append(ps, my, &isakmp.Hash{Data: sa.hashR(sa.idB)})
		ps = append(ps, ourVendorIDs(&c.cfg)...)
		ps = append(ps, sa.natDPayloads()...)
		sa.send(sa.plain(isakmp.ExchangeAggressive, ps...), sa.local, sa.remote, true)
		return nil
	})
	return nil
}

func (e *Engine) handleAM2(sa *ikeSA, in *inbound) error {
	if err := checkResponderCookie(in); err != nil {
		return err
	}
	ps := in.m.Payloads
	sa.rcookie = in.m.Header.ResponderCookie
	if err := sa.acceptIKEChoice(ps); err != nil {
		return fatal(err)
	}
	sa.noteVendorIDs(ps)
	if err := sa.takeKENonce(ps); err != nil {
		return fatal(err)
	}
	id, idRaw, okID := findPayload[*isakmp.Identification](ps, in.m.Raw)
	h, _, okH := findPayload[*isakmp.Hash](ps, nil)
	if !okID || !okH {
		return fatal(fmt.Errorf("AM2 from %v lacks ID or HASH payload", in.remote))
	}
	key := sa.dhKey
	sa.dhKey = nil
	e.phase1DH(sa, &dhJob{key: key, peer: sa.gxr}, func(shared []byte) error {
		if err := sa.deriveKeys(shared); err != nil {
			return err
		}
		return e.sendAM3(sa, in, id, idRaw.Body(), h.Data)
	})
	return nil
}

// sendAM3 checks the responder's AM2 (HASH_R over its identity idB) once the phase-1 keys
// exist and authenticates us.
func (e *Engine) sendAM3(sa *ikeSA, in *inbound, id *isakmp.Identification, idB, hashR []byte) error {
	ps := in.m.Payloads
	if !hmac.Equal(hashR, sa.hashR(idB)) {
		e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyInvalidHashInformation)
		return fmt.Errorf("%w: AM2 HASH_R from %v does not verify", ErrPSKMismatch, in.remote)
	}
	if err := checkPeerID(&sa.conn.cfg, id); err != nil {
		return err
	}
	sa.peerIDB = idB
	sa.checkNATD(ps, in.local, in.remote)
	sa.accepted(in.raw)
	sa.floatPorts()
	out := []isakmp.Payload{&isakmp.Hash{Data: sa.hashI(sa.idB)}}
	out = append(out, sa.natDPayloads()...)
	if !e.hasOtherSA(sa) {
		out = append(out, sa.isakmpNotify(isakmp.NotifyInitialContact))
	}
	msg, iv := sa.seal(sa.header(isakmp.ExchangeAggressive, 0), out, sa.ivChain)
	sa.ivChain = iv
	sa.send(msg, sa.local, sa.remote, false)
	e.establish(sa)
	return nil
}

func (e *Engine) handleAM3(sa *ikeSA, in *inbound) error {
	ps, raws := in.m.Payloads, in.m.Raw
	iv := sa.ivChain
	encrypted := in.m.Header.Flags&isakmp.FlagEncryption != 0
	if encrypted {
		var err error
		if ps, raws, iv, err = sa.open(in.m, in.raw, sa.ivChain); err != nil {
			sa.e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyPayloadMalformed)
			return fatal(fmt.Errorf("%w: AM3 from %v: %w", ErrPSKMismatch, in.remote, err))
		}
	}
	h, _, ok := findPayload[*isakmp.Hash](ps, raws)
	if !ok || !hmac.Equal(h.Data, sa.hashI(sa.peerIDB)) {
		sa.e.sendPhase1Notify(sa, in.local, in.remote, isakmp.NotifyInvalidHashInformation)
		return fatal(fmt.Errorf("%w: AM3 HASH_I from %v does not verify", ErrPSKMismatch, in.remote))
	}
	sa.ivChain = iv
	sa.accepted(in.raw)
	sa.checkNATD(ps, in.local, in.remote)
	// HASH_I covers none of the other payloads: in a plaintext AM3 anyone on the path may
	// have added INITIAL-CONTACT, which would tear down every other SA with the peer.
	for _, p := range ps {
		if n, ok := p.(*isakmp.Notification); ok && n.NotifyType == isakmp.NotifyInitialContact && encrypted {
			sa.initialContact = true
		}
	}
	sa.local, sa.remote = in.local, in.remote
	sa.stop()
	e.establish(sa)
	return nil
}
