package ike

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/isakmp"
)

// nonceLen is the length of the nonces we send (RFC 2409 5: 8 to 256 bytes).
const nonceLen = 32

// maxHalfOpen caps responder IKE SAs that are not established yet, against MM1 floods;
// maxHalfOpenPerPeer caps those of one peer address (see admitResponder).
const (
	maxHalfOpen        = 512
	maxHalfOpenPerPeer = 16
)

// startTunnel asks for a child SA for t: it joins the connection's queue, which starts
// quick modes as the IKE SA has room for them, after phase 1 if none is up (runQueue).
// done, if not nil, receives the outcome.
func (e *Engine) startTunnel(t *tunnel, done chan error) {
	if done != nil {
		t.waiters = append(t.waiters, done)
	}
	if t.qm != nil {
		return
	}
	c := t.conn
	if !slices.Contains(c.waiting, t) {
		c.waiting = append(c.waiting, t)
	}
	e.runQueue(c)
}

// newIKESA creates an IKE SA with fresh cookie(s) and registers it.
func (e *Engine) newIKESA(c *connection, initiator bool, local, remote netip.AddrPort) (*ikeSA, error) {
	sa := &ikeSA{
		exchange:   exchange{e: e, local: local, remote: remote},
		conn:       c,
		initiator:  initiator,
		aggressive: c.cfg.IKE.Mode == model.ModeAggressive,
		created:    e.now(),
		qms:        make(map[uint32]*quickMode),
	}
	own := &sa.rcookie
	if initiator {
		own = &sa.icookie
	}
	if _, err := io.ReadFull(e.opts.Rand, own[:]); err != nil {
		return nil, fmt.Errorf("ike: cookie: %w", err)
	}
	sa.onGiveUp = func() {
		err := fmt.Errorf("%w in state %s", ErrTimeout, sa.state)
		if sa.state == stateMM5Sent {
			// A responder that cannot decrypt MM5 often stays silent.
			err = fmt.Errorf("%w (probably %w)", err, ErrPSKMismatch)
		}
		e.failPhase1(sa, err)
	}
	return sa, nil
}

// startPhase1 initiates main or aggressive mode with c's peer. It returns the new IKE SA,
// or nil if it could not be started.
func (e *Engine) startPhase1(c *connection) *ikeSA {
	local := netip.AddrPortFrom(c.cfg.LocalAddress, conn.IKEPort)
	remote := netip.AddrPortFrom(c.cfg.RemoteAddress, conn.IKEPort)
	sa, err := e.newIKESA(c, true, local, remote)
	if err == nil {
		e.ikeSAs[sa.icookie] = sa
		if sa.aggressive {
			err = e.sendAM1(sa)
		} else {
			err = e.sendMM1(sa)
		}
	}
	if err != nil {
		e.failStart(c, err)
		if sa != nil {
			e.deleteIKESA(sa, false, err)
		}
		return nil
	}
	e.log.Info("initiating IKE SA", sa.logArgs("mode", c.cfg.IKE.Mode)...)
	return sa
}

// failStart records that an IKE SA with c's peer could not be started and fails the
// tunnels waiting for it.
func (e *Engine) failStart(c *connection, err error) {
	e.addError(c.cfg.Name, err)
	for _, t := range c.waiting {
		t.notify(err)
	}
	c.waiting = nil
}

// failPhase1 ends a negotiation that went wrong: it records err, completes waiting Up calls
// and deletes the half-open SA. A responder SA that timed out after the peer's first
// message may stem from a spoofed MM1/AM1: its failure is logged through logUnauth.
func (e *Engine) failPhase1(sa *ikeSA, err error) {
	if sa.state == stateDeleted {
		return
	}
	e.observePhase1(sa, err)
	if sa.peerUnverified() && errors.Is(err, ErrTimeout) {
		if e.logUnauth("half-open IKE SA timed out", sa.remote.Addr(), sa.logArgs("err", err)...) {
			e.addError(sa.conn.cfg.Name, err)
		}
	} else {
		e.recordError(sa, err)
	}
	e.deleteIKESA(sa, false, err)
	if sa.initiator {
		e.retryPhase1(sa.conn, err)
	}
}

// sendPhase1Notify tells the peer of a half-open SA why we give up, unencrypted because
// there may be no shared key (RFC 2408 5: informational exchange without an ISAKMP SA).
//
// Which peers act on it: espgw as initiator fails at once (handlePlainNotify). strongSwan
// (5.9.8, ikev1 task manager and message parser) fails phase 1 on any error notification
// it accepts while the IKE SA is connecting, but only accepts an unencrypted one before it
// has derived phase-1 keys, i.e. up to MM4/AM1: from then on it drops informational
// messages whose first payload is not HASH ("ignoring unprotected INFORMATIONAL") and
// answers with its own PAYLOAD-MALFORMED. A protected notification does not help either
// when the pre-shared keys differ, since the peer's keys differ from ours. So a strongSwan
// initiator whose MM5 we reject for a wrong PSK gives up only by its own retransmission
// settings (charon.retransmit_tries, retransmit_timeout, retransmit_base); the notify
// still goes out for peers that do act on it.
func (e *Engine) sendPhase1Notify(sa *ikeSA, local, remote netip.AddrPort, t isakmp.NotifyType) {
	spi := append(append([]byte(nil), sa.icookie[:]...), sa.rcookie[:]...)
	m := isakmp.Message{
		Header: isakmp.Header{InitiatorCookie: sa.icookie, ResponderCookie: sa.rcookie,
			Version: isakmp.Version, Exchange: isakmp.ExchangeInformational},
		Payloads: []isakmp.Payload{&isakmp.Notification{DOI: isakmp.DOIIPsec,
			ProtocolID: isakmp.ProtoISAKMP, SPI: spi, NotifyType: t}},
	}
	if err := e.opts.Bind.SendIKE(m.Marshal(), local, remote); err != nil {
		e.log.Debug("send failed", sa.logArgs("err", err)...)
	}
}

// makeKE creates our DH key for the negotiated group and returns our public value.
func (e *Engine) makeKE(group uint16) (dh.PrivateKey, error) {
	g, err := dh.ByID(group)
	if err != nil {
		return nil, err
	}
	return g.GenerateKey(e.opts.Rand)
}

// makeNonce returns a fresh nonce.
func (e *Engine) makeNonce() ([]byte, error) {
	n := make([]byte, nonceLen)
	if _, err := io.ReadFull(e.opts.Rand, n); err != nil {
		return nil, fmt.Errorf("ike: nonce: %w", err)
	}
	return n, nil
}

// hashI is HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) and hashR is
// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (RFC 2409 5).
func (sa *ikeSA) hashI(idiiB []byte) []byte {
	return sa.keys.prf(sa.keys.SKEYID, sa.gxi, sa.gxr, sa.icookie[:], sa.rcookie[:], sa.saiB, idiiB)
}

func (sa *ikeSA) hashR(idirB []byte) []byte {
	return sa.keys.prf(sa.keys.SKEYID, sa.gxr, sa.gxi, sa.rcookie[:], sa.icookie[:], sa.saiB, idirB)
}

// establish marks phase 1 complete and starts the quick modes that waited for it.
func (e *Engine) establish(sa *ikeSA) {
	e.observePhase1(sa, nil)
	if !sa.initiator {
		e.halfOpen--
	}
	sa.state = stateEstablished
	sa.established = e.now()
	dropKey(&sa.dhKey)
	e.log.Info(fmt.Sprintf("ISAKMP-SA established %s-%s spi:%x:%x", racoonAddr(sa.local), racoonAddr(sa.remote), sa.icookie, sa.rcookie), sa.logArgs("proposal", sa.prop.String(), "nat", sa.natDetected(),
		"initiator", sa.initiator)...)
	if e.opts.KeyLog != nil {
		e.opts.KeyLog.IKESA(sa.icookie, sa.keys.encKey)
	}
	if sa.initialContact {
		e.initialContact(sa)
	}
	e.startDPD(sa)
	e.startNATKeepalive(sa)
	e.adoptChildren(sa)
	e.armIKELifetime(sa)
	e.runQueue(sa.conn)
}

// hasOtherSA reports whether another established IKE SA with sa's peer exists (INITIAL-CONTACT
// is sent only when there is none).
func (e *Engine) hasOtherSA(sa *ikeSA) bool {
	for _, o := range e.ikeSAs {
		if o != sa && o.state == stateEstablished && o.remote.Addr() == sa.remote.Addr() {
			return true
		}
	}
	return false
}

// initialContact deletes every other SA of sa's connection: the peer announced that it has
// no state from before (RFC 2407 4.6.3.3). Other connections to the same address (from
// another local address) are other peers' SAs as far as it is concerned, and stay.
func (e *Engine) initialContact(sa *ikeSA) {
	for _, o := range e.ikeSAs {
		if o != sa && o.state == stateEstablished && o.conn == sa.conn {
			e.deleteIKESA(o, false, errReplaced)
		}
	}
	for _, ch := range e.children {
		if ch.ike != sa && ch.tunnel.conn == sa.conn {
			e.deleteChild(ch, false)
		}
	}
}
