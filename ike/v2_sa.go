package ike

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/espgw/espgw/ike/clock"
	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// The IKEv2 engine (RFC 7296) lives beside the IKEv1 one in this package and shares its
// connections, tunnels, child SA table, Kernel, clock, retransmission (exchange), DH
// limiter, half-open limits and error reporting. Its files are named after the exchanges:
// v2_sainit.go (IKE_SA_INIT), v2_auth.go (IKE_AUTH and the first CHILD_SA),
// v2_child.go (CREATE_CHILD_SA, traffic selectors, keys), v2_informational.go (Delete,
// liveness, error notifications); this file holds the IKE SA, its message IDs and the
// requests it sends one at a time (window size 1, RFC 7296 2.3).

// v2State is where an IKEv2 SA is.
type v2State uint8

const (
	v2InitSent    v2State = iota + 1 // initiator: IKE_SA_INIT request out
	v2AuthSent                       // initiator: IKE_AUTH request out
	v2InitDone                       // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
	v2Established                    //
	v2Deleted                        //
)

var v2StateNames = map[v2State]string{v2InitSent: "IKE_SA_INIT_SENT", v2AuthSent: "IKE_AUTH_SENT",
	v2InitDone: "IKE_SA_INIT_DONE", v2Established: "ESTABLISHED", v2Deleted: "DELETED"}

func (s v2State) String() string { return v2StateNames[s] }

// v2SA is one IKEv2 SA, half-open or established.
type v2SA struct {
	e          *Engine
	conn       *connection
	initiator  bool // the original initiator
	state      v2State
	deleting   bool
	spiI, spiR ikev2.SPI
	local      netip.AddrPort
	remote     netip.AddrPort

	prop           proposal.IKEv2
	group          uint16 // of our KE
	dhKey          dh.PrivateKey
	nonceI, nonceR []byte
	initReq        []byte // the IKE_SA_INIT request and response, signed by AUTH
	initResp       []byte
	cookie         []byte // a responder's COOKIE, echoed in the IKE_SA_INIT request
	cookies        int    // how many COOKIEs the responder sent
	keys           keymat.IKESAKeys
	sk             *v2Cipher
	natLocal       bool // we are behind a NAT (or pretend to be, nat_traversal: force)
	behindNAT      bool // NAT-D really showed a NAT in front of us
	natRemote      bool
	initialContact bool
	fragments      bool         // both sides take IKE fragments (v2_fragment.go)
	defrag         [2]*v2Defrag // the peer's fragmented request, response
	fragStep       int          // how far down the fragment size ladder the path made us go

	// Our requests, one in flight (req), the others queued.
	req     exchange
	reqID   uint32 // message ID of the request in flight, or of the next one
	pending *v2Request
	queue   []*v2Request
	// The peer's requests: the next message ID expected, and our last response.
	resp     exchange
	peerID   uint32
	lastResp v2Response // what resp holds sealed, to seal again in smaller fragments

	authTunnel *tunnel // the tunnel of the child SA negotiated in IKE_AUTH
	authSPI    uint32  // its inbound SPI, reserved before IKE_AUTH

	created, established, lastRecv time.Time
	dpd                            clock.Timer
	keepalive                      clock.Timer
	rekey                          clock.Timer       // replace the IKE SA (v2_rekey.go)
	halfOpen                       clock.Timer       // responder: give up waiting for IKE_AUTH
	rekeying                       bool              // our CREATE_CHILD_SA replacing it is in flight
	race                           *rekeyRace[*v2SA] // the peer rekeying it at the same time (v2_collision.go)
}

// v2Request is a request we send on an IKE SA and what to do with its response.
type v2Request struct {
	exchange  ikev2.ExchangeType
	rekeysIKE bool // a CREATE_CHILD_SA replacing the IKE SA
	payloads  []ikev2.Payload
	onReply   func(ps []ikev2.Payload) error // nil: nothing to do
	onFail    func(err error)                // the request failed or the SA went away
}

// ourSPI is the SPI the SA is registered under: the one we chose.
func (sa *v2SA) ourSPI() ikev2.SPI {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *v2SA) natDetected() bool { return sa.natLocal || sa.natRemote }

func (sa *v2SA) logArgs(args ...any) []any {
	return append([]any{"conn", sa.conn.cfg.Name, "peer", sa.remote, "ike", 2,
		"spi_i", sa.spiI.String(), "spi_r", sa.spiR.String()}, args...)
}

// newV2SA creates an IKEv2 SA with a fresh SPI of ours; the caller registers it.
func (e *Engine) newV2SA(c *connection, initiator bool, local, remote netip.AddrPort) (*v2SA, error) {
	sa := &v2SA{e: e, conn: c, initiator: initiator, local: local, remote: remote, created: e.now()}
	sa.req = exchange{e: e}
	sa.resp = exchange{e: e}
	own := &sa.spiR
	if initiator {
		own = &sa.spiI
	}
	if _, err := io.ReadFull(e.opts.Rand, own[:]); err != nil {
		return nil, fmt.Errorf("ike: IKE SA SPI: %w", err)
	}
	sa.req.onGiveUp = func() { e.v2GaveUp(sa) }
	sa.req.onResend = sa.refragmentRequest
	return sa, nil
}

// header is the header of a message of sa.
func (sa *v2SA) header(x ikev2.ExchangeType, msgID uint32, response bool) ikev2.Header {
	h := ikev2.Header{SPIi: sa.spiI, SPIr: sa.spiR, Version: ikev2.Version, Exchange: x, MessageID: msgID}
	if sa.initiator {
		h.Flags |= ikev2.FlagInitiator
	}
	if response {
		h.Flags |= ikev2.FlagResponse
	}
	return h
}

// plain encodes an unprotected message (IKE_SA_INIT).
func (sa *v2SA) plain(x ikev2.ExchangeType, msgID uint32, response bool, ps ...ikev2.Payload) []byte {
	m := ikev2.Message{Header: sa.header(x, msgID, response), Payloads: ps}
	return m.Marshal()
}

// request queues r and sends it when no other request of ours is in flight.
func (sa *v2SA) request(r *v2Request) {
	sa.queue = append(sa.queue, r)
	sa.sendNext()
}

// sendNext sends the next queued request unless one is in flight.
func (sa *v2SA) sendNext() {
	if sa.pending != nil || len(sa.queue) == 0 || sa.state == v2Deleted || sa.sk == nil {
		return
	}
	r := sa.queue[0]
	sa.queue = sa.queue[1:]
	msgs, err := sa.seal(sa.header(r.exchange, sa.reqID, false), r.payloads)
	if err != nil {
		if r.onFail != nil {
			r.onFail(err)
		}
		sa.sendNext()
		return
	}
	sa.pending = r
	sa.req.sendAll(msgs, sa.local, sa.remote, true)
}

// respond sends a protected response to the peer's request msgID and keeps it for
// retransmitted requests.
func (sa *v2SA) respond(x ikev2.ExchangeType, msgID uint32, ps ...ikev2.Payload) {
	sa.lastResp = v2Response{header: sa.header(x, msgID, true), payloads: ps}
	msgs, err := sa.seal(sa.lastResp.header, ps)
	if err != nil {
		sa.e.log.Debug("IKEv2 response not sent", sa.logArgs("err", err)...)
		return
	}
	sa.resp.sendAll(msgs, sa.local, sa.remote, false)
}

// v2GaveUp handles a request of ours that the peer never answered.
func (e *Engine) v2GaveUp(sa *v2SA) {
	if e.ikeRekeyUnanswered(sa) {
		return
	}
	if sa.state == v2Established {
		e.v2PeerDead(sa, fmt.Errorf("%w: no response to our %s request", errDPD, sa.pending.exchange))
		return
	}
	err := fmt.Errorf("%w in state %s", ErrTimeout, sa.state)
	if sa.state == v2AuthSent {
		err = fmt.Errorf("%w: no IKE_AUTH response (a peer that cannot verify our AUTH may stay silent)", err)
	}
	e.failV2(sa, err)
}

// failV2 ends an IKE SA that failed: before it is established a negotiation failure, later
// a dead peer.
func (e *Engine) failV2(sa *v2SA, err error) {
	if sa.state == v2Deleted {
		return
	}
	if sa.state != v2Established {
		e.observe(Outcome{Connection: sa.conn.cfg.Name, Exchange: ExchangeIKEv2, Initiator: sa.initiator, Result: Classify(err)})
	}
	e.log.Error("negotiation failed", sa.logArgs("err", err)...)
	e.addError(sa.conn.cfg.Name, err)
	e.deleteV2SA(sa, false, err)
	if sa.initiator {
		e.retryPhase1(sa.conn, err)
	} else {
		e.restartAlways(sa.conn)
	}
}

// deleteV2SA removes an IKE SA with its child SAs; with tell and an established SA the peer
// gets a Delete first (best effort, not retransmitted).
func (e *Engine) deleteV2SA(sa *v2SA, tell bool, err error) {
	if sa.state == v2Deleted {
		return
	}
	if e.opts.Observer != nil && sa.state == v2Established {
		e.opts.Observer.Deleted(Deletion{Connection: sa.conn.cfg.Name, ByPeer: !tell})
	}
	sa.deleting = true
	for _, ch := range e.children {
		if ch.v2 == sa {
			e.deleteChild(ch, false) // the IKE SA's Delete covers its children (RFC 7296 1.4.1)
		}
	}
	if tell && sa.state == v2Established {
		// Not retransmitted and past any request in flight: the peer may still take it.
		id := sa.reqID
		if sa.pending != nil {
			id++
		}
		if msg, serr := sa.sk.seal(e.opts.Rand, sa.header(ikev2.ExchangeInformational, id, false),
			[]ikev2.Payload{&ikev2.Delete{Protocol: ikev2.ProtocolIKE}}); serr == nil {
			if serr := e.opts.Bind.SendIKE(msg, sa.local, sa.remote); serr != nil {
				e.log.Debug("send failed", sa.logArgs("err", serr)...)
			}
		}
	}
	if !sa.initiator && sa.state == v2InitDone {
		e.halfOpen--
	}
	if sa.authSPI != 0 {
		e.releaseV2SPI(sa)
	}
	if sa.authTunnel != nil {
		sa.authTunnel.notify(err)
		sa.authTunnel = nil
	}
	rs := sa.queue
	if sa.pending != nil {
		rs = append([]*v2Request{sa.pending}, rs...)
	}
	sa.pending, sa.queue = nil, nil
	sa.req.stop()
	sa.resp.stop()
	for _, t := range []clock.Timer{sa.dpd, sa.keepalive, sa.rekey, sa.halfOpen} {
		if t != nil {
			t.Stop()
		}
	}
	sa.state = v2Deleted
	dropKey(&sa.dhKey)
	for _, b := range [][]byte{sa.keys.D, sa.keys.AI, sa.keys.AR, sa.keys.EI, sa.keys.ER, sa.keys.PI, sa.keys.PR} {
		clear(b)
	}
	if e.v2SAs[sa.ourSPI()] == sa {
		delete(e.v2SAs, sa.ourSPI())
	}
	for _, r := range rs {
		if r.onFail != nil {
			r.onFail(err)
		}
	}
	if c := sa.conn; e.establishedV2(c) == nil && e.negotiatingV2(c) == nil {
		for _, t := range c.waiting {
			t.notify(err)
		}
		c.waiting = nil
	}
	level := slog.LevelInfo
	if !sa.initiator && sa.state != v2Established && sa.established.IsZero() {
		level = slog.LevelDebug // possibly a spoofed IKE_SA_INIT
	}
	e.log.Log(context.Background(), level, "IKE SA deleted", sa.logArgs("reason", errString(err))...)
}

// releaseV2SPI returns the SPI reserved for the IKE_AUTH child SA.
func (e *Engine) releaseV2SPI(sa *v2SA) {
	if err := e.opts.Kernel.ReleaseSPI(context.Background(), sa.local.Addr(), sa.remote.Addr(), sa.authSPI); err != nil {
		e.log.Warn("releasing SPI failed", sa.logArgs("spi", hexSPI(sa.authSPI), "err", err)...)
	}
	sa.authSPI = 0
}

// establishedV2 returns the newest established IKEv2 SA of c.
func (e *Engine) establishedV2(c *connection) *v2SA {
	var best *v2SA
	for _, sa := range e.v2SAs {
		if sa.conn == c && sa.state == v2Established && !sa.deleting && (best == nil || sa.established.After(best.established)) {
			best = sa
		}
	}
	return best
}

// negotiatingV2 returns an IKEv2 SA of c that is not established yet.
func (e *Engine) negotiatingV2(c *connection) *v2SA {
	for _, sa := range e.v2SAs {
		if sa.conn == c && sa.state != v2Established && sa.state != v2Deleted && !sa.deleting {
			return sa
		}
	}
	return nil
}

// runQueueV2 is runQueue for an IKEv2 connection: without an IKE SA the first waiting
// tunnel's child SA comes with IKE_AUTH; under an established one each waiting tunnel gets
// a CREATE_CHILD_SA exchange.
func (e *Engine) runQueueV2(c *connection) {
	sa := e.establishedV2(c)
	if sa == nil {
		if e.negotiatingV2(c) == nil {
			e.startV2(c)
		}
		return
	}
	for len(c.waiting) > 0 {
		t := c.waiting[0]
		c.waiting = c.waiting[1:]
		switch {
		case t.removed, t.v2Pending:
		case t.child != nil && !t.child.rekeying:
			t.notify(nil)
		default:
			e.createChild(sa, t)
		}
	}
}

// establishV2 marks an IKE SA complete; replaces is the IKE SA it rekeyed, or nil.
func (e *Engine) establishV2(sa *v2SA, replaces *v2SA) {
	e.observe(Outcome{Connection: sa.conn.cfg.Name, Exchange: ExchangeIKEv2, Initiator: sa.initiator, Result: ResultSuccess,
		Rekey: replaces != nil})
	if !sa.initiator && replaces == nil {
		e.halfOpen--
	}
	if replaces != nil {
		// Negotiated once, in IKE_SA_INIT, as strongSwan keeps it; the path is the same.
		sa.fragments, sa.fragStep = replaces.fragments, replaces.fragStep
	}
	sa.state = v2Established
	sa.established = e.now()
	dropKey(&sa.dhKey)
	e.log.Info("IKE SA established", sa.logArgs("proposal", sa.prop.String(), "nat", sa.natDetected(), "initiator", sa.initiator)...)
	if e.opts.KeyLog != nil {
		e.opts.KeyLog.IKEv2SA(IKEv2Keys{SPIi: sa.spiI, SPIr: sa.spiR, Proposal: sa.prop,
			EI: sa.keys.EI, ER: sa.keys.ER, AI: sa.keys.AI, AR: sa.keys.AR})
	}
	if sa.initialContact {
		for _, o := range e.v2SAs {
			if o != sa && o.conn == sa.conn && o.state == v2Established {
				e.deleteV2SA(o, false, errReplaced)
			}
		}
	}
	e.startLiveness(sa)
	e.startV2Keepalive(sa)
	// Either side may rekey (RFC 7296 2.8); the original responder waits longer, so that
	// with equal lifetimes the initiator's rekey comes first, and a shorter lifetime of
	// ours holds when we answered.
	if life := sa.conn.cfg.IKE.Lifetime; life > 0 {
		sa.rekey = e.afterFunc(e.rekeyTime(life, sa.initiator), func() { e.rekeyV2(sa) })
	}
}
