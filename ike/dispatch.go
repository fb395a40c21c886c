package ike

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"slices"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/isakmp"
)

// inbound is a received message with its addresses. For encrypted messages m holds only
// the header.
type inbound struct {
	m             *isakmp.Message
	raw           []byte
	local, remote netip.AddrPort
}

// errIgnore makes a handler drop a message silently (unexpected in this state).
var errIgnore = errors.New("message ignored")

// fatalError marks a handler error that ends the negotiation it belongs to.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

func fatal(err error) error { return &fatalError{err} }

// handlePacket dispatches one received IKE message. Malformed or unexpected messages are
// dropped; they never end an SA unless they authenticate as the peer's.
func (e *Engine) handlePacket(pkt conn.Packet) {
	if isIKEv2(pkt.Data) {
		e.handleV2Packet(pkt)
		return
	}
	m, err := isakmp.Decode(pkt.Data)
	if err != nil {
		e.log.Debug("dropping malformed message", "peer", pkt.Remote, "err", err)
		return
	}
	in := &inbound{m: m, raw: pkt.Data, local: pkt.Local, remote: pkt.Remote}
	h := &m.Header
	sa := e.ikeSAs[h.InitiatorCookie]
	if sa == nil {
		e.handleNewSA(in)
		return
	}
	// The address first: a copy of the peer's MM1 sent from elsewhere must not make us
	// resend our answer to the peer (duplicate), however often it comes.
	if in.remote.Addr() != sa.remote.Addr() {
		e.log.Debug("dropping message from unexpected address", sa.logArgs("from", in.remote)...)
		return
	}
	e.observeReceived(sa.conn)
	if sa.rcookie != ([8]byte{}) && h.ResponderCookie != sa.rcookie {
		if !(h.ResponderCookie == [8]byte{} && sa.duplicate(in.raw)) {
			e.log.Debug("dropping message with unknown responder cookie", sa.logArgs("exchange", h.Exchange)...)
		}
		return
	}
	sa.lastRecv = e.now()
	switch h.Exchange {
	case isakmp.ExchangeIdentityProtection, isakmp.ExchangeAggressive:
		if h.MessageID != 0 || sa.state == stateDeleted {
			return
		}
		if sa.duplicate(in.raw) {
			return
		}
		if sa.aggressive != (h.Exchange == isakmp.ExchangeAggressive) {
			return
		}
		if sa.aggressive {
			err = e.handleAggressive(sa, in)
		} else {
			err = e.handleMainMode(sa, in)
		}
	case isakmp.ExchangeQuickMode:
		err = e.handleQuickMode(sa, in)
	case isakmp.ExchangeInformational:
		err = e.handleInformational(sa, in)
	default:
		err = errIgnore
	}
	e.handleError(sa, in, err)
}

// handleError applies a handler's verdict: fatal errors end the phase 1 (or the quick mode,
// which the handler has already done), others are logged at debug level.
func (e *Engine) handleError(sa *ikeSA, in *inbound, err error) {
	var f *fatalError
	switch {
	case err == nil, errors.Is(err, errIgnore):
	case errors.As(err, &f) && sa != nil && sa.state != stateEstablished:
		e.failPhase1(sa, f.err)
	case errors.As(err, &f) && sa != nil:
		e.recordError(sa, f.err)
	default:
		e.log.Debug("dropping message", "peer", in.remote, "exchange", in.m.Header.Exchange, "err", err)
	}
}

// handleNewSA starts a responder for MM1 or AM1 from a configured peer. Anyone can send
// these from any address, so what goes wrong is logged through logUnauth.
func (e *Engine) handleNewSA(in *inbound) {
	h := &in.m.Header
	if h.ResponderCookie != ([8]byte{}) || h.MessageID != 0 || h.Flags&isakmp.FlagEncryption != 0 {
		e.log.Debug("dropping message for unknown IKE SA", "peer", in.remote, "exchange", h.Exchange,
			"icookie", hexCookie(h.InitiatorCookie))
		return
	}
	if h.Exchange != isakmp.ExchangeIdentityProtection && h.Exchange != isakmp.ExchangeAggressive {
		return
	}
	peer := in.remote.Addr()
	c := e.connectionFor(in.local.Addr(), peer)
	if c == nil {
		e.logUnauth("no connection configured for peer", peer, "peer", in.remote, "local", in.local)
		return
	}
	e.observeReceived(c)
	if !e.admitResponder(peer) {
		e.logUnauth("too many half-open IKE SAs, dropping new one", peer, "peer", in.remote,
			"limit", maxHalfOpen, "peer_limit", maxHalfOpenPerPeer)
		return
	}
	aggressive := h.Exchange == isakmp.ExchangeAggressive
	if aggressive != (c.cfg.IKE.Mode == model.ModeAggressive) {
		e.logUnauth("peer uses a different phase-1 mode than configured", peer, "conn", c.cfg.Name, "peer", in.remote,
			"offered", h.Exchange, "configured", c.cfg.IKE.Mode)
		return
	}
	var err error
	if aggressive {
		err = e.respondAM1(c, in)
	} else {
		err = e.respondMM1(c, in)
	}
	e.observeFirstMessage(c, err)
	// Status keeps the error only when it is logged, so a flood cannot push out the others.
	if err != nil && e.logUnauth("negotiation failed on the peer's first message", peer, "conn", c.cfg.Name, "peer", in.remote, "err", err) {
		e.addError(c.cfg.Name, err)
	}
}

// admitResponder reports whether a new responder IKE SA with remote may be created: fewer
// than maxHalfOpenPerPeer half-open ones with remote, so that first messages spoofed from
// one configured peer's address cannot lock out the others, and fewer than maxHalfOpen in
// all. At either limit a half-open SA still waiting for its peer's second message (MM3 or
// AM3) makes room, chosen at random: at the peer's own limit one of that peer's, at the
// global one one of the peer with the most. A flood of spoofed MM1s or AM1s then evicts
// the real peer's SA only by chance, and only our own initiations are never at stake.
func (e *Engine) admitResponder(remote netip.Addr) bool {
	byPeer := map[netip.Addr][]*ikeSA{}
	for _, sa := range e.ikeSAs {
		if !sa.initiator && sa.state != stateEstablished && sa.state != stateDeleted {
			byPeer[sa.remote.Addr()] = append(byPeer[sa.remote.Addr()], sa)
		}
	}
	victims := byPeer[remote]
	switch {
	case len(victims) >= maxHalfOpenPerPeer:
	case e.halfOpen >= maxHalfOpen:
		victims = nil
		for _, sas := range byPeer {
			if len(sas) > len(victims) {
				victims = sas
			}
		}
	default:
		return true
	}
	victims = slices.DeleteFunc(slices.Clone(victims), func(sa *ikeSA) bool {
		return sa.state != stateMM2Sent && sa.state != stateAM2Sent
	})
	if len(victims) == 0 {
		return false
	}
	e.deleteIKESA(victims[e.randomIndex(len(victims))], false, errEvicted)
	return true
}

// randomIndex returns a random index below n (n > 0).
func (e *Engine) randomIndex(n int) int {
	var b [4]byte
	if _, err := io.ReadFull(e.opts.Rand, b[:]); err != nil {
		return 0
	}
	return int(binary.BigEndian.Uint32(b[:]) % uint32(n))
}

// newResponderSA creates the state for a peer's MM1/AM1 (not yet registered).
func (e *Engine) newResponderSA(c *connection, in *inbound) (*ikeSA, error) {
	sa, err := e.newIKESA(c, false, in.local, in.remote)
	if err != nil {
		return nil, err
	}
	sa.icookie = in.m.Header.InitiatorCookie
	sa.noteVendorIDs(in.m.Payloads)
	return sa, nil
}

// registerResponder enters a responder SA into the table once its first reply is ready.
func (e *Engine) registerResponder(sa *ikeSA, in *inbound) {
	e.ikeSAs[sa.icookie] = sa
	e.halfOpen++
	sa.accepted(in.raw)
}

// header returns the ISAKMP header of a message of sa.
func (sa *ikeSA) header(x isakmp.ExchangeType, msgID uint32) isakmp.Header {
	return isakmp.Header{InitiatorCookie: sa.icookie, ResponderCookie: sa.rcookie,
		Version: isakmp.Version, Exchange: x, MessageID: msgID}
}

// plain encodes an unencrypted phase-1 message.
func (sa *ikeSA) plain(x isakmp.ExchangeType, ps ...isakmp.Payload) []byte {
	m := isakmp.Message{Header: sa.header(x, 0), Payloads: ps}
	return m.Marshal()
}

// isakmpNotify is a notification about the ISAKMP SA (SPI = the cookie pair).
func (sa *ikeSA) isakmpNotify(t isakmp.NotifyType) *isakmp.Notification {
	return &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
		SPI: sa.cookies(), NotifyType: t}
}

func (sa *ikeSA) cookies() []byte {
	return append(append(make([]byte, 0, 16), sa.icookie[:]...), sa.rcookie[:]...)
}

// findPayload returns the first payload of type T with its raw bytes.
func findPayload[T isakmp.Payload](ps []isakmp.Payload, raws []isakmp.RawPayload) (T, isakmp.RawPayload, bool) {
	for i, p := range ps {
		if t, ok := p.(T); ok {
			var raw isakmp.RawPayload
			if i < len(raws) {
				raw = raws[i]
			}
			return t, raw, true
		}
	}
	var zero T
	return zero, isakmp.RawPayload{}, false
}
