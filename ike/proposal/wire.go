package proposal

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/espgw/espgw/ike/isakmp"
)

// mapping pairs this package's values with their numbers in an IANA registry.
type mapping[T comparable] []struct {
	wire uint16
	val  T
	name string // the registry's name, for error messages
}

func (m mapping[T]) toWire(v T) uint16 {
	for _, e := range m {
		if e.val == v {
			return e.wire
		}
	}
	panic(fmt.Sprintf("proposal: %v has no wire value", v))
}

// fromWire maps w back; what names the attribute in the error.
func (m mapping[T]) fromWire(what string, w uint64) (T, error) {
	for _, e := range m {
		if uint64(e.wire) == w {
			return e.val, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("%s %d is not supported, want %s", what, w, m.want())
}

// want lists the accepted values: "5 (3DES-CBC), 7 (AES-CBC)".
func (m mapping[T]) want() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = fmt.Sprintf("%d (%s)", e.wire, e.name)
	}
	return strings.Join(s, ", ")
}

// IKE phase-1 registries (RFC 2409 Appendix A, RFC 4868 for SHA-2).
var (
	ikeEncryptions = mapping[Encryption]{
		{isakmp.EncDES3, Enc3DES, "3DES-CBC"},
		{isakmp.EncAESCBC, EncAESCBC, "AES-CBC"},
	}
	ikeHashes = mapping[Hash]{
		{isakmp.HashMD5, HashMD5, "MD5"},
		{isakmp.HashSHA1, HashSHA1, "SHA"},
		{isakmp.HashSHA256, HashSHA256, "SHA2-256"},
		{isakmp.HashSHA384, HashSHA384, "SHA2-384"},
		{isakmp.HashSHA512, HashSHA512, "SHA2-512"},
	}
)

// ESP registries (RFC 2407 sections 4.4.4 and 4.5, RFC 4106 section 8, RFC 4868, RFC 3947).
var (
	espTransforms = mapping[Encryption]{
		{isakmp.ESPTransform3DES, Enc3DES, "ESP_3DES"},
		{isakmp.ESPTransformAESCBC, EncAESCBC, "ESP_AES"},
		{isakmp.ESPTransformAESGCM16, EncAESGCM16, "ESP_AES-GCM-16"},
	}
	espAuths = mapping[Hash]{
		{isakmp.AuthHMACMD5, HashMD5, "HMAC-MD5"},
		{isakmp.AuthHMACSHA1, HashSHA1, "HMAC-SHA"},
		{isakmp.AuthHMACSHA256, HashSHA256, "HMAC-SHA2-256"},
		{isakmp.AuthHMACSHA384, HashSHA384, "HMAC-SHA2-384"},
		{isakmp.AuthHMACSHA512, HashSHA512, "HMAC-SHA2-512"},
	}
	// Only tunnel modes: this gateway protects subnets, never host-to-host transport.
	encapModes = mapping[uint16]{
		{isakmp.EncapTunnel, isakmp.EncapTunnel, "Tunnel"},
		{isakmp.EncapUDPTunnel, isakmp.EncapUDPTunnel, "UDP-Encapsulated-Tunnel"},
		{isakmp.EncapUDPTunnelDraft, isakmp.EncapUDPTunnelDraft, "UDP-Encapsulated-Tunnel, NAT-T draft"},
	}
	lifeTypes = mapping[uint64]{
		{isakmp.LifeTypeSeconds, isakmp.LifeTypeSeconds, "seconds"},
		{isakmp.LifeTypeKilobytes, isakmp.LifeTypeKilobytes, "kilobytes"},
	}
)

// lifeAttributes returns the life type + duration pair for a non-zero limit.
func lifeAttributes(typeAttr, durationAttr, lifeType uint16, v uint64) []isakmp.Attribute {
	if v == 0 {
		return nil
	}
	return []isakmp.Attribute{isakmp.BasicAttribute(typeAttr, lifeType), isakmp.LifeAttribute(durationAttr, v)}
}

// lifetimes collects SA life type/duration pairs (RFC 2407 section 4.5): each duration
// applies to the life type sent just before it.
type lifetimes struct {
	pending            uint64 // life type awaiting its duration, 0 if none
	seconds, kilobytes uint64
}

func (l *lifetimes) setType(v uint64) error {
	if _, err := lifeTypes.fromWire("life type", v); err != nil {
		return err
	}
	if l.pending != 0 {
		return fmt.Errorf("life type %d follows life type %d without a life duration", v, l.pending)
	}
	if v == isakmp.LifeTypeSeconds && l.seconds != 0 || v == isakmp.LifeTypeKilobytes && l.kilobytes != 0 {
		return fmt.Errorf("life type %d repeated", v)
	}
	l.pending = v
	return nil
}

func (l *lifetimes) setDuration(v uint64) error {
	if l.pending == 0 {
		return fmt.Errorf("life duration %d without a preceding life type", v)
	}
	if v == 0 {
		return fmt.Errorf("life duration 0, want > 0")
	}
	if l.pending == isakmp.LifeTypeSeconds {
		if v > math.MaxInt64/uint64(time.Second) {
			return fmt.Errorf("life duration %d seconds, want <= %d", v, math.MaxInt64/uint64(time.Second))
		}
		l.seconds = v
	} else {
		l.kilobytes = v
	}
	l.pending = 0
	return nil
}

func (l *lifetimes) done() error {
	if l.pending != 0 {
		return fmt.Errorf("life type %d without a life duration", l.pending)
	}
	return nil
}

// keyBits checks the Key Length attribute (in bits) against the cipher: required for AES
// (RFC 3602 section 5, RFC 4106 section 8.4), optional and 192 for 3DES.
func keyBits(enc Encryption, present bool, v uint64) (int, error) {
	if enc == Enc3DES {
		if present && v != 192 {
			return 0, fmt.Errorf("key length %d for 3DES, want 192 or none", v)
		}
		return 0, nil
	}
	if !present {
		return 0, fmt.Errorf("%v without key length, want 128, 192 or 256", enc)
	}
	if v != 128 && v != 192 && v != 256 {
		return 0, fmt.Errorf("%v key length %d, want 128, 192 or 256", enc, v)
	}
	return int(v), nil
}

// seen records the attribute classes read so far. The classes this package accepts are
// all below 64; higher ones are never recorded, the parsers reject them as unsupported.
type seen uint64

func (s seen) has(t uint16) bool { return t < 64 && s&(1<<t) != 0 }

// first records t and fails if it was already there. Callers exempt the life attributes:
// a transform may carry one type/duration pair per life type.
func (s *seen) first(t uint16) error {
	if s.has(t) {
		return fmt.Errorf("attribute %d repeated", t)
	}
	if t < 64 {
		*s |= 1 << t
	}
	return nil
}

// attrClass names an attribute class for error messages.
type attrClass struct {
	class uint16
	name  string
}

// require fails for the first class of want that is missing.
func (s seen) require(want ...attrClass) error {
	for _, w := range want {
		if !s.has(w.class) {
			return fmt.Errorf("no %s attribute (%d)", w.name, w.class)
		}
	}
	return nil
}
