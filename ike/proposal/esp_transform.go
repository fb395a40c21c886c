package proposal

import (
	"fmt"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// ESPOffer is an ESP transform as sent in a quick-mode SA payload: the algorithms plus
// the SA lifetimes and encapsulation mode. Zero lifetimes and a zero Encap mean the
// attribute is absent.
type ESPOffer struct {
	ESP
	Lifetime      time.Duration
	LifeKilobytes uint64
	// Encap is the isakmp encapsulation mode: isakmp.EncapTunnel, or with NAT-T
	// isakmp.EncapUDPTunnel (RFC 3947) or isakmp.EncapUDPTunnelDraft (older peers).
	Encap uint16
}

// Transform encodes o as an ESP transform (RFC 2407 section 4.5): the transform ID names
// the cipher, attributes carry the key length (AES), the authentication algorithm (not
// with AES-GCM), the PFS group, the encapsulation mode and the lifetimes. o.ESP must be
// valid, as ParseESP returns it.
func (o ESPOffer) Transform(number uint8) isakmp.Transform {
	var attrs []isakmp.Attribute
	attrs = append(attrs, lifeAttributes(isakmp.IPsecAttrLifeType, isakmp.IPsecAttrLifeDuration,
		isakmp.LifeTypeSeconds, uint64(o.Lifetime/time.Second))...)
	attrs = append(attrs, lifeAttributes(isakmp.IPsecAttrLifeType, isakmp.IPsecAttrLifeDuration,
		isakmp.LifeTypeKilobytes, o.LifeKilobytes)...)
	if o.Group != 0 {
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrGroupDescription, o.Group))
	}
	if o.Encap != 0 {
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrEncapsulationMode, o.Encap))
	}
	if o.Integrity != HashNone {
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrAuthAlgorithm, espAuths.toWire(o.Integrity)))
	}
	if o.Encryption != Enc3DES {
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.IPsecAttrKeyLength, uint16(o.KeyBits)))
	}
	return isakmp.Transform{Number: number, ID: uint8(espTransforms.toWire(o.Encryption)), Attributes: attrs}
}

// ParseESPTransform decodes an ESP transform the peer sent. Ciphers, authentication
// algorithms, groups and encapsulation modes this gateway does not implement (transport
// mode among them), unknown or repeated attributes, an authentication algorithm with
// AES-GCM and a CBC cipher without one are errors naming the attribute and value.
func ParseESPTransform(t isakmp.Transform) (ESPOffer, error) {
	o, err := parseESPTransform(t)
	if err != nil {
		return ESPOffer{}, fmt.Errorf("proposal: ESP transform %d: %w", t.Number, err)
	}
	return o, nil
}

func parseESPTransform(t isakmp.Transform) (ESPOffer, error) {
	var (
		o      ESPOffer
		life   lifetimes
		got    seen
		keyLen uint64
		err    error
	)
	if o.Encryption, err = espTransforms.fromWire("transform ID", uint64(t.ID)); err != nil {
		return ESPOffer{}, err
	}
	for _, a := range t.Attributes {
		v, err := a.Uint()
		if err != nil {
			return ESPOffer{}, err
		}
		if a.Type != isakmp.IPsecAttrLifeType && a.Type != isakmp.IPsecAttrLifeDuration {
			if err := got.first(a.Type); err != nil {
				return ESPOffer{}, err
			}
		}
		switch a.Type {
		case isakmp.IPsecAttrLifeType:
			err = life.setType(v)
		case isakmp.IPsecAttrLifeDuration:
			err = life.setDuration(v)
		case isakmp.IPsecAttrGroupDescription:
			o.Group, err = group(v)
		case isakmp.IPsecAttrEncapsulationMode:
			o.Encap, err = encapModes.fromWire("encapsulation mode", v)
		case isakmp.IPsecAttrAuthAlgorithm:
			o.Integrity, err = espAuths.fromWire("authentication algorithm", v)
		case isakmp.IPsecAttrKeyLength:
			keyLen = v
		default:
			err = fmt.Errorf("attribute class %d is not supported", a.Type)
		}
		if err != nil {
			return ESPOffer{}, err
		}
	}
	if err := life.done(); err != nil {
		return ESPOffer{}, err
	}
	aead := o.Encryption == EncAESGCM16
	switch {
	case aead && o.Integrity != HashNone:
		return ESPOffer{}, fmt.Errorf("authentication algorithm %d with %v, want none", espAuths.toWire(o.Integrity), o.Encryption)
	case !aead && o.Integrity == HashNone:
		return ESPOffer{}, fmt.Errorf("no authentication algorithm attribute (%d) with %v", isakmp.IPsecAttrAuthAlgorithm, o.Encryption)
	}
	if o.KeyBits, err = keyBits(o.Encryption, got.has(isakmp.IPsecAttrKeyLength), keyLen); err != nil {
		return ESPOffer{}, err
	}
	o.Lifetime = time.Duration(life.seconds) * time.Second
	o.LifeKilobytes = life.kilobytes
	return o, nil
}
