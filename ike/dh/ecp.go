package dh

import (
	"crypto/ecdh"
	"fmt"
	"io"
)

// maxScalarAttempts bounds the rejection sampling in GenerateKey. A random 256-bit
// string is at or above the P-256 order with probability about 2^-32, so running out of
// attempts means rand is broken.
const maxScalarAttempts = 8

// ecpGroup is a NIST prime curve used as an IKE ECP group (RFC 5903).
type ecpGroup struct {
	id       uint16
	curve    ecdh.Curve
	coordLen int // bytes in a field element and in a scalar: 32 for P-256, 48 for P-384
}

func newECP(id uint16, curve ecdh.Curve, coordLen int) *ecpGroup {
	return &ecpGroup{id: id, curve: curve, coordLen: coordLen}
}

func (g *ecpGroup) ID() uint16     { return g.id }
func (g *ecpGroup) PublicLen() int { return 2 * g.coordLen }

// GenerateKey reads a scalar from rand, retrying when it is zero or not below the group
// order. Reading rand ourselves (crypto/ecdh's GenerateKey ignores it since Go 1.26)
// gives both group families the same contract.
func (g *ecpGroup) GenerateKey(rand io.Reader) (PrivateKey, error) {
	buf := make([]byte, g.coordLen)
	defer clear(buf)
	for range maxScalarAttempts {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("dh: group %d: reading private scalar: %w", g.id, err)
		}
		if k, err := g.curve.NewPrivateKey(buf); err == nil {
			return &ecpKey{group: g, k: k}, nil
		}
	}
	return nil, fmt.Errorf("dh: group %d: random source returned %d out-of-range scalars", g.id, maxScalarAttempts)
}

type ecpKey struct {
	redacted
	group     *ecpGroup
	k         *ecdh.PrivateKey
	destroyed bool
}

// Destroy makes the key unusable; crypto/ecdh offers no way to overwrite its scalar.
func (k *ecpKey) Destroy() { k.destroyed = true }

// Public is x | y without the SEC 1 0x04 prefix (RFC 5903 section 7).
func (k *ecpKey) Public() []byte { return k.k.PublicKey().Bytes()[1:] }

// CheckPublic checks the peer's x | y is a point on the curve (crypto/ecdh rejects
// off-curve points and the point at infinity).
func (g *ecpGroup) CheckPublic(peerPublic []byte) error {
	_, err := g.peerPoint(peerPublic)
	return err
}

func (g *ecpGroup) peerPoint(peerPublic []byte) (*ecdh.PublicKey, error) {
	if len(peerPublic) != g.PublicLen() {
		return nil, fmt.Errorf("dh: group %d: peer public value is %d bytes, want %d: %w",
			g.id, len(peerPublic), g.PublicLen(), ErrInvalidPublic)
	}
	pub, err := g.curve.NewPublicKey(append([]byte{4}, peerPublic...))
	if err != nil {
		return nil, fmt.Errorf("dh: group %d: peer public value is not a point on the curve: %w", g.id, ErrInvalidPublic)
	}
	return pub, nil
}

// SharedSecret validates the peer's point (CheckPublic) and returns the x coordinate of
// the product (RFC 5903 section 7).
func (k *ecpKey) SharedSecret(peerPublic []byte) ([]byte, error) {
	g := k.group
	pub, err := g.peerPoint(peerPublic)
	if err != nil {
		return nil, err
	}
	if k.destroyed {
		return nil, fmt.Errorf("dh: group %d: key destroyed", g.id)
	}
	z, err := k.k.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("dh: group %d: %w", g.id, err)
	}
	return z, nil
}
