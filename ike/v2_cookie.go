package ike

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/espgw/espgw/ike/ikev2"
)

// COOKIE (RFC 7296 2.6). Above a connection's cookie_threshold of half-open IKE SAs (the
// count admitV2Responder limits), a responder answers an IKE_SA_INIT request that carries
// no valid COOKIE with one and keeps nothing: the cookie is a MAC of the request's Ni, the
// initiator's address and SPIi under a secret of ours, which only a peer that receives
// our answers at its address can echo. The secret changes every cookieSecretLife on the
// engine clock; cookies of the current and the previous secret are accepted, so one made
// just before a change still works. A cookie is the secret's version byte and the MAC.

const cookieSecretLife = 2 * time.Minute

// cookieSecret is one generation of the cookie secret.
type cookieSecret struct {
	version byte
	key     [32]byte
}

// v2Cookies holds the current and previous cookie secrets.
type v2Cookies struct {
	cur, prev *cookieSecret
	born      time.Time // of cur
}

// cookieSecrets returns the current and previous secret, rotating them first if their
// time is up (after two lifetimes neither is kept).
func (e *Engine) cookieSecrets() (cur, prev *cookieSecret, err error) {
	c, now := &e.cookies, e.now()
	age := now.Sub(c.born)
	if c.cur != nil && age < cookieSecretLife {
		return c.cur, c.prev, nil
	}
	next := &cookieSecret{}
	if c.cur != nil {
		next.version = c.cur.version + 1
	}
	if _, err := io.ReadFull(e.opts.Rand, next.key[:]); err != nil {
		return nil, nil, err
	}
	c.prev = nil
	if c.cur != nil && age < 2*cookieSecretLife {
		c.prev = c.cur
	}
	c.cur, c.born = next, now
	return c.cur, c.prev, nil
}

// cookieFor computes the cookie of an IKE_SA_INIT request under secret s.
func (s *cookieSecret) cookieFor(ni []byte, ip netip.Addr, spiI ikev2.SPI) []byte {
	m := hmac.New(sha256.New, s.key[:])
	m.Write(ni)
	m.Write(ip.Unmap().AsSlice())
	m.Write(spiI[:])
	return m.Sum([]byte{s.version})
}

// checkCookie reports whether the IKE_SA_INIT request in may go on: it needs no cookie at
// c's threshold, or its first payload is a COOKIE notification we made. Otherwise it
// answers with a fresh cookie, statelessly.
func (e *Engine) checkCookie(c *connection, in *v2Inbound) bool {
	if e.halfOpen < c.cfg.IKE.CookieThreshold {
		return true
	}
	cur, prev, err := e.cookieSecrets()
	if err != nil {
		e.log.Warn("cookie secret", "err", err)
		return false
	}
	ni := []byte(nil)
	if n := ikev2.Find[*ikev2.Nonce](in.m.Payloads); n != nil {
		ni = n.Data
	}
	ip, spiI := in.remote.Addr(), in.m.Header.SPIi
	if ps := in.m.Payloads; len(ps) > 0 {
		if n, ok := ps[0].(*ikev2.Notify); ok && n.NotifyType == ikev2.NotifyCookie && len(n.Data) > 0 {
			for _, s := range []*cookieSecret{cur, prev} {
				if s != nil && s.version == n.Data[0] && hmac.Equal(n.Data, s.cookieFor(ni, ip, spiI)) {
					return true
				}
			}
		}
	}
	e.sendPlainNotify(in, ikev2.NotifyCookie, cur.cookieFor(ni, ip, spiI))
	e.log.Debug("asked for a cookie", "peer", in.remote, "half_open", e.halfOpen)
	return false
}

// sendPlainNotify answers the IKE_SA_INIT request in with one unprotected notification,
// keeping no state.
func (e *Engine) sendPlainNotify(in *v2Inbound, t ikev2.NotifyType, data []byte) {
	m := ikev2.Message{Header: ikev2.Header{SPIi: in.m.Header.SPIi, Version: ikev2.Version,
		Exchange: ikev2.ExchangeIKESAInit, Flags: ikev2.FlagResponse},
		Payloads: []ikev2.Payload{&ikev2.Notify{NotifyType: t, Data: data}}}
	if err := e.opts.Bind.SendIKE(m.Marshal(), in.local, in.remote); err != nil {
		e.log.Debug("send failed", "peer", in.remote, "err", err)
	}
}

// takeCookie handles a responder's COOKIE in its IKE_SA_INIT answer: the request goes
// again with it in front (RFC 7296 2.6), keeping Ni and SPIi, which the cookie covers. A
// responder may ask again with a new cookie (its secret changed), a few times.
func (e *Engine) takeCookie(sa *v2SA, n *ikev2.Notify) error {
	const maxCookies = 3
	switch {
	case len(n.Data) == 0 || len(n.Data) > 64:
		return fmt.Errorf("COOKIE of %d bytes from %v, want 1 to 64", len(n.Data), sa.remote)
	case bytes.Equal(n.Data, sa.cookie) || sa.cookies >= maxCookies:
		return errIgnore // a late answer to a request we already sent again
	}
	sa.cookies++
	sa.cookie = bytes.Clone(n.Data)
	e.log.Debug("responder asked for a cookie, sending IKE_SA_INIT again", sa.logArgs()...)
	return e.retrySAInit(sa)
}
