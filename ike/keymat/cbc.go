package keymat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"

	"github.com/espgw/espgw/ike/proposal"
)

// ErrCiphertextLength is wrapped by DecryptCBC when the encrypted body is empty or not
// a whole number of blocks.
var ErrCiphertextLength = errors.New("ciphertext length is not a non-zero multiple of the block size")

// NewCBC returns the block cipher of an ISAKMP SA: 3DES with a 24-byte key, or AES with a
// 16-, 24- or 32-byte key. AES-GCM is not an IKEv1 phase-1 cipher.
func NewCBC(enc proposal.Encryption, key []byte) (cipher.Block, error) {
	switch enc {
	case proposal.Enc3DES:
		if len(key) != 24 {
			return nil, fmt.Errorf("keymat: 3des key is %d bytes, want 24", len(key))
		}
		return des.NewTripleDESCipher(key)
	case proposal.EncAESCBC:
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("keymat: aes-cbc key is %d bytes, want 16, 24 or 32", n)
		}
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("keymat: encryption %v is not an IKEv1 phase-1 cipher, want 3des or aes-cbc", enc)
}

// EncryptCBC zero-pads plaintext to a multiple of the block size and encrypts it in CBC
// mode. IKEv1 messages are padded with 0x00 octets and no pad-length byte (RFC 2409
// Appendix B); the receiver finds the end of the data from the payload lengths. The IV for the next
// message is the last block of the returned ciphertext. iv must be one block long.
func EncryptCBC(b cipher.Block, iv, plaintext []byte) []byte {
	bs := b.BlockSize()
	out := make([]byte, (len(plaintext)+bs-1)/bs*bs)
	copy(out, plaintext)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, out)
	return out
}

// DecryptCBC decrypts a CBC body into a new slice, padding included: the caller parses
// the payloads and ignores what follows them, whichever padding the peer used. The IV
// for the next message is the last block of ciphertext.
func DecryptCBC(b cipher.Block, iv, ciphertext []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(iv) != bs {
		return nil, fmt.Errorf("keymat: IV is %d bytes, want %d", len(iv), bs)
	}
	if len(ciphertext) == 0 || len(ciphertext)%bs != 0 {
		return nil, fmt.Errorf("keymat: encrypted body is %d bytes, want a non-zero multiple of %d: %w",
			len(ciphertext), bs, ErrCiphertextLength)
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, ciphertext)
	return out, nil
}
