package racoon

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/espgw/espgw/ike/proposal"
)

// cipher is an encryption algorithm with its key length as espgw knows it.
type cipher struct {
	enc  proposal.Encryption
	bits int
}

// parseCipher reads "3des", "aes", "aes 256", "rijndael 192".
func parseCipher(s string) (cipher, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return cipher{}, fmt.Errorf("%q: want an algorithm and optionally a key length", s)
	}
	switch strings.ToLower(f[0]) {
	case "3des":
		if len(f) == 2 && f[1] != "192" {
			return cipher{}, fmt.Errorf("3des with key length %s", f[1])
		}
		return cipher{proposal.Enc3DES, 0}, nil
	case "aes", "rijndael":
		bits := 128 // racoon's default for AES
		if len(f) == 2 {
			n, err := strconv.Atoi(f[1])
			if err != nil || (n != 128 && n != 192 && n != 256) {
				return cipher{}, fmt.Errorf("aes key length %q: want 128, 192 or 256", f[1])
			}
			bits = n
		}
		return cipher{proposal.EncAESCBC, bits}, nil
	}
	return cipher{}, fmt.Errorf("encryption %s: espgw supports 3des and aes (128, 192, 256)", f[0])
}

// ikeHashes are racoon's phase-1 hash_algorithm names.
var ikeHashes = map[string]proposal.Hash{
	"md5": proposal.HashMD5, "sha1": proposal.HashSHA1, "sha256": proposal.HashSHA256,
	"sha384": proposal.HashSHA384, "sha512": proposal.HashSHA512,
}

// espAuths are racoon's sainfo authentication_algorithm names espgw's datapath has.
var espAuths = map[string]proposal.Hash{
	"hmac_sha1": proposal.HashSHA1, "hmac_sha256": proposal.HashSHA256,
	"hmac_sha384": proposal.HashSHA384, "hmac_sha512": proposal.HashSHA512,
}

// list splits the words after a sainfo algorithm directive at commas: "aes 256, 3des".
func list(words []string) []string {
	var out []string
	for _, s := range strings.Split(strings.Join(words, " "), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
