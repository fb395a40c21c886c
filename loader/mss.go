package loader

import (
	"fmt"

	"github.com/espgw/espgw/datapath"
)

// Sizes of the headers an ESP tunnel adds around an inner TCP segment (RFC 4303, RFC 3948).
const (
	outerIPv4Len   = 20
	nattUDPLen     = 8
	espHeaderLen   = 8 // SPI and sequence number
	espTrailerLen  = 2 // pad length and next header
	innerIPTCPLen  = 40
	minClampedMSS  = 536 // RFC 9293 default; below it the clamp would hurt more than fragments
	espAlignGCMLen = 4   // RFC 4303 2.4: the ciphertext ends on a 4-byte boundary
)

// espGeometry returns the IV length and cipher block size of enc.
func espGeometry(enc datapath.Encryption) (iv, block int, err error) {
	switch enc {
	case datapath.Enc3DESCBC:
		return 8, 8, nil
	case datapath.EncAESCBC:
		return 16, 16, nil
	case datapath.EncAESGCM16:
		return 8, espAlignGCMLen, nil
	}
	return 0, 0, fmt.Errorf("encryption %d: want 3DES-CBC, AES-CBC or AES-GCM-16", enc)
}

// icvLen returns the length of the integrity check value of enc with integ.
func icvLen(enc datapath.Encryption, integ datapath.Integrity) (int, error) {
	if enc == datapath.EncAESGCM16 {
		if integ != datapath.IntegNone {
			return 0, fmt.Errorf("integrity %d with AES-GCM-16: want none (GCM authenticates)", integ)
		}
		return 16, nil
	}
	switch integ {
	case datapath.IntegHMACSHA1_96:
		return 12, nil
	case datapath.IntegHMACSHA256_128:
		return 16, nil
	case datapath.IntegHMACSHA384_192:
		return 24, nil
	case datapath.IntegHMACSHA512_256:
		return 32, nil
	}
	return 0, fmt.Errorf("integrity %d with a CBC cipher: want HMAC-SHA1-96 or HMAC-SHA2", integ)
}

// ClampMSS returns the largest TCP MSS whose segments still fit in pathMTU after ESP tunnel
// encapsulation with the given transforms: pathMTU − outer IPv4 (20) − UDP (8, with NAT-T) −
// ESP header (8) − IV − worst-case padding (block − 1) − pad length and next header (2) − ICV −
// inner IPv4 and TCP headers (40). Options in the inner headers reduce the payload further,
// which TCP accounts for itself.
func ClampMSS(pathMTU int, natt bool, enc datapath.Encryption, integ datapath.Integrity) (uint16, error) {
	iv, block, err := espGeometry(enc)
	if err != nil {
		return 0, err
	}
	icv, err := icvLen(enc, integ)
	if err != nil {
		return 0, err
	}
	mss := pathMTU - outerIPv4Len - espHeaderLen - iv - (block - 1) - espTrailerLen - icv - innerIPTCPLen
	if natt {
		mss -= nattUDPLen
	}
	if mss < minClampedMSS {
		return 0, fmt.Errorf("path MTU %d leaves an MSS of %d: want at least %d", pathMTU, mss, minClampedMSS)
	}
	if mss > 0xffff {
		return 0, fmt.Errorf("path MTU %d: want at most %d", pathMTU, 0xffff)
	}
	return uint16(mss), nil
}
