package ike

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/espgw/espgw/ike/isakmp"
	"github.com/espgw/espgw/ike/keymat"
	"github.com/espgw/espgw/ike/proposal"
)

// phase1Keys is the keying material of an ISAKMP SA (RFC 2409 5).
type phase1Keys struct {
	keymat.Phase1
	hash   proposal.Hash
	encKey []byte
	block  cipher.Block
}

// zero overwrites the key bytes once the ISAKMP SA is gone. The cipher's expanded key
// schedule lives in crypto/cipher and cannot be reached; it goes with the garbage.
func (k *phase1Keys) zero() {
	for _, b := range [][]byte{k.SKEYID, k.D, k.A, k.E, k.encKey} {
		clear(b)
	}
}

// prf is the negotiated PRF (HMAC with the phase-1 hash).
func (k *phase1Keys) prf(key []byte, data ...[]byte) []byte {
	return keymat.PRF(k.hash, key, data...)
}

// deriveKeys computes SKEYID and its descendants from the PSK, nonces and g^xy, the
// encryption key (Appendix B) and the first phase-1 IV.
func (sa *ikeSA) deriveKeys(shared []byte) error {
	h := sa.prop.Hash
	skeyid := keymat.SKEYIDPSK(h, sa.conn.cfg.PSK, sa.nonceI, sa.nonceR)
	k := &phase1Keys{Phase1: keymat.DerivePhase1(h, skeyid, shared, sa.icookie[:], sa.rcookie[:]), hash: h}
	k.encKey = keymat.EncryptionKey(h, k.E, sa.prop.KeyLen())
	b, err := keymat.NewCBC(sa.prop.Encryption, k.encKey)
	if err != nil {
		return fmt.Errorf("ike: phase-1 cipher: %w", err)
	}
	k.block = b
	sa.keys = k
	sa.ivChain = keymat.Phase1IV(h, sa.gxi, sa.gxr, b.BlockSize())
	return nil
}

// seal encrypts ps under iv into a message with header h; it returns the message and the
// IV that follows it (its last ciphertext block).
func (sa *ikeSA) seal(h isakmp.Header, ps []isakmp.Payload, iv []byte) (msg, next []byte) {
	ct := keymat.EncryptCBC(sa.keys.block, iv, isakmp.AppendPayloads(nil, ps))
	h.NextPayload = ps[0].Type()
	h.Flags |= isakmp.FlagEncryption
	h.Version = isakmp.Version
	h.Length = uint32(isakmp.HeaderLen + len(ct))
	msg = append(h.AppendTo(make([]byte, 0, isakmp.HeaderLen+len(ct))), ct...)
	return msg, lastBlock(ct, sa.keys.block.BlockSize())
}

// open decrypts and decodes an encrypted message under iv. It returns the payloads, their
// raw bytes (for HASH computations) and the IV that follows the message. Padding after
// the payload chain is ignored, whatever its content (RFC 2409 Appendix B).
func (sa *ikeSA) open(m *isakmp.Message, raw, iv []byte) (ps []isakmp.Payload, raws []isakmp.RawPayload, next []byte, err error) {
	if m.Header.Flags&isakmp.FlagEncryption == 0 {
		return nil, nil, nil, fmt.Errorf("%s message: encryption flag not set, want an encrypted message", m.Header.Exchange)
	}
	ct := raw[isakmp.HeaderLen:]
	pt, err := keymat.DecryptCBC(sa.keys.block, iv, ct)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("decrypting %s message: %w", m.Header.Exchange, err)
	}
	ps, raws, _, err = isakmp.DecodePayloads(m.Header.NextPayload, pt)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("decrypted %s message: %w", m.Header.Exchange, err)
	}
	return ps, raws, lastBlock(ct, sa.keys.block.BlockSize()), nil
}

func lastBlock(ct []byte, n int) []byte {
	return append([]byte(nil), ct[len(ct)-n:]...)
}

// phase2IV is the first IV of the quick mode or informational exchange msgID.
func (sa *ikeSA) phase2IV(msgID uint32) []byte {
	return keymat.Phase2IV(sa.keys.hash, sa.ivChain, binary.BigEndian.AppendUint32(nil, msgID), sa.keys.block.BlockSize())
}

// hashPayloads is prf(SKEYID_a, prefix | the raw payloads) for quick mode and
// informational HASH payloads (RFC 2409 5.5, 5.7).
func (sa *ikeSA) hashPayloads(prefix []byte, raws [][]byte) []byte {
	data := append([][]byte{prefix}, raws...)
	return sa.keys.prf(sa.keys.A, data...)
}
