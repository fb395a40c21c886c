package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// CHILD_SAs (RFC 7296 1.3, 2.9, 2.17): traffic selectors with narrowing, the ESP proposal,
// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), split into the initiator-to-responder SA's
// encryption and integrity keys, then the other direction's; and CREATE_CHILD_SA for every
// child after the first, with PFS when the tunnel's proposals name a group:
//
//	HDR, SK {SA, Ni, [KEi], TSi, TSr}  -->
//	                              <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}

// tsPayload is the TSi or TSr payload of a side's selectors.
func tsPayload(ts []TrafficSelector, responder bool) *ikev2.TrafficSelectors {
	p := &ikev2.TrafficSelectors{Responder: responder}
	for _, x := range ts {
		p.Selectors = append(p.Selectors, v2Selector(x))
	}
	return p
}

// offeredTS are the selectors we offer for t: the tunnel's subnets, or the child SA's
// negotiated ones when rekeying it (RFC 7296 2.8: the new SA replaces the old one).
func offeredTS(t *tunnel, rekeyed *childSA) (local, remote []TrafficSelector) {
	if rekeyed != nil {
		return rekeyed.LocalTS, rekeyed.RemoteTS
	}
	return t.localTS(), t.remoteTS()
}

// packet is the addresses of a packet for which the datapath asked for a tunnel.
type packet struct{ src, dst netip.Addr }

// offerTS is offeredTS for a request, led by the addresses of the packet that triggered it
// if they lie in the tunnel's subnets (RFC 7296 2.9: the responder may then pick the part
// of its policy that holds them); the trigger is used once.
func (t *tunnel) offerTS(rekeyed *childSA) (local, remote []TrafficSelector) {
	local, remote = offeredTS(t, rekeyed)
	p := t.trigger
	t.trigger = packet{}
	in := func(ts []TrafficSelector, a netip.Addr) bool {
		return slices.ContainsFunc(ts, func(s TrafficSelector) bool { return s.Prefix.Contains(a) })
	}
	if rekeyed != nil || !in(local, p.src) || !in(remote, p.dst) {
		return local, remote
	}
	host := func(side []TrafficSelector, a netip.Addr) []TrafficSelector {
		s := side[0]
		s.Prefix = hostPrefix(a)
		return append([]TrafficSelector{s}, side...)
	}
	return host(local, p.src), host(remote, p.dst)
}

// v2Selector is the address and port range of a selector.
func v2Selector(ts TrafficSelector) ikev2.TrafficSelector {
	p := ts.Prefix.Masked()
	s := ikev2.TrafficSelector{Protocol: ts.Proto, Start: p.Addr(), End: lastAddr(p), StartPort: ts.Port, EndPort: ts.Port}
	if ts.Port == 0 {
		s.EndPort = 0xffff
	}
	return s
}

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// narrow is the responder's narrowing of one side (RFC 7296 2.9): the intersections of each
// of the peer's selectors with each of ours, in the peer's order, less those another one
// covers, so that a leading entry for the packet that triggered the peer's negotiation (a
// host, 2.9) does not stand beside the later entry holding our whole subnet. Empty when
// nothing overlaps in a form a TrafficSelector can hold (a prefix, one port or all).
func narrow(ours []TrafficSelector, theirs []ikev2.TrafficSelector) []TrafficSelector {
	var all []TrafficSelector
	for _, s := range theirs {
		for _, o := range ours {
			if n, ok := narrowOne(o, s); ok {
				all = append(all, n)
			}
		}
	}
	var out []TrafficSelector
	for i, n := range all {
		covered := slices.ContainsFunc(all[:i], func(m TrafficSelector) bool { return covers(m, n) }) ||
			slices.ContainsFunc(all[i+1:], func(m TrafficSelector) bool { return covers(m, n) && !covers(n, m) })
		if !covered {
			out = append(out, n)
		}
	}
	return out
}

// covers reports whether selector a holds all of b.
func covers(a, b TrafficSelector) bool {
	return a.Prefix.Bits() <= b.Prefix.Bits() && a.Prefix.Contains(b.Prefix.Addr()) &&
		(a.Proto == 0 || a.Proto == b.Proto) && (a.Port == 0 || a.Port == b.Port)
}

// withinOffer takes the responder's selectors for one side if each lies within one we
// offered: it may narrow (RFC 7296 2.9), not widen, and must answer at least one.
func withinOffer(offer []TrafficSelector, answer []ikev2.TrafficSelector) ([]TrafficSelector, bool) {
	out := make([]TrafficSelector, 0, len(answer))
	for _, s := range answer {
		i := slices.IndexFunc(offer, func(o TrafficSelector) bool {
			n, ok := narrowOne(o, s)
			return ok && v2Selector(n) == s
		})
		if i < 0 {
			return nil, false
		}
		n, _ := narrowOne(offer[i], s)
		out = append(out, n)
	}
	return out, len(out) > 0
}

func narrowOne(ours TrafficSelector, s ikev2.TrafficSelector) (TrafficSelector, bool) {
	p := ours.Prefix.Masked()
	if s.Start.Is4() != p.Addr().Is4() {
		return TrafficSelector{}, false
	}
	n := ours
	switch {
	case s.Start.Compare(p.Addr()) <= 0 && lastAddr(p).Compare(s.End) <= 0:
	default:
		q, ok := rangePrefix(s.Start, s.End)
		if !ok || !p.Contains(q.Addr()) || q.Bits() < p.Bits() {
			return TrafficSelector{}, false
		}
		n.Prefix = q
	}
	switch {
	case ours.Proto == 0:
		n.Proto = s.Protocol
	case s.Protocol != 0 && s.Protocol != ours.Proto:
		return TrafficSelector{}, false
	}
	switch {
	case ours.Port != 0:
		if ours.Port < s.StartPort || ours.Port > s.EndPort {
			return TrafficSelector{}, false
		}
	case s.StartPort == s.EndPort:
		n.Port = s.StartPort
	case s.StartPort != 0 || s.EndPort != 0xffff:
		return TrafficSelector{}, false
	}
	return n, true
}

// rangePrefix returns the prefix that is exactly the range start..end, if there is one.
func rangePrefix(start, end netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= start.BitLen(); bits++ {
		p := netip.PrefixFrom(start, bits)
		if p.Masked().Addr() == start && lastAddr(p) == end {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// peerTS returns the TSi and TSr payloads of a message.
func peerTS(ps []ikev2.Payload) (tsi, tsr *ikev2.TrafficSelectors) {
	for _, p := range ps {
		if t, ok := p.(*ikev2.TrafficSelectors); ok {
			if t.Responder {
				tsr = t
			} else {
				tsi = t
			}
		}
	}
	return tsi, tsr
}

// v2Child is a child SA negotiated and about to be installed.
type v2Child struct {
	sa                *v2SA
	t                 *tunnel
	prop              proposal.ESP
	spiIn, spiOut     uint32
	localTS, remoteTS []TrafficSelector
	nonceI, nonceR    []byte
	gir               []byte // PFS shared secret, nil without
	initiator         bool   // we initiated the exchange that created it
}

// acceptChild checks the responder's SA and TS payloads for the child we offered t with
// inbound SPI spiIn (rekeying rekeyed, if not nil), and installs it.
func (e *Engine) acceptChild(sa *v2SA, t *tunnel, rekeyed *childSA, ps []ikev2.Payload, spiIn uint32, ni, nr, gir []byte) error {
	if n := firstError(ps); n != nil {
		return e.v2PeerError(sa, n, "CHILD_SA of "+t.cfg.Name, t)
	}
	sar := ikev2.Find[*ikev2.SA](ps)
	tsi, tsr := peerTS(ps)
	if sar == nil || tsi == nil || tsr == nil || len(sar.Proposals) != 1 || len(sar.Proposals[0].SPI) != 4 {
		return fmt.Errorf("responder's CHILD_SA: want SA with one ESP proposal and a 4-byte SPI, TSi and TSr; got %s", payloadNames(ps))
	}
	_, prop, err := proposal.SelectESPv2(t.cfg.Proposals, sar.Proposals, gir != nil)
	if err != nil {
		return fmt.Errorf("responder chose an ESP proposal we did not offer: %w", err)
	}
	offerL, offerR := offeredTS(t, rekeyed)
	lts, ok1 := withinOffer(offerL, tsi.Selectors)
	rts, ok2 := withinOffer(offerR, tsr.Selectors)
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: responder's traffic selectors %s <-> %s are not within ours %s <-> %s", ErrIDMismatch,
			describeTS(tsi), describeTS(tsr), JoinTS(offerL), JoinTS(offerR))
	}
	return e.installV2Child(&v2Child{sa: sa, t: t, prop: prop, spiIn: spiIn, spiOut: binary.BigEndian.Uint32(sar.Proposals[0].SPI),
		localTS: lts, remoteTS: rts, nonceI: ni, nonceR: nr, gir: gir, initiator: true})
}

// describeTS formats a TS payload for errors.
func describeTS(t *ikev2.TrafficSelectors) string {
	var s []string
	for _, x := range t.Selectors {
		r := x.Start.String() + "-" + x.End.String()
		if p, ok := rangePrefix(x.Start, x.End); ok {
			r = p.String()
		}
		if x.Protocol != 0 || x.StartPort != 0 || x.EndPort != 0xffff {
			r += fmt.Sprintf("[%d/%d-%d]", x.Protocol, x.StartPort, x.EndPort)
		}
		s = append(s, r)
	}
	return fmt.Sprint(s)
}

// answerChild is the responder's side of a child SA (IKE_AUTH or CREATE_CHILD_SA): it
// finds the tunnel the initiator's selectors fit, chooses a proposal and returns the
// payloads of the answer (extra, e.g. Nr and KEr, after the SA payload), or an error
// notification, and install, which installs the child SA. Calling install after sending
// the answer keeps the time in which we send on the new SA before the initiator has it
// short (it installs on our answer); install tells the peer with a Delete if it fails.
func (e *Engine) answerChild(sa *v2SA, ps []ikev2.Payload, ni, nr, gir []byte, extra ...ikev2.Payload) (out []ikev2.Payload, install func()) {
	nothing := func() {}
	sai := ikev2.Find[*ikev2.SA](ps)
	tsi, tsr := peerTS(ps)
	if sai == nil || tsi == nil || tsr == nil {
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyInvalidSyntax}}, nothing
	}
	t, lts, rts := matchV2Tunnel(sa.conn, tsi, tsr)
	if t == nil {
		err := fmt.Errorf("%w: no tunnel of %s has traffic selectors that fit the peer's %s <-> %s (TS_UNACCEPTABLE); ours: %s",
			ErrIDMismatch, sa.conn.cfg.Name, describeTS(tsr), describeTS(tsi), tunnelSelectors(sa.conn))
		e.childFailed(sa, nil, false, err)
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyTSUnacceptable}}, nothing
	}
	chosen, prop, err := proposal.SelectESPv2(t.cfg.Proposals, sai.Proposals, gir != nil)
	if err == nil && len(chosen.SPI) != 4 {
		err = fmt.Errorf("peer's ESP proposal has a %d-byte SPI, want 4", len(chosen.SPI))
	}
	if err != nil {
		e.childFailed(sa, t, false, fmt.Errorf("CHILD_SA of %s: %w", t.cfg.Name, err))
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyNoProposalChosen}}, nothing
	}
	spiOut := binary.BigEndian.Uint32(chosen.SPI)
	spiIn, err := e.opts.Kernel.AllocSPI(context.Background(), sa.local.Addr(), sa.remote.Addr())
	if err != nil {
		e.childFailed(sa, t, false, err)
		return []ikev2.Payload{&ikev2.Notify{NotifyType: ikev2.NotifyNoAdditionalSAs}}, nothing
	}
	child := &v2Child{sa: sa, t: t, prop: prop, spiIn: spiIn, spiOut: spiOut,
		localTS: lts, remoteTS: rts, nonceI: ni, nonceR: nr, gir: gir}
	install = func() {
		if err := e.installV2Child(child); err != nil {
			e.releaseSPI(sa, spiIn)
			e.childFailed(sa, t, false, err)
			e.sendV2DeleteChild(sa, spiIn)
		}
	}
	chosen.SPI = spiBytes(spiIn)
	out = []ikev2.Payload{&ikev2.SA{Proposals: []ikev2.Proposal{chosen}}}
	out = append(out, extra...)
	return append(out, tsPayload(rts, false), tsPayload(lts, true)), install
}

// matchV2Tunnel finds the tunnel of c for the initiator's TSi (its side: our remote) and
// TSr, and the narrowed selectors we answer and install. A child SA belongs to one tunnel,
// so when the peer's lists span several tunnels the answer is the part of one. The rule:
// the peer's pairs are tried in its order (TSi entry, then TSr entry), since its first
// entries are the most specific, possibly the packet that triggered it (RFC 7296 2.9); for
// each, our tunnels by name; the first tunnel overlapping both entries is chosen, and each
// side of it is then narrowed against all of the peer's entries of that side (narrow).
func matchV2Tunnel(c *connection, tsi, tsr *ikev2.TrafficSelectors) (t *tunnel, local, remote []TrafficSelector) {
	ts := c.sortedTunnels()
	for _, si := range tsi.Selectors {
		for _, sr := range tsr.Selectors {
			for _, t := range ts {
				fits := len(narrow(t.localTS(), []ikev2.TrafficSelector{sr})) > 0 &&
					len(narrow(t.remoteTS(), []ikev2.TrafficSelector{si})) > 0
				if fits && !t.removed {
					return t, narrow(t.localTS(), tsr.Selectors), narrow(t.remoteTS(), tsi.Selectors)
				}
			}
		}
	}
	return nil, nil, nil
}

// tunnelSelectors lists c's tunnels' selectors, for errors.
func tunnelSelectors(c *connection) string {
	var s []string
	for _, t := range c.sortedTunnels() {
		s = append(s, fmt.Sprintf("%s: %s <-> %s", t.cfg.Name, JoinTS(t.localTS()), JoinTS(t.remoteTS())))
	}
	return fmt.Sprint(s)
}

// childFailed records a child SA negotiation that failed under an IKE SA that stays.
func (e *Engine) childFailed(sa *v2SA, t *tunnel, initiator bool, err error) {
	o := Outcome{Connection: sa.conn.cfg.Name, Exchange: ExchangeChildV2, Initiator: initiator, Result: Classify(err)}
	if t != nil {
		o.Tunnel = t.cfg.Name
		t.v2Pending = false
		if initiator {
			t.notify(err)
		}
	}
	e.observe(o)
	e.log.Error("CHILD_SA negotiation failed", sa.logArgs("err", err)...)
	e.addError(sa.conn.cfg.Name, err)
}

// installV2Child derives the child's keys and installs it as its tunnel's current child SA.
func (e *Engine) installV2Child(c *v2Child) error {
	sa, t := c.sa, c.t
	if t.removed {
		return errRemoved
	}
	life := volumeLimit(offeredLifetime(&t.cfg), c.prop)
	cs := &ChildSA{
		Connection: sa.conn.cfg.Name, Tunnel: t.cfg.Name, ReqID: t.reqID,
		Local: sa.local.Addr(), Remote: sa.remote.Addr(), Proposal: c.prop, SPIIn: c.spiIn, SPIOut: c.spiOut,
		LocalTS: c.localTS, RemoteTS: c.remoteTS, Lifetime: life.seconds, LifeKilobytes: life.kilobytes,
		Established: e.now(), Initiator: c.initiator,
	}
	if sa.natDetected() {
		cs.EncapLocalPort, cs.EncapRemotePort = sa.local.Port(), sa.remote.Port()
	}
	encLen, integLen := c.prop.EncKeyLen(), c.prop.IntegKeyLen()
	km := keymat.ChildSAKeymat(sa.prop.PRF, sa.keys.D, c.gir, c.nonceI, c.nonceR, 2*(encLen+integLen))
	i2r, r2i := km[:encLen+integLen], km[encLen+integLen:]
	out, in := i2r, r2i
	if !c.initiator {
		out, in = r2i, i2r
	}
	cs.EncKeyOut, cs.IntegKeyOut = out[:encLen], out[encLen:]
	cs.EncKeyIn, cs.IntegKeyIn = in[:encLen], in[encLen:]
	if err := e.opts.Kernel.InstallChildSA(context.Background(), cs); err != nil {
		clear(km)
		return fmt.Errorf("installing child SA: %w", err)
	}
	t.installs++
	ch := &childSA{ChildSA: *cs, tunnel: t, v2: sa, gen: t.installs}
	e.children[cs.SPIIn] = ch
	old := t.child
	e.observe(Outcome{Connection: cs.Connection, Tunnel: cs.Tunnel, Exchange: ExchangeChildV2, Initiator: c.initiator,
		Result: ResultSuccess, Rekey: old != nil})
	t.child = ch
	t.manualDown = false
	t.v2Pending = false
	if e.opts.KeyLog != nil {
		e.opts.KeyLog.ChildSA(cs)
	}
	e.log.Info("CHILD_SA established", sa.logArgs("tunnel", t.cfg.Name, "child", cs)...)
	if old != nil && old.rekeying {
		e.retireChild(old) // a little later: the peer may still send on it meanwhile
	}
	e.armChildLifetime(ch)
	t.notify(nil)
	return nil
}

// createChild negotiates a child SA for t under an established IKE SA (CREATE_CHILD_SA);
// when t's current child is being rekeyed, it says so (N(REKEY_SA)). With PFS its KE is of
// the group of t's first proposal.
func (e *Engine) createChild(sa *v2SA, t *tunnel) {
	e.createChildKE(sa, t, t.cfg.Proposals[0].Group)
}

// createChildKE is createChild with a KE of group (0: without PFS).
func (e *Engine) createChildKE(sa *v2SA, t *tunnel, group uint16) {
	spi, err := e.opts.Kernel.AllocSPI(context.Background(), sa.local.Addr(), sa.remote.Addr())
	if err != nil {
		e.childFailed(sa, t, true, fmt.Errorf("ike: allocating SPI: %w", err))
		return
	}
	ni, err := e.makeNonce()
	if err != nil {
		e.releaseSPI(sa, spi)
		e.childFailed(sa, t, true, err)
		return
	}
	var ps []ikev2.Payload
	var rekeyed *childSA
	if old := t.child; old != nil && old.rekeying && old.v2 == sa {
		rekeyed = old
		ps = append(ps, &ikev2.Notify{Protocol: ikev2.ProtocolESP, SPI: spiBytes(old.SPIIn), NotifyType: ikev2.NotifyRekeySA})
	}
	ps = append(ps, childOffer(&t.cfg, spi, group != 0), &ikev2.Nonce{Data: ni})
	var key dh.PrivateKey
	if group != 0 {
		if key, err = e.makeKE(group); err != nil {
			e.releaseSPI(sa, spi)
			e.childFailed(sa, t, true, err)
			return
		}
		ps = append(ps, &ikev2.KE{Group: group, Data: key.Public()})
	}
	offerL, offerR := t.offerTS(rekeyed)
	ps = append(ps, tsPayload(offerL, false), tsPayload(offerR, true))
	t.v2Pending = true
	done := false
	finish := func() {
		done = true
		dropKey(&key)
	}
	sa.request(&v2Request{exchange: ikev2.ExchangeCreateChildSA, payloads: ps,
		onReply: func(rs []ikev2.Payload) error {
			defer finish()
			if rekeyed != nil && temporaryFailure(rs) {
				e.releaseSPI(sa, spi)
				t.v2Pending = false
				e.retryChildRekey(sa, t, rekeyed)
				return nil
			}
			err := e.childReply(sa, t, rs, spi, ni, key, rekeyed)
			if err != nil {
				e.releaseSPI(sa, spi)
				if !e.retryChildKE(sa, t, rs, group) {
					e.childFailed(sa, t, true, err)
				}
			}
			return nil
		},
		onFail: func(err error) {
			if done {
				return
			}
			finish()
			e.releaseSPI(sa, spi)
			t.v2Pending = false
			t.notify(err)
		}})
}

// retryChildRekey rekeys old again a little later: the peer answered TEMPORARY_FAILURE
// because it was rekeying the IKE SA or the same child SA (RFC 7296 2.25).
func (e *Engine) retryChildRekey(sa *v2SA, t *tunnel, old *childSA) {
	e.log.Info("peer answered our child SA rekey with TEMPORARY_FAILURE, trying again shortly (RFC 7296 2.25)",
		sa.logArgs("tunnel", t.cfg.Name)...)
	e.afterFunc(e.jitter(2*e.opts.Retransmit.Initial), func() {
		if t.child == old && old.rekeying && !t.v2Pending && !t.removed {
			e.startTunnel(t, nil)
		}
	})
}

// childReply takes the CREATE_CHILD_SA response: the nonce, the PFS KE and the child.
func (e *Engine) childReply(sa *v2SA, t *tunnel, rs []ikev2.Payload, spi uint32, ni []byte, key dh.PrivateKey, rekeyed *childSA) error {
	if n := firstError(rs); n != nil {
		return e.v2PeerError(sa, n, "CREATE_CHILD_SA of "+t.cfg.Name, t)
	}
	nr := ikev2.Find[*ikev2.Nonce](rs)
	if nr == nil {
		return fmt.Errorf("CREATE_CHILD_SA response without Nr")
	}
	gir, err := pfsSecret(key, rs)
	if err != nil {
		return err
	}
	defer clear(gir)
	if err := e.acceptChild(sa, t, rekeyed, rs, spi, ni, nr.Data, gir); err != nil {
		return err
	}
	if rekeyed != nil {
		e.rekeyedBy(rekeyed, t, false, ni, nr.Data)
	}
	return nil
}

// pfsSecret is the PFS shared secret with the peer's KE, nil without PFS.
func pfsSecret(key dh.PrivateKey, ps []ikev2.Payload) ([]byte, error) {
	if key == nil {
		return nil, nil
	}
	ke := ikev2.Find[*ikev2.KE](ps)
	if ke == nil {
		return nil, errors.New("CREATE_CHILD_SA with PFS: the peer sent no KE")
	}
	gir, err := key.SharedSecret(ke.Data)
	if err != nil {
		return nil, fmt.Errorf("CREATE_CHILD_SA KE: %w", err)
	}
	return gir, nil
}

// handleCreateChild answers the peer's CREATE_CHILD_SA request for a child SA, or for a new
// IKE SA replacing this one (v2_rekey.go).
func (e *Engine) handleCreateChild(sa *v2SA, msgID uint32, ps []ikev2.Payload) {
	reply := func(out ...ikev2.Payload) { sa.respond(ikev2.ExchangeCreateChildSA, msgID, out...) }
	sai, ni := ikev2.Find[*ikev2.SA](ps), ikev2.Find[*ikev2.Nonce](ps)
	if sai == nil || ni == nil {
		reply(&ikev2.Notify{NotifyType: ikev2.NotifyInvalidSyntax})
		return
	}
	if slices.ContainsFunc(sai.Proposals, func(p ikev2.Proposal) bool { return p.Protocol == ikev2.ProtocolIKE }) {
		reply(e.answerIKERekey(sa, sai, ni.Data, ikev2.Find[*ikev2.KE](ps))...)
		return
	}
	if sa.rekeying || sa.deleting { // RFC 7296 2.25.2: try again on the new IKE SA
		e.log.Info("peer's CREATE_CHILD_SA collides with our IKE SA rekey: TEMPORARY_FAILURE", sa.logArgs()...)
		reply(&ikev2.Notify{NotifyType: ikev2.NotifyTemporaryFailure})
		return
	}
	if n := e.refuseWithoutPFS(sa, ps); n != nil {
		reply(n)
		return
	}
	nr, err := e.makeNonce()
	if err != nil {
		reply(&ikev2.Notify{NotifyType: ikev2.NotifyNoAdditionalSAs})
		return
	}
	extra := []ikev2.Payload{&ikev2.Nonce{Data: nr}}
	var gir []byte
	if ke := ikev2.Find[*ikev2.KE](ps); ke != nil {
		key, err := e.makeKE(ke.Group)
		if err == nil {
			gir, err = key.SharedSecret(ke.Data)
			extra = append(extra, &ikev2.KE{Group: ke.Group, Data: key.Public()})
			dropKey(&key)
		}
		if err != nil {
			reply(&ikev2.Notify{NotifyType: ikev2.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, ke.Group)})
			return
		}
		defer clear(gir)
	}
	// After a rekey (N(REKEY_SA)) the peer deletes the old child SA once the new one is up
	// (RFC 7296 2.8), and the tunnel's newest child is the new one, unless we were rekeying
	// the same child SA at the same time (v2_collision.go).
	old := rekeyedChild(sa, ps)
	out, install := e.answerChild(sa, ps, ni.Data, nr, gir, extra...)
	reply(out...)
	install()
	if old != nil && old.rekeying && old.tunnel.child != old && ikev2.Find[*ikev2.SA](out) != nil {
		e.rekeyedBy(old, old.tunnel, true, ni.Data, nr)
	}
}
