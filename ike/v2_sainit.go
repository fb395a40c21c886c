package ike

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/model"
)

// IKE_SA_INIT (RFC 7296 1.2), with NAT detection (2.23), COOKIE (2.6) and
// INVALID_KE_PAYLOAD (1.2):
//
//	HDR, SAi1, KEi, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP)  -->
//	                                  <--  HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*) x 2
//
// Anyone can send the request from any address, so the responder validates the KE before
// any Diffie-Hellman work, takes a token of the responder DH budget (dhlimit.go) and
// counts the SA as half-open until IKE_AUTH authenticates the peer.

// startV2 initiates an IKE SA with c's peer; the first waiting tunnel's child SA will ride
// on its IKE_AUTH.
func (e *Engine) startV2(c *connection) {
	local := netip.AddrPortFrom(c.cfg.LocalAddress, conn.IKEPort)
	remote := netip.AddrPortFrom(c.cfg.RemoteAddress, conn.IKEPort)
	sa, err := e.newV2SA(c, true, local, remote)
	if err == nil {
		e.v2SAs[sa.spiI] = sa
		sa.group = c.cfg.IKE.V2Proposals[0].Group
		err = e.sendSAInit(sa)
	}
	if err != nil {
		e.failStart(c, err)
		if sa != nil {
			e.deleteV2SA(sa, false, err)
		}
		return
	}
	e.log.Info("initiating IKE SA", sa.logArgs()...)
}

// sendSAInit sends (or sends again, after INVALID_KE_PAYLOAD or COOKIE) the IKE_SA_INIT
// request with a KE of sa.group.
func (e *Engine) sendSAInit(sa *v2SA) error {
	dropKey(&sa.dhKey)
	key, err := e.makeKE(sa.group)
	if err != nil {
		return err
	}
	sa.dhKey = key
	if sa.nonceI == nil {
		if sa.nonceI, err = e.makeNonce(); err != nil {
			return err
		}
	}
	var ps []ikev2.Payload
	if sa.cookie != nil {
		ps = append(ps, &ikev2.Notify{NotifyType: ikev2.NotifyCookie, Data: sa.cookie})
	}
	ps = append(ps, v2Offer(&sa.conn.cfg), &ikev2.KE{Group: sa.group, Data: key.Public()}, &ikev2.Nonce{Data: sa.nonceI})
	ps = append(ps, sa.natDNotifies()...)
	ps = append(ps, sa.fragmentOffer()...)
	sa.state = v2InitSent
	sa.initReq = sa.plain(ikev2.ExchangeIKESAInit, 0, false, ps...)
	sa.req.send(sa.initReq, sa.local, sa.remote, true)
	return nil
}

// v2Offer is our SA payload of IKE_SA_INIT: every configured proposal, in order.
func v2Offer(c *model.Connection) *ikev2.SA {
	s := &ikev2.SA{}
	for i, p := range c.IKE.V2Proposals {
		s.Proposals = append(s.Proposals, p.Proposal(uint8(i+1), nil))
	}
	return s
}

// natDHash is SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 2.23), with the SPIs of the
// message's header: in the request SPIr is still zero.
func (sa *v2SA) natDHash(spiR ikev2.SPI, ap netip.AddrPort) []byte {
	h := sha1.New()
	h.Write(sa.spiI[:])
	h.Write(spiR[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	h.Write(binary.BigEndian.AppendUint16(nil, ap.Port()))
	return h.Sum(nil)
}

// natDNotifies are our NAT_DETECTION_SOURCE_IP and _DESTINATION_IP notifications. With
// nat_traversal: force our source hash is deliberately wrong, so that both sides see us
// behind a NAT and encapsulate ESP in UDP.
func (sa *v2SA) natDNotifies() []ikev2.Payload {
	if sa.conn.cfg.IKE.NATTraversal == model.NATTOff {
		return nil
	}
	spiR := ikev2.SPI{}
	if !sa.initiator {
		spiR = sa.spiR
	}
	src := sa.natDHash(spiR, sa.local)
	if sa.conn.cfg.IKE.NATTraversal == model.NATTForce {
		src[0] ^= 0xff
	}
	return []ikev2.Payload{
		&ikev2.Notify{NotifyType: ikev2.NotifyNATDetectionSourceIP, Data: src},
		&ikev2.Notify{NotifyType: ikev2.NotifyNATDetectionDestIP, Data: sa.natDHash(spiR, sa.remote)},
	}
}

// checkNATD compares the peer's NAT detection hashes in the IKE_SA_INIT message in with the
// addresses it came between (RFC 7296 2.23). Without them the peer does not do NAT-T.
func (sa *v2SA) checkNATD(in *v2Inbound) {
	ps, local, remote, spiR := in.m.Payloads, in.local, in.remote, in.m.Header.SPIr
	srcs := ikev2.Notifies(ps, ikev2.NotifyNATDetectionSourceIP)
	dst := ikev2.Notifies(ps, ikev2.NotifyNATDetectionDestIP)
	if len(srcs) == 0 || len(dst) == 0 || sa.conn.cfg.IKE.NATTraversal == model.NATTOff {
		return
	}
	sa.natLocal = !bytes.Equal(dst[0].Data, sa.natDHash(spiR, local))
	sa.behindNAT = sa.natLocal
	peer := sa.natDHash(spiR, remote)
	sa.natRemote = !slices.ContainsFunc(srcs, func(n *ikev2.Notify) bool { return bytes.Equal(n.Data, peer) })
	if sa.conn.cfg.IKE.NATTraversal == model.NATTForce {
		sa.natLocal = true
	}
}

// handleSAInitResponse processes the responder's IKE_SA_INIT answer.
func (e *Engine) handleSAInitResponse(sa *v2SA, in *v2Inbound) error {
	ps := in.m.Payloads
	if ns := ikev2.Notifies(ps, ikev2.NotifyCookie); len(ns) > 0 {
		return e.takeCookie(sa, ns[0])
	}
	if ns := ikev2.Notifies(ps, ikev2.NotifyInvalidKEPayload); len(ns) > 0 {
		return e.invalidKE(sa, ns[0])
	}
	if n := firstError(ps); n != nil {
		return fatal(e.v2PeerError(sa, n, "IKE_SA_INIT", nil))
	}
	sar, ke, nonce := ikev2.Find[*ikev2.SA](ps), ikev2.Find[*ikev2.KE](ps), ikev2.Find[*ikev2.Nonce](ps)
	if sar == nil || ke == nil || nonce == nil || len(sar.Proposals) != 1 {
		return fatal(fmt.Errorf("IKE_SA_INIT response from %v: want SA with one proposal, KE and Nr, got %s", in.remote, payloadNames(ps)))
	}
	if in.m.Header.SPIr == (ikev2.SPI{}) {
		return fatal(fmt.Errorf("IKE_SA_INIT response from %v: responder SPI is zero, want the responder's random SPI", in.remote))
	}
	_, prop, err := proposal.SelectIKEv2(sa.conn.cfg.IKE.V2Proposals, sar.Proposals)
	if err != nil {
		return fatal(fmt.Errorf("IKE_SA_INIT response from %v: the responder chose a proposal we did not offer: %w", in.remote, err))
	}
	if ke.Group != sa.group || prop.Group != sa.group {
		return fatal(fmt.Errorf("IKE_SA_INIT response from %v: KE of group %d, proposal group %d, want %d (our KE)", in.remote, ke.Group, prop.Group, sa.group))
	}
	sa.spiR = in.m.Header.SPIr
	sa.prop = prop
	sa.nonceR = bytes.Clone(nonce.Data)
	sa.initResp = bytes.Clone(in.raw)
	sa.checkNATD(in)
	sa.takeFragmentOffer(ps)
	if err := sa.deriveV2Keys(ke.Data, nil); err != nil {
		return fatal(err)
	}
	sa.req.stop()
	sa.floatPorts()
	return e.sendAuth(sa)
}

// retrySAInit sends IKE_SA_INIT again (message ID 0) after COOKIE or INVALID_KE_PAYLOAD.
func (e *Engine) retrySAInit(sa *v2SA) error {
	if err := e.sendSAInit(sa); err != nil {
		return fatal(err)
	}
	return nil
}

// invalidKE retries IKE_SA_INIT with the group the responder asks for, once, if we
// proposed it (RFC 7296 1.2).
func (e *Engine) invalidKE(sa *v2SA, n *ikev2.Notify) error {
	if len(n.Data) != 2 {
		return fatal(fmt.Errorf("INVALID_KE_PAYLOAD from %v carries %d bytes, want a 2-byte group", sa.remote, len(n.Data)))
	}
	g := binary.BigEndian.Uint16(n.Data)
	offered := slices.ContainsFunc(sa.conn.cfg.IKE.V2Proposals, func(p proposal.IKEv2) bool { return p.Group == g })
	if !offered || g == sa.group {
		return fatal(fmt.Errorf("%w: INVALID_KE_PAYLOAD asks for group %s, ours: %s", ErrNoProposalChosen,
			proposal.GroupName(g), proposal.FormatIKEv2(sa.conn.cfg.IKE.V2Proposals)))
	}
	e.log.Info("responder wants another DH group, retrying", sa.logArgs("group", proposal.GroupName(g))...)
	sa.group = g
	return e.retrySAInit(sa)
}

// deriveV2Keys computes g^ir, SKEYSEED and the SK_* keys (RFC 7296 2.14); for an IKE SA
// that replaces old (2.18) SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with old's PRF.
func (sa *v2SA) deriveV2Keys(peerKE []byte, old *v2SA) error {
	gir, err := sa.dhKey.SharedSecret(peerKE)
	if err != nil {
		return fmt.Errorf("peer's KE: %w", err)
	}
	defer clear(gir)
	dropKey(&sa.dhKey)
	h := sa.prop.PRF
	integ := 0
	if sa.prop.Integrity != proposal.HashNone {
		integ = sa.prop.Integrity.Size()
	}
	var skeyseed []byte
	if old != nil {
		skeyseed = keymat.RekeySKEYSEED(old.prop.PRF, old.keys.D, gir, sa.nonceI, sa.nonceR)
	} else {
		skeyseed = keymat.SKEYSEED(h, sa.nonceI, sa.nonceR, gir)
	}
	defer clear(skeyseed)
	sa.keys = keymat.DeriveIKESA(h, skeyseed, sa.nonceI, sa.nonceR, sa.spiI[:], sa.spiR[:], integ, sa.prop.KeyLen())
	sa.sk, err = newV2Cipher(sa.prop, &sa.keys, sa.initiator)
	return err
}

// floatPorts moves the IKE SA to port 4500 once a NAT is detected (RFC 7296 2.23).
func (sa *v2SA) floatPorts() {
	if !sa.natDetected() || sa.local.Port() == conn.NATTPort {
		return
	}
	sa.local = netip.AddrPortFrom(sa.local.Addr(), conn.NATTPort)
	sa.remote = netip.AddrPortFrom(sa.remote.Addr(), conn.NATTPort)
}

// respondSAInit answers a peer's IKE_SA_INIT request for a new IKE SA.
func (e *Engine) respondSAInit(in *v2Inbound) {
	peer := in.remote.Addr()
	if sa := e.v2HalfOpenFor(in); sa != nil {
		if !sa.resp.duplicate(in.raw) {
			e.log.Debug("dropping second IKE_SA_INIT for a half-open SA", sa.logArgs()...)
		}
		return
	}
	c := e.connectionFor(in.local.Addr(), peer)
	if c == nil {
		e.logUnauth("no connection configured for peer", peer, "peer", in.remote, "local", in.local, "ike", 2)
		return
	}
	e.observeReceived(c)
	if c.cfg.IKE.Version != 2 {
		e.logUnauth("peer speaks IKEv2, connection is configured for IKEv1", peer, "conn", c.cfg.Name, "peer", in.remote)
		return
	}
	if !e.checkCookie(c, in) {
		return
	}
	if !e.admitV2Responder(peer) {
		e.logUnauth("too many half-open IKE SAs, dropping new one", peer, "peer", in.remote,
			"limit", maxHalfOpen, "peer_limit", maxHalfOpenPerPeer)
		return
	}
	err := e.answerSAInit(c, in)
	if err != nil {
		e.observe(Outcome{Connection: c.cfg.Name, Exchange: ExchangeIKEv2, Result: Classify(err)})
		if e.logUnauth("negotiation failed on the peer's first message", peer, "conn", c.cfg.Name, "peer", in.remote, "err", err) {
			e.addError(c.cfg.Name, err)
		}
	}
}

// v2HalfOpenFor returns our responder SA for a retransmitted IKE_SA_INIT request.
func (e *Engine) v2HalfOpenFor(in *v2Inbound) *v2SA {
	for _, sa := range e.v2SAs {
		if !sa.initiator && sa.spiI == in.m.Header.SPIi && sa.remote.Addr() == in.remote.Addr() {
			return sa
		}
	}
	return nil
}

// admitV2Responder applies the half-open limits of admitResponder to IKEv2 responders: at
// the peer's limit, or the global one, one of the peer's half-open SAs chosen at random
// makes room, so that spoofed IKE_SA_INITs evict the real peer's only by chance; with none
// of its own the new one is dropped (the real peer retransmits). Half-open SAs last at most
// the retransmission timeout (answerSAInit).
func (e *Engine) admitV2Responder(peer netip.Addr) bool {
	var victims []*v2SA
	for _, sa := range e.v2SAs {
		if !sa.initiator && sa.state == v2InitDone && sa.remote.Addr() == peer {
			victims = append(victims, sa)
		}
	}
	if len(victims) < maxHalfOpenPerPeer && e.halfOpen < maxHalfOpen {
		return true
	}
	if len(victims) == 0 {
		return false
	}
	e.deleteV2SA(victims[e.randomIndex(len(victims))], false, errEvicted)
	return true
}

// answerSAInit chooses a proposal, checks the KE and answers; on a mismatch it answers with
// the error notification, unprotected.
func (e *Engine) answerSAInit(c *connection, in *v2Inbound) error {
	ps := in.m.Payloads
	sai, ke, nonce := ikev2.Find[*ikev2.SA](ps), ikev2.Find[*ikev2.KE](ps), ikev2.Find[*ikev2.Nonce](ps)
	reject := func(t ikev2.NotifyType, data []byte) { e.sendPlainNotify(in, t, data) }
	if sai == nil || ke == nil || nonce == nil {
		reject(ikev2.NotifyInvalidSyntax, nil)
		return fmt.Errorf("IKE_SA_INIT from %v: want SA, KE and Ni, got %s", in.remote, payloadNames(ps))
	}
	chosen, prop, err := proposal.SelectIKEv2(c.cfg.IKE.V2Proposals, sai.Proposals)
	if err != nil {
		reject(ikev2.NotifyNoProposalChosen, nil)
		return fmt.Errorf("IKE_SA_INIT from %v: %w", in.remote, err)
	}
	if ke.Group != prop.Group {
		reject(ikev2.NotifyInvalidKEPayload, binary.BigEndian.AppendUint16(nil, prop.Group))
		return errIgnore // the peer retries with our group
	}
	g, err := dh.ByID(prop.Group)
	if err == nil {
		err = g.CheckPublic(ke.Data)
	}
	if err != nil {
		reject(ikev2.NotifyInvalidSyntax, nil)
		return fmt.Errorf("IKE_SA_INIT from %v: KE: %w", in.remote, err)
	}
	if !e.allowResponderDH(in.remote.Addr(), prop.Group) {
		return errDHRateLimit
	}
	sa, err := e.newV2SA(c, false, in.local, in.remote)
	if err != nil {
		return err
	}
	sa.spiI, sa.prop, sa.group = in.m.Header.SPIi, prop, prop.Group
	sa.nonceI = bytes.Clone(nonce.Data)
	if sa.nonceR, err = e.makeNonce(); err != nil {
		return err
	}
	if sa.dhKey, err = g.GenerateKey(e.opts.Rand); err != nil {
		return err
	}
	pub := sa.dhKey.Public()
	sa.checkNATD(in)
	if err := sa.deriveV2Keys(ke.Data, nil); err != nil {
		return err
	}
	sa.initReq = bytes.Clone(in.raw)
	chosen.SPI = nil
	out := []ikev2.Payload{&ikev2.SA{Proposals: []ikev2.Proposal{chosen}}, &ikev2.KE{Group: prop.Group, Data: pub},
		&ikev2.Nonce{Data: sa.nonceR}}
	if len(ikev2.Notifies(ps, ikev2.NotifyNATDetectionSourceIP)) > 0 {
		out = append(out, sa.natDNotifies()...)
	}
	if sa.takeFragmentOffer(ps); sa.fragments {
		out = append(out, sa.fragmentOffer()...)
	}
	sa.state = v2InitDone
	sa.initResp = sa.plain(ikev2.ExchangeIKESAInit, 0, true, out...)
	e.v2SAs[sa.spiR] = sa
	e.halfOpen++
	sa.halfOpen = e.afterFunc(e.opts.Retransmit.Timeout, func() {
		if sa.state == v2InitDone {
			err := fmt.Errorf("%w: no IKE_AUTH after IKE_SA_INIT", ErrTimeout)
			if e.logUnauth("half-open IKE SA timed out", sa.remote.Addr(), sa.logArgs("err", err)...) {
				e.addError(sa.conn.cfg.Name, err)
			}
			e.deleteV2SA(sa, false, err)
		}
	})
	sa.peerID = 1
	sa.resp.accepted(in.raw)
	sa.resp.send(sa.initResp, sa.local, sa.remote, false)
	e.log.Debug("answered IKE_SA_INIT", sa.logArgs("proposal", prop.String())...)
	return nil
}

// firstError returns the first error notification in ps, or nil.
func firstError(ps []ikev2.Payload) *ikev2.Notify {
	for _, p := range ps {
		if n, ok := p.(*ikev2.Notify); ok && n.NotifyType.IsError() {
			return n
		}
	}
	return nil
}

// payloadNames lists the payload types of a message, for errors.
func payloadNames(ps []ikev2.Payload) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Type().String()
	}
	return fmt.Sprint(names)
}

// v2PeerError turns a peer's error notification into our error, naming what we offered:
// our IKE proposals, or t's ESP proposals when the notification refuses its child SA.
func (e *Engine) v2PeerError(sa *v2SA, n *ikev2.Notify, exchange string, t *tunnel) error {
	c := &sa.conn.cfg
	switch n.NotifyType {
	case ikev2.NotifyNoProposalChosen:
		what, ours := "IKE", proposal.FormatIKEv2(c.IKE.V2Proposals)
		if t != nil {
			what, ours = "ESP", proposal.FormatESP(t.cfg.Proposals)
		}
		return fmt.Errorf("%w: the peer accepted none of our %s proposals for the %s (NO_PROPOSAL_CHOSEN); ours in swanctl syntax: %s",
			ErrNoProposalChosen, what, exchange, ours)
	case ikev2.NotifyAuthenticationFailed:
		return fmt.Errorf("%w: the peer answered %s with AUTHENTICATION_FAILED: it could not verify our AUTH (different pre-shared key, or it does not accept our identity %s)",
			ErrPSKMismatch, exchange, c.LocalID)
	case ikev2.NotifyTSUnacceptable:
		ours := ""
		if t != nil {
			ours = fmt.Sprintf(" %s <-> %s (tunnel %s)", JoinTS(t.localTS()), JoinTS(t.remoteTS()), t.cfg.Name)
		}
		return fmt.Errorf("%w: the peer answered %s with TS_UNACCEPTABLE: it has no policy for our traffic selectors%s", ErrIDMismatch, exchange, ours)
	case ikev2.NotifyInvalidSyntax:
		return fmt.Errorf("%w INVALID_SYNTAX: the peer found our %s request malformed or lacking a payload it requires; its log names which",
			ErrPeerNotify, exchange)
	}
	return fmt.Errorf("%w %s in %s", ErrPeerNotify, n.NotifyType, exchange)
}

// errNoV2Proposals is returned for an IKEv2 connection without IKEv2 proposals.
var errNoV2Proposals = errors.New("ike proposals are empty, want at least one IKEv2 proposal")

// validateV2 checks an IKEv2 connection's IKE proposals.
func validateV2(c *model.Connection) error {
	if len(c.IKE.V2Proposals) == 0 {
		return errNoV2Proposals
	}
	for _, p := range c.IKE.V2Proposals {
		if _, err := dh.ByID(p.Group); err != nil {
			return fmt.Errorf("ike proposal %s: %w", p, err)
		}
	}
	return nil
}
