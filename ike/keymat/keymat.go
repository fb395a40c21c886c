// Package keymat derives IKEv1 keying material (RFC 2409 sections 5 and 5.5, Appendix B)
// and performs the phase-1 CBC encryption, and derives IKEv2's keys and PSK AUTH data
// (RFC 7296, ikev2.go). It is a handful of plain functions; the caller keeps the state (the
// SKEYIDs, the IV chain) of each exchange.
//
// h is always the negotiated phase-1 hash; prf is HMAC with h, as RFC 2409 uses it
// when no PRF attribute was negotiated (the proposal package refuses that attribute).
package keymat

import (
	"crypto/hmac"
	"log/slog"

	"github.com/espgw/espgw/ike/proposal"
)

// PRF returns HMAC-h(key, data[0] | data[1] | ...).
func PRF(h proposal.Hash, key []byte, data ...[]byte) []byte {
	m := hmac.New(h.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// SKEYIDPSK is SKEYID for pre-shared key authentication:
// prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409 section 5).
func SKEYIDPSK(h proposal.Hash, psk, ni, nr []byte) []byte {
	return PRF(h, psk, ni, nr)
}

// Phase1 is the secret state of an ISAKMP SA: SKEYID and the three keys derived from
// it. It logs and prints as [redacted].
type Phase1 struct {
	SKEYID []byte
	D      []byte // SKEYID_d, keys quick-mode KEYMAT
	A      []byte // SKEYID_a, authenticates ISAKMP messages (HASH(1), HASH(2), ...)
	E      []byte // SKEYID_e, expands into the phase-1 encryption key
}

// LogValue implements slog.LogValuer.
func (Phase1) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String and GoString keep the keys out of fmt output.
func (Phase1) String() string   { return "[redacted]" }
func (Phase1) GoString() string { return "keymat.Phase1{[redacted]}" }

// DerivePhase1 computes, from SKEYID, the shared secret g^xy and the two cookies
// (RFC 2409 section 5):
//
//	SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
//	SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
//	SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
func DerivePhase1(h proposal.Hash, skeyid, gxy, ckyI, ckyR []byte) Phase1 {
	d := PRF(h, skeyid, gxy, ckyI, ckyR, []byte{0})
	a := PRF(h, skeyid, d, gxy, ckyI, ckyR, []byte{1})
	e := PRF(h, skeyid, a, gxy, ckyI, ckyR, []byte{2})
	return Phase1{SKEYID: skeyid, D: d, A: a, E: e}
}

// EncryptionKey returns the n-byte phase-1 encryption key (RFC 2409 Appendix B): the
// first n bytes of SKEYID_e when it is long enough, otherwise the first n bytes of
// K1 | K2 | ... with K1 = prf(SKEYID_e, 0) (one zero octet) and Ki = prf(SKEYID_e, Ki-1).
func EncryptionKey(h proposal.Hash, skeyidE []byte, n int) []byte {
	if len(skeyidE) >= n {
		return append([]byte(nil), skeyidE[:n]...)
	}
	k := make([]byte, 0, n+h.Size())
	for block := []byte{0}; len(k) < n; {
		block = PRF(h, skeyidE, block)
		k = append(k, block...)
	}
	return k[:n]
}

// QuickModeKeymat returns n bytes of KEYMAT for one SA of a quick mode (RFC 2409 section 5.5):
//
//	K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//	Ki = prf(SKEYID_d, Ki-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//
// gxyQM is the quick mode's own DH secret with PFS, nil without. spi is the SPI of the SA
// being keyed (the receiver's inbound SPI), protocol its protocol ID (3 for ESP). For ESP
// the encryption key is the first EncKeyLen bytes, the integrity key follows.
func QuickModeKeymat(h proposal.Hash, skeyidD, gxyQM []byte, protocol uint8, spi, ni, nr []byte, n int) []byte {
	k := make([]byte, 0, n+h.Size())
	var block []byte
	for len(k) < n {
		block = PRF(h, skeyidD, block, gxyQM, []byte{protocol}, spi, ni, nr)
		k = append(k, block...)
	}
	return k[:n]
}
