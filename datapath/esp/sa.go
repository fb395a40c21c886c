package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp/des3"
	"github.com/espgw/espgw/datapath/replay"
)

// Direction tells whether an SA seals (outbound) or opens (inbound) packets.
type Direction uint8

const (
	Outbound Direction = iota + 1
	Inbound
)

// SA is one direction of an ESP security association with its crypto state, sequence
// number, anti-replay window (inbound) and lifetime accounting.
//
// Seal and Open are safe for concurrent use: the sequence number and counters are atomic,
// the per-packet crypto state (HMAC, CBC mode, IV stream, replay window) is serialized by a
// mutex. The mutex is uncontended when, as in the userspace datapath, one goroutine handles
// one direction.
type SA struct {
	spi       uint32
	dir       Direction
	lifetime  datapath.Lifetime
	installed time.Time

	seq                      atomic.Uint64 // outbound: last sequence number used
	bytes, packets           atomic.Uint64
	replayDrops, authFailure atomic.Uint64

	mu      sync.Mutex
	t       *transform
	filter  *replay.Filter // inbound
	ivGen   cipher.Stream  // outbound CBC: CSPRNG for IVs
	nonce   [gcmSaltLen + gcmIVLen]byte
	scratch [64]byte     // full HMAC digest
	chains  []des3.Chain // SealBatch's CBC messages, reused
}

// NewSA precomputes the crypto state of c for direction dir. installed starts the time
// lifetime.
func NewSA(c datapath.SA, dir Direction, installed time.Time) (*SA, error) {
	t, err := newTransform(c.Enc, c.EncKey, c.Integ, c.IntegKey)
	if err != nil {
		return nil, fmt.Errorf("SPI %#08x: %w", c.SPI, err)
	}
	s := &SA{spi: c.SPI, dir: dir, lifetime: c.Lifetime, installed: installed, t: t}
	copy(s.nonce[:], t.salt[:])
	switch dir {
	case Inbound:
		s.filter = replay.New(c.ReplayWindow)
	case Outbound:
		if t.aead == nil {
			if s.ivGen, err = newIVStream(); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("esp: direction %d, expected Outbound or Inbound: %w", dir, errWrongDirection)
	}
	return s, nil
}

// newIVStream returns AES-256-CTR under a fresh random key: a CSPRNG private to the SA.
// CBC needs unpredictable IVs (RFC 3602 section 3); drawing them from this stream costs
// one AES block per IV and no system call, which matters on kernels without the getrandom
// vDSO (OpenVZ/LXC hosts), where crypto/rand would enter the kernel per packet.
func newIVStream() (cipher.Stream, error) {
	var seed [32 + aes.BlockSize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("esp: seeding IV generator: %w", err)
	}
	b, err := aes.NewCipher(seed[:32])
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(b, seed[32:]), nil
}

// SPI returns the SA's SPI.
func (s *SA) SPI() uint32 { return s.spi }

// HeaderLen is the ESP header plus IV that Seal writes in front of the payload.
func (s *SA) HeaderLen() int { return HeaderLen + s.t.ivLen }

// Overhead is the number of bytes Seal adds to an n-byte payload.
func (s *SA) Overhead(n int) int {
	return HeaderLen + s.t.ivLen + s.padLen(n) + trailerLen + s.t.icvLen
}

func (s *SA) padLen(n int) int {
	b := s.t.blockLen
	return (b - (n+trailerLen)%b) % b
}

// Seal turns the payload buf[off:off+n] into an ESP packet in place and returns it as a
// subslice of buf: the header and IV are written into buf[off-HeaderLen():off], padding,
// trailer and ICV after the payload. nextHeader is the payload's protocol (NextHeaderIPv4).
// It fails with ErrSeqOverflow once 2^32-1 packets were sent and with ErrHardLifetime past
// the hard byte limit: the SA must be replaced.
func (s *SA) Seal(buf []byte, off, n int, nextHeader uint8) ([]byte, error) {
	one := [1]Sealing{{Buf: buf, Off: off, N: n, NextHeader: nextHeader}}
	s.SealBatch(one[:])
	return one[0].Pkt, one[0].Err
}

// Sealing is one payload for SealBatch: Buf[Off:Off+N] becomes the ESP packet Pkt (within
// Buf, as with Seal), or Err says why it could not.
type Sealing struct {
	Buf        []byte
	Off, N     int
	NextHeader uint8

	Pkt []byte
	Err error
}

// SealBatch seals every entry of batch as Seal would, in order, under one lock. The CBC
// messages of the batch are encrypted together, which lets bitsliced 3DES run them in
// parallel.
func (s *SA) SealBatch(batch []Sealing) {
	if s.dir != Outbound {
		for i := range batch {
			batch[i].Pkt, batch[i].Err = nil, errWrongDirection
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		e := &batch[i]
		if e.Pkt, e.Err = s.frame(e.Buf, e.Off, e.N, e.NextHeader); e.Err == nil {
			if e.Err = s.stamp(e.Pkt); e.Err != nil {
				e.Pkt = nil
				continue
			}
			s.bytes.Add(uint64(e.N))
			s.packets.Add(1)
		}
	}
	s.encrypt(batch)
}

// frame checks the room around buf[off:off+n], writes the padding and trailer behind it,
// and returns the whole packet: header and IV in front, ICV space behind.
func (s *SA) frame(buf []byte, off, n int, nextHeader uint8) (Packet, error) {
	hdr, pad := s.HeaderLen(), s.padLen(n)
	ctLen := n + pad + trailerLen
	end := off + ctLen + s.t.icvLen
	if off < hdr || n < 0 || end > len(buf) {
		return nil, fmt.Errorf("esp: seal buffer length %d with payload at [%d:%d], expected %d bytes headroom and %d tailroom: %w",
			len(buf), off, off+n, hdr, ctLen-n+s.t.icvLen, ErrBuffer)
	}
	if h := s.lifetime.HardBytes; h != 0 && s.bytes.Load()+uint64(n) > h {
		return nil, ErrHardLifetime
	}
	tr := buf[off+n : off+ctLen]
	for i := range pad {
		tr[i] = byte(i + 1) // RFC 4303 section 2.4 default padding 1, 2, 3, ...
	}
	tr[pad], tr[pad+1] = byte(pad), nextHeader
	return Packet(buf[off-hdr : end]), nil
}

// stamp gives pkt the next sequence number, the SPI and an IV. The caller holds s.mu.
func (s *SA) stamp(pkt Packet) error {
	seq := s.seq.Add(1)
	if seq > math.MaxUint32 {
		return ErrSeqOverflow
	}
	pkt.setHeader(s.spi, uint32(seq))
	iv := pkt[HeaderLen:s.HeaderLen()]
	if s.t.aead != nil {
		// RFC 4106 section 3.1: the IV must be unique per key; the sequence number is.
		binary.BigEndian.PutUint64(iv, seq)
	} else {
		clear(iv)
		s.ivGen.XORKeyStream(iv, iv)
	}
	return nil
}

// encrypt encrypts the stamped packets of batch (those without Err) in place and writes
// their ICVs. The caller holds s.mu.
func (s *SA) encrypt(batch []Sealing) {
	t := s.t
	hdr := HeaderLen + t.ivLen
	chains := s.chains[:0]
	for i := range batch {
		p := batch[i].Pkt
		if batch[i].Err != nil {
			continue
		}
		ct := len(p) - t.icvLen
		if t.aead != nil {
			copy(s.nonce[gcmSaltLen:], p[HeaderLen:hdr])
			t.aead.Seal(p[hdr:hdr], s.nonce[:], p[hdr:ct], p[:HeaderLen])
			continue
		}
		chains = append(chains, des3.Chain{IV: p[HeaderLen:hdr], Data: p[hdr:ct]})
	}
	if t.aead != nil {
		return
	}
	t.cbc.EncryptCBC(chains)
	for i := range batch {
		if p := batch[i].Pkt; batch[i].Err == nil {
			ct := len(p) - t.icvLen
			copy(p[ct:], t.icv(p[:ct], s.scratch[:]))
		}
	}
	clear(chains) // drop references to the caller's buffers
	s.chains = chains[:0]
}

// Open authenticates and decrypts the ESP packet pkt (starting at the SPI) in place and
// returns the inner packet, a subslice of pkt. Order follows RFC 4303 section 3.4: replay
// check, ICV verification (constant time, before any decryption), window update, decryption,
// padding and next header checks. Only IPv4 and IPv6 next headers are accepted.
func (s *SA) Open(pkt []byte) ([]byte, error) { return s.OpenTo(nil, pkt) }

// OpenTo is Open with the plaintext written to dst instead of in place, which saves the
// receiver a copy out of a reused buffer; a nil dst means in place. dst must not overlap
// pkt and must have room for the ciphertext (len(pkt) minus header, IV and ICV); the
// inner packet is returned within dst.
func (s *SA) OpenTo(dst, pkt []byte) ([]byte, error) {
	if s.dir != Inbound {
		return nil, errWrongDirection
	}
	t := s.t
	hdr := HeaderLen + t.ivLen
	if min := hdr + t.blockLen + t.icvLen; len(pkt) < min {
		return nil, fmt.Errorf("esp: packet length %d, expected at least %d (header %d, IV %d, one block %d, ICV %d): %w",
			len(pkt), min, HeaderLen, t.ivLen, t.blockLen, t.icvLen, ErrTruncated)
	}
	ctLen := len(pkt) - hdr - t.icvLen
	if ctLen%t.blockLen != 0 {
		return nil, fmt.Errorf("esp: ciphertext length %d, expected a multiple of %d: %w", ctLen, t.blockLen, ErrTruncated)
	}
	p := Packet(pkt)
	if p.SPI() != s.spi {
		return nil, ErrWrongSPI
	}
	if h := s.lifetime.HardBytes; h != 0 && s.bytes.Load() >= h {
		return nil, ErrHardLifetime
	}
	seq := uint64(p.Seq())
	ct := pkt[hdr : hdr+ctLen]
	switch {
	case dst == nil:
		dst = ct
	case len(dst) < ctLen:
		return nil, fmt.Errorf("esp: destination length %d, expected at least the ciphertext length %d: %w", len(dst), ctLen, ErrBuffer)
	default:
		dst = dst[:ctLen]
	}

	s.mu.Lock()
	if !s.filter.Check(seq) {
		s.mu.Unlock()
		s.replayDrops.Add(1)
		return nil, ErrReplay
	}
	var err error
	if t.aead != nil {
		copy(s.nonce[gcmSaltLen:], pkt[HeaderLen:hdr])
		_, err = t.aead.Open(dst[:0], s.nonce[:], pkt[hdr:], pkt[:HeaderLen])
	} else if !hmac.Equal(t.icv(pkt[:hdr+ctLen], s.scratch[:]), pkt[hdr+ctLen:]) {
		err = ErrAuth
	} else {
		t.cbc.DecryptCBC(dst, ct, pkt[HeaderLen:hdr])
	}
	if err != nil {
		s.mu.Unlock()
		s.authFailure.Add(1)
		return nil, ErrAuth
	}
	s.filter.Accept(seq)
	s.mu.Unlock()

	inner, err := checkTrailer(dst)
	if err != nil {
		return nil, err
	}
	s.bytes.Add(uint64(len(inner)))
	s.packets.Add(1)
	return inner, nil
}

// checkTrailer validates the padding (RFC 4303 section 2.4: 1, 2, 3, ...) and next header
// of decrypted plaintext and returns the payload.
func checkTrailer(pt []byte) ([]byte, error) {
	nh := pt[len(pt)-1]
	pad := int(pt[len(pt)-2])
	if pad+trailerLen > len(pt) {
		return nil, fmt.Errorf("esp: pad length %d exceeds plaintext length %d: %w", pad, len(pt), ErrPadding)
	}
	payload := pt[:len(pt)-trailerLen-pad]
	for i, b := range pt[len(payload) : len(pt)-trailerLen] {
		if b != byte(i+1) {
			return nil, fmt.Errorf("esp: padding byte %d is %d, expected %d: %w", i, b, i+1, ErrPadding)
		}
	}
	if nh != NextHeaderIPv4 && nh != NextHeaderIPv6 {
		return nil, fmt.Errorf("esp: next header %d, expected %d (IPv4) or %d (IPv6): %w", nh, NextHeaderIPv4, NextHeaderIPv6, ErrNextHeader)
	}
	return payload, nil
}
