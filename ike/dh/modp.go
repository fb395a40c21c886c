package dh

import (
	"fmt"
	"io"
	"math/big"
)

// Private exponent lengths. Finding a short exponent x from 2^x takes about 2^(bits/2)
// steps (Pollard's lambda), so twice the group's security strength s gives x the strength of
// the group itself, and every further bit only costs time, linearly. NIST SP 800-56A Rev. 3
// sets that bound for its safe-prime groups (section 5.6.1.1.1: a key below 2^N with
// N >= 2s; the strengths in appendix D: MODP-2048 112 bits, MODP-3072 128, MODP-4096 152),
// and RFC 3526 section 8 the same rule in words. We take 2s but at least 256 bits: groups 2
// and 5 are not among SP 800-56A's groups (too weak; 256 is above twice RFC 3526's largest
// estimate for the 1536-bit group, 120 bits), and math/big exponentiates in whole 64-bit
// words, so MODP-2048's 224 bits would cost what 256 do.
const (
	exponentBitsFloor    = 256 // groups 2, 5, 14 and 15
	exponentBitsMODP4096 = 2 * 152
)

// modpGroup is a MODP group with generator 2 (RFC 2409 section 6, RFC 3526).
type modpGroup struct {
	id       uint16
	p        *big.Int
	pMinus1  *big.Int
	size     int // length of p in bytes: the length of public values and shared secrets
	expBytes int // length of a private exponent in bytes
}

var two = big.NewInt(2)

func newMODP(id uint16, primeHex string, exponentBits int) *modpGroup {
	p, ok := new(big.Int).SetString(primeHex, 16)
	if !ok {
		panic(fmt.Sprintf("dh: group %d: malformed prime constant", id))
	}
	return &modpGroup{
		id:       id,
		p:        p,
		pMinus1:  new(big.Int).Sub(p, big.NewInt(1)),
		size:     (p.BitLen() + 7) / 8,
		expBytes: exponentBits / 8,
	}
}

func (g *modpGroup) ID() uint16     { return g.id }
func (g *modpGroup) PublicLen() int { return g.size }

// GenerateKey reads an exponent x of the group's length from rand and computes 2^x mod p.
func (g *modpGroup) GenerateKey(rand io.Reader) (PrivateKey, error) {
	buf := make([]byte, g.expBytes)
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, fmt.Errorf("dh: group %d: reading private exponent: %w", g.id, err)
	}
	x := new(big.Int).SetBytes(buf)
	clear(buf)
	// x < 2 happens with probability 2^-255 or less: only a broken rand gets here.
	if x.Cmp(two) < 0 {
		return nil, fmt.Errorf("dh: group %d: random source returned a degenerate exponent", g.id)
	}
	y := new(big.Int).Exp(two, x, g.p)
	return &modpKey{group: g, x: x, public: y.FillBytes(make([]byte, g.size))}, nil
}

type modpKey struct {
	redacted
	group  *modpGroup
	x      *big.Int
	public []byte
}

func (k *modpKey) Public() []byte { return append([]byte(nil), k.public...) }

// CheckPublic rejects peer values that are not exactly PublicLen bytes or not in
// 1 < y < p-1: 0, 1 and p-1 would force the secret into a subgroup of order 1 or 2.
func (g *modpGroup) CheckPublic(peerPublic []byte) error {
	_, err := g.peerValue(peerPublic)
	return err
}

func (g *modpGroup) peerValue(peerPublic []byte) (*big.Int, error) {
	if len(peerPublic) != g.size {
		return nil, fmt.Errorf("dh: group %d: peer public value is %d bytes, want %d: %w",
			g.id, len(peerPublic), g.size, ErrInvalidPublic)
	}
	y := new(big.Int).SetBytes(peerPublic)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(g.pMinus1) >= 0 {
		return nil, fmt.Errorf("dh: group %d: peer public value outside 1 < y < p-1: %w", g.id, ErrInvalidPublic)
	}
	return y, nil
}

// SharedSecret validates the peer's value (CheckPublic) and returns y^x mod p.
func (k *modpKey) SharedSecret(peerPublic []byte) ([]byte, error) {
	g := k.group
	y, err := g.peerValue(peerPublic)
	if err != nil {
		return nil, err
	}
	if k.x == nil {
		return nil, fmt.Errorf("dh: group %d: key destroyed", g.id)
	}
	z := new(big.Int).Exp(y, k.x, g.p)
	defer clear(z.Bits())
	return z.FillBytes(make([]byte, g.size)), nil
}

// Destroy zeroes the exponent's words in place (big.Int.Bits shares them).
func (k *modpKey) Destroy() {
	if k.x != nil {
		clear(k.x.Bits())
		k.x = nil
	}
}

// The primes are p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + c) with
// c from RFC 2409 section 6.2 and RFC 3526; modp_test.go recomputes them from pi.
const (
	// RFC 2409 section 6.2, group 2 (1024 bits)
	modp1024 = "" +
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
	// RFC 3526 section 2, group 5 (1536 bits)
	modp1536 = "" +
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
	// RFC 3526 section 3, group 14 (2048 bits)
	modp2048 = "" +
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
		"3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
	// RFC 3526 section 4, group 15 (3072 bits)
	modp3072 = "" +
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
		"3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33" +
		"A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
		"ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864" +
		"D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2" +
		"08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
	// RFC 3526 section 5, group 16 (4096 bits)
	modp4096 = "" +
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
		"3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33" +
		"A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
		"ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864" +
		"D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2" +
		"08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7" +
		"88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8" +
		"DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2" +
		"233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9" +
		"93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"
)
