package proposal

import (
	"fmt"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// Transform encodes p as a KEY_IKE transform of a phase-1 SA payload (RFC 2409
// Appendix A): encryption, key length (AES), hash, pre-shared key authentication, group
// and, for a non-zero lifetime, its whole seconds. p must be valid, as ParseIKE returns it.
func (p IKE) Transform(number uint8, lifetime time.Duration) isakmp.Transform {
	attrs := []isakmp.Attribute{isakmp.BasicAttribute(isakmp.AttrEncryptionAlgorithm, ikeEncryptions.toWire(p.Encryption))}
	if p.Encryption != Enc3DES {
		attrs = append(attrs, isakmp.BasicAttribute(isakmp.AttrKeyLength, uint16(p.KeyBits)))
	}
	attrs = append(attrs,
		isakmp.BasicAttribute(isakmp.AttrHashAlgorithm, ikeHashes.toWire(p.Hash)),
		isakmp.BasicAttribute(isakmp.AttrAuthMethod, isakmp.AuthMethodPSK),
		isakmp.BasicAttribute(isakmp.AttrGroupDescription, p.Group))
	attrs = append(attrs, lifeAttributes(isakmp.AttrLifeType, isakmp.AttrLifeDuration,
		isakmp.LifeTypeSeconds, uint64(lifetime/time.Second))...)
	return isakmp.Transform{Number: number, ID: isakmp.TransformKeyIKE, Attributes: attrs}
}

// ParseIKETransform decodes a phase-1 transform the peer sent. It returns the proposal and
// the lifetime in seconds (0 if the peer sent none; a kilobyte lifetime is accepted and
// ignored, as phase 1 is rekeyed by time). Algorithms, groups or authentication methods
// this gateway does not implement, a PRF attribute, unknown or repeated attributes and
// missing ones are errors naming the attribute and value.
func ParseIKETransform(t isakmp.Transform) (IKE, time.Duration, error) {
	p, life, err := parseIKETransform(t)
	if err != nil {
		return IKE{}, 0, fmt.Errorf("proposal: IKE transform %d: %w", t.Number, err)
	}
	return p, life, nil
}

func parseIKETransform(t isakmp.Transform) (IKE, time.Duration, error) {
	if t.ID != isakmp.TransformKeyIKE {
		return IKE{}, 0, fmt.Errorf("transform ID %d, want %d (KEY_IKE)", t.ID, isakmp.TransformKeyIKE)
	}
	var (
		p      IKE
		life   lifetimes
		got    seen
		keyLen uint64
	)
	for _, a := range t.Attributes {
		v, err := a.Uint()
		if err != nil {
			return IKE{}, 0, err
		}
		if a.Type != isakmp.AttrLifeType && a.Type != isakmp.AttrLifeDuration {
			if err := got.first(a.Type); err != nil {
				return IKE{}, 0, err
			}
		}
		switch a.Type {
		case isakmp.AttrLifeType:
			err = life.setType(v)
		case isakmp.AttrLifeDuration:
			err = life.setDuration(v)
		case isakmp.AttrEncryptionAlgorithm:
			p.Encryption, err = ikeEncryptions.fromWire("encryption algorithm", v)
		case isakmp.AttrHashAlgorithm:
			p.Hash, err = ikeHashes.fromWire("hash algorithm", v)
		case isakmp.AttrAuthMethod:
			if v != isakmp.AuthMethodPSK {
				err = fmt.Errorf("authentication method %d is not supported, want %d (pre-shared key)", v, isakmp.AuthMethodPSK)
			}
		case isakmp.AttrGroupDescription:
			p.Group, err = group(v)
		case isakmp.AttrKeyLength:
			keyLen = v
		case isakmp.AttrPRF:
			err = fmt.Errorf("PRF attribute (%d) with value %d is not supported, want none (the HMAC of the hash)", a.Type, v)
		default:
			err = fmt.Errorf("attribute class %d is not supported", a.Type)
		}
		if err != nil {
			return IKE{}, 0, err
		}
	}
	if err := life.done(); err != nil {
		return IKE{}, 0, err
	}
	err := got.require(
		attrClass{isakmp.AttrEncryptionAlgorithm, "encryption algorithm"},
		attrClass{isakmp.AttrHashAlgorithm, "hash algorithm"},
		attrClass{isakmp.AttrAuthMethod, "authentication method"},
		attrClass{isakmp.AttrGroupDescription, "group description"})
	if err != nil {
		return IKE{}, 0, err
	}
	if p.KeyBits, err = keyBits(p.Encryption, got.has(isakmp.AttrKeyLength), keyLen); err != nil {
		return IKE{}, 0, err
	}
	return p, time.Duration(life.seconds) * time.Second, nil
}

// group checks a Group Description value.
func group(v uint64) (uint16, error) {
	if v > 0xffff || !knownGroup(uint16(v)) {
		return 0, fmt.Errorf("group description %d is not supported, want %s", v, supportedGroups())
	}
	return uint16(v), nil
}

// supportedGroups lists the group numbers with their keywords: "2 (modp1024), ...".
func supportedGroups() string {
	var s string
	for _, k := range keywords {
		if k.kind == kindGroup {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%d (%s)", k.group, k.name)
		}
	}
	return s
}
