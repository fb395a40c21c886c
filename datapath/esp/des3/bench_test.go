package des3

import (
	"crypto/cipher"
	"crypto/des"
	"fmt"
	"testing"
)

// ivSetter is crypto/cipher's CBC mode, reused across messages as datapath/esp does.
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

func benchKey() []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i*37 + 11)
	}
	return k
}

func stdlibModes(b *testing.B) (enc, dec ivSetter) {
	blk, err := des.NewTripleDESCipher(benchKey())
	if err != nil {
		b.Fatal(err)
	}
	iv := make([]byte, BlockSize)
	return cipher.NewCBCEncrypter(blk, iv).(ivSetter), cipher.NewCBCDecrypter(blk, iv).(ivSetter)
}

// BenchmarkDecryptCBC decrypts one ESP payload: a full-size one, and a TCP ACK's, where
// most lanes idle.
func BenchmarkDecryptCBC(b *testing.B) {
	for _, size := range []int{1400, 64} {
		buf, iv := make([]byte, size), make([]byte, BlockSize)
		b.Run(fmt.Sprintf("bytes=%d/impl=des3", size), func(b *testing.B) {
			c := mustNew(b, benchKey())
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				c.DecryptCBC(buf, buf, iv)
			}
		})
		b.Run(fmt.Sprintf("bytes=%d/impl=crypto-des", size), func(b *testing.B) {
			_, dec := stdlibModes(b)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				dec.SetIV(iv)
				dec.CryptBlocks(buf, buf)
			}
		})
	}
}

// BenchmarkEncryptCBC encrypts a batch of equal 1400-byte payloads: 46 is one 64 KB TSO
// super-packet cut at the MTU, 1 a lone packet.
func BenchmarkEncryptCBC(b *testing.B) {
	for _, n := range []int{46, 1} {
		chains := make([]Chain, n)
		for i := range chains {
			chains[i] = Chain{IV: make([]byte, BlockSize), Data: make([]byte, 1400)}
		}
		total := int64(n * 1400)
		b.Run(fmt.Sprintf("chains=%d/impl=des3", n), func(b *testing.B) {
			c := mustNew(b, benchKey())
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				c.EncryptCBC(chains)
			}
		})
		b.Run(fmt.Sprintf("chains=%d/impl=crypto-des", n), func(b *testing.B) {
			enc, _ := stdlibModes(b)
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				for _, ch := range chains {
					enc.SetIV(ch.IV)
					enc.CryptBlocks(ch.Data, ch.Data)
				}
			}
		})
	}
}
