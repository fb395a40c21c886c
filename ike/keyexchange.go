package ike

import (
	"fmt"

	"github.com/espgw/espgw/ike/dh"
	"github.com/espgw/espgw/ike/isakmp"
)

// ourKENonce creates our nonce for phase 1 and returns the KE payload of our DH key
// (sa.dhKey, from phase1DH) and the nonce payload.
func (e *Engine) ourKENonce(sa *ikeSA) ([]isakmp.Payload, error) {
	n, err := e.makeNonce()
	if err != nil {
		return nil, err
	}
	pub := sa.dhKey.Public()
	if sa.initiator {
		sa.gxi, sa.nonceI = pub, n
	} else {
		sa.gxr, sa.nonceR = pub, n
	}
	return []isakmp.Payload{&isakmp.KeyExchange{Data: pub}, &isakmp.Nonce{Data: n}}, nil
}

// ourKENonceKeys is ourKENonce, followed, with the shared secret, by the phase-1 keys.
func (e *Engine) ourKENonceKeys(sa *ikeSA, shared []byte) ([]isakmp.Payload, error) {
	ps, err := e.ourKENonce(sa)
	if err == nil && shared != nil {
		err = sa.deriveKeys(shared)
	}
	return ps, err
}

// takeKENonce stores the peer's phase-1 KE and nonce.
func (sa *ikeSA) takeKENonce(ps []isakmp.Payload) error {
	ke, _, okKE := findPayload[*isakmp.KeyExchange](ps, nil)
	n, _, okN := findPayload[*isakmp.Nonce](ps, nil)
	if !okKE || !okN {
		return fmt.Errorf("%s message lacks KE or nonce payload", sa.state)
	}
	if err := checkKE(sa.prop.Group, ke.Data); err != nil {
		return err
	}
	if sa.initiator {
		sa.gxr, sa.nonceR = clone(ke.Data), clone(n.Data)
	} else {
		sa.gxi, sa.nonceI = clone(ke.Data), clone(n.Data)
	}
	return nil
}

// checkKE validates a KE payload's public value for the negotiated group (length, range,
// point on the curve) before we spend an exponentiation on the exchange: a forged first
// message with a bad value costs no DH.
func checkKE(group uint16, pub []byte) error {
	g, err := dh.ByID(group)
	if err != nil {
		return err
	}
	if len(pub) != g.PublicLen() {
		return fmt.Errorf("KE payload length %d, want %d for DH group %d", len(pub), g.PublicLen(), group)
	}
	return g.CheckPublic(pub)
}

// dropKey destroys a DH private key that is no longer needed and forgets it.
func dropKey(k *dh.PrivateKey) {
	if *k != nil {
		(*k).Destroy()
		*k = nil
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
