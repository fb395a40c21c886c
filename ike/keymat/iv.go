package keymat

import "github.com/espgw/espgw/ike/proposal"

// Phase1IV is the IV of the first encrypted phase-1 message: the first blockSize bytes
// of hash(g^xi | g^xr), with the plain hash, not the prf (RFC 2409 Appendix B).
// blockSize must not exceed h.Size(), which holds for every cipher and hash IKEv1 uses.
func Phase1IV(h proposal.Hash, gxi, gxr []byte, blockSize int) []byte {
	return truncatedHash(h, blockSize, gxi, gxr)
}

// Phase2IV is the IV of the first message of a quick mode or informational exchange:
// the first blockSize bytes of hash(last phase-1 CBC output block | M-ID) (RFC 2409
// Appendix B). messageID is the 4-byte message ID as it appears in the ISAKMP header.
// Later messages of the exchange chain on from their predecessor's last ciphertext block.
func Phase2IV(h proposal.Hash, lastPhase1Block, messageID []byte, blockSize int) []byte {
	return truncatedHash(h, blockSize, lastPhase1Block, messageID)
}

func truncatedHash(h proposal.Hash, n int, data ...[]byte) []byte {
	d := h.New()
	for _, b := range data {
		d.Write(b)
	}
	return d.Sum(nil)[:n]
}
