package keymat

import (
	"log/slog"

	"github.com/espgw/espgw/ike/proposal"
)

// IKEv2 key derivation (RFC 7296 sections 2.13-2.15, 2.17, 2.18). prf is HMAC with h, the
// negotiated PRF's hash (espgw offers only the HMAC PRFs).

// PRFPlus is prf+ (section 2.13): T1 | T2 | ... cut to n bytes, where
// T1 = prf(key, seed | 0x01) and Tk = prf(key, Tk-1 | seed | k).
func PRFPlus(h proposal.Hash, key, seed []byte, n int) []byte {
	out := make([]byte, 0, n+h.Size())
	var t []byte
	for i := byte(1); len(out) < n; i++ {
		t = PRF(h, key, t, seed, []byte{i})
		out = append(out, t...)
	}
	return out[:n]
}

// SKEYSEED is prf(Ni | Nr, g^ir) for a new IKE SA (section 2.14).
func SKEYSEED(h proposal.Hash, ni, nr, gir []byte) []byte {
	return PRF(h, append(append([]byte(nil), ni...), nr...), gir)
}

// RekeySKEYSEED is prf(SK_d (old), g^ir (new) | Ni | Nr) for an IKE SA that replaces one
// by CREATE_CHILD_SA (section 2.18).
func RekeySKEYSEED(h proposal.Hash, oldSKd, gir, ni, nr []byte) []byte {
	return PRF(h, oldSKd, gir, ni, nr)
}

// IKESAKeys are the seven keys of an IKEv2 SA. They log and print as [redacted].
type IKESAKeys struct {
	D      []byte // SK_d: keys child SAs and the next IKE SA
	AI, AR []byte // SK_ai, SK_ar: integrity of each direction (none with AEAD)
	EI, ER []byte // SK_ei, SK_er: encryption of each direction (key and salt for AEAD)
	PI, PR []byte // SK_pi, SK_pr: AUTH payload computation
}

// LogValue implements slog.LogValuer.
func (IKESAKeys) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func (IKESAKeys) String() string   { return "[redacted]" }
func (IKESAKeys) GoString() string { return "keymat.IKESAKeys{[redacted]}" }

// DeriveIKESA expands SKEYSEED into the IKE SA's keys: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
// split into SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (section 2.14). SK_d, SK_pi and
// SK_pr are as long as the PRF's output; integLen and encLen are the negotiated algorithms'
// key lengths (integLen 0 for AEAD, whose encLen includes the salt).
func DeriveIKESA(h proposal.Hash, skeyseed, ni, nr, spii, spir []byte, integLen, encLen int) IKESAKeys {
	prfLen := h.Size()
	seed := concat(ni, nr, spii, spir)
	km := PRFPlus(h, skeyseed, seed, 3*prfLen+2*integLen+2*encLen)
	next := func(n int) []byte {
		k := km[:n:n]
		km = km[n:]
		return k
	}
	return IKESAKeys{D: next(prfLen), AI: next(integLen), AR: next(integLen), EI: next(encLen), ER: next(encLen),
		PI: next(prfLen), PR: next(prfLen)}
}

// ChildSAKeymat is KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (section 2.17), n bytes: the
// initiator-to-responder encryption and integrity keys, then the other direction's. gir is nil
// without PFS.
func ChildSAKeymat(h proposal.Hash, skd, gir, ni, nr []byte, n int) []byte {
	return PRFPlus(h, skd, concat(gir, ni, nr), n)
}

// keyPad is the constant of the pre-shared key AUTH computation (section 2.15).
const keyPad = "Key Pad for IKEv2"

// SignedOctets is what AUTH covers for one side (section 2.15): the side's first message
// (its IKE_SA_INIT), the peer's nonce, and prf(SK_p, ID') where ID' is the side's ID payload
// body (type, reserved bytes and data) and SK_p that side's SK_pi or SK_pr.
func SignedOctets(h proposal.Hash, firstMessage, peerNonce, skp, idBody []byte) []byte {
	return concat(firstMessage, peerNonce, PRF(h, skp, idBody))
}

// PSKAuth is the AUTH data for a shared key: prf(prf(Shared Secret, "Key Pad for IKEv2"),
// signed octets) (section 2.15).
func PSKAuth(h proposal.Hash, psk, signedOctets []byte) []byte {
	return PRF(h, PRF(h, psk, []byte(keyPad)), signedOctets)
}

func concat(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
