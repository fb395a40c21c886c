package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
)

// suite is one transform combination with the names tshark's ESP SA table uses.
type suite struct {
	name              string
	enc               datapath.Encryption
	encKeyLen         int
	integ             datapath.Integrity
	integKeyLen       int
	tsharkEnc, tshAut string
}

var suites = []suite{
	{"3des-sha1", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA1_96, 20, "TripleDES-CBC [RFC2451]", "HMAC-SHA-1-96 [RFC2404]"},
	{"aes128-sha1", datapath.EncAESCBC, 16, datapath.IntegHMACSHA1_96, 20, "AES-CBC [RFC3602]", "HMAC-SHA-1-96 [RFC2404]"},
	{"aes192-sha256", datapath.EncAESCBC, 24, datapath.IntegHMACSHA256_128, 32, "AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
	{"aes256-sha256", datapath.EncAESCBC, 32, datapath.IntegHMACSHA256_128, 32, "AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
	{"aes256-sha384", datapath.EncAESCBC, 32, datapath.IntegHMACSHA384_192, 48, "AES-CBC [RFC3602]", "HMAC-SHA-384-192 [RFC4868]"},
	{"aes128-sha512", datapath.EncAESCBC, 16, datapath.IntegHMACSHA512_256, 64, "AES-CBC [RFC3602]", "HMAC-SHA-512-256 [RFC4868]"},
	{"3des-sha512", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA512_256, 64, "TripleDES-CBC [RFC2451]", "HMAC-SHA-512-256 [RFC4868]"},
	{"aes128gcm16", datapath.EncAESGCM16, 16 + 4, datapath.IntegNone, 0, "AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	{"aes192gcm16", datapath.EncAESGCM16, 24 + 4, datapath.IntegNone, 0, "AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	{"aes256gcm16", datapath.EncAESGCM16, 32 + 4, datapath.IntegNone, 0, "AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
}

// keyBytes is deterministic key material: distinct per suite and role.
func keyBytes(n int, seed byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = seed + byte(i*7)
	}
	return k
}

func (s suite) config(spi uint32) datapath.SA {
	return datapath.SA{
		SPI: spi,
		Enc: s.enc, EncKey: keyBytes(s.encKeyLen, 0x11),
		Integ: s.integ, IntegKey: keyBytes(s.integKeyLen, 0x55),
		ReplayWindow: 64,
	}
}

// pair returns the outbound and inbound halves of one SA.
func (s suite) pair(tb testing.TB, spi uint32) (out, in *SA) {
	tb.Helper()
	c := s.config(spi)
	out, err := NewSA(c, Outbound, time.Now())
	if err != nil {
		tb.Fatalf("%s: NewSA out: %v", s.name, err)
	}
	in, err = NewSA(c, Inbound, time.Now())
	if err != nil {
		tb.Fatalf("%s: NewSA in: %v", s.name, err)
	}
	return out, in
}

// icmpEcho returns an IPv4 ICMP echo request from src to dst with payloadLen bytes of data.
func icmpEcho(src, dst [4]byte, id, seq uint16, payloadLen int) []byte {
	p := make([]byte, 20+8+payloadLen)
	p[0], p[8], p[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	icmp := p[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := range payloadLen {
		icmp[8+i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return p
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// seal copies inner into a fresh buffer with head- and tailroom and seals it.
func seal(tb testing.TB, sa *SA, inner []byte) []byte {
	tb.Helper()
	buf := make([]byte, Headroom+len(inner)+Tailroom)
	copy(buf[Headroom:], inner)
	pkt, err := sa.Seal(buf, Headroom, len(inner), NextHeaderIPv4)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return pkt
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := s.pair(t, 0x1000)
			for _, n := range []int{0, 1, 13, 14, 15, 16, 17, 64, 1372} {
				inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 7, uint16(n), n)
				pkt := seal(t, out, inner)
				if want := len(inner) + out.Overhead(len(inner)); len(pkt) != want {
					t.Fatalf("len %d: sealed length %d, Overhead says %d", n, len(pkt), want)
				}
				if ct := len(pkt) - out.HeaderLen() - out.t.icvLen; ct%out.t.blockLen != 0 {
					t.Fatalf("len %d: ciphertext %d not aligned to %d", n, ct, out.t.blockLen)
				}
				if bytes.Contains(pkt, inner[20:]) && n >= 16 {
					t.Fatalf("len %d: plaintext visible in sealed packet", n)
				}
				got, err := in.Open(pkt)
				if err != nil {
					t.Fatalf("len %d: Open: %v", n, err)
				}
				if !bytes.Equal(got, inner) {
					t.Fatalf("len %d: Open returned %x, want %x", n, got, inner)
				}
			}
			if c := in.Counters(); c.Packets != 9 || c.ReplayDrops != 0 || c.AuthFailures != 0 {
				t.Fatalf("inbound counters %+v, want 9 packets and no drops", c)
			}
		})
	}
}

// TestReject checks that Open refuses modified packets and counts them.
func TestReject(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := s.pair(t, 0x2000)
			inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 1, 1, 40)
			good := seal(t, out, inner)
			hdr := out.HeaderLen()
			tests := []struct {
				name   string
				mutate func(p []byte) []byte
				want   error
			}{
				{"flipped ICV", func(p []byte) []byte { p[len(p)-1] ^= 1; return p }, ErrAuth},
				{"flipped ciphertext", func(p []byte) []byte { p[hdr+3] ^= 0x80; return p }, ErrAuth},
				{"flipped IV", func(p []byte) []byte { p[HeaderLen] ^= 1; return p }, ErrAuth},
				{"flipped sequence number", func(p []byte) []byte { p[7] ^= 2; return p }, ErrAuth},
				{"other SPI", func(p []byte) []byte { p[0] ^= 1; return p }, ErrWrongSPI},
				{"truncated to header", func(p []byte) []byte { return p[:HeaderLen] }, ErrTruncated},
				{"truncated by one", func(p []byte) []byte { return p[:len(p)-1] }, ErrTruncated},
				{"empty", func(p []byte) []byte { return p[:0] }, ErrTruncated},
			}
			for _, tt := range tests {
				p := tt.mutate(bytes.Clone(good))
				if _, err := in.Open(p); !errors.Is(err, tt.want) {
					t.Errorf("%s: Open error %v, want %v", tt.name, err, tt.want)
				}
			}
			if c := in.Counters(); c.AuthFailures != 4 {
				t.Errorf("auth failures %d, want 4", c.AuthFailures)
			}
			if _, err := in.Open(bytes.Clone(good)); err != nil {
				t.Fatalf("the untouched packet must still open after forgeries: %v", err)
			}
			if _, err := in.Open(bytes.Clone(good)); !errors.Is(err, ErrReplay) {
				t.Fatalf("replayed packet: error %v, want ErrReplay", err)
			}
			if c := in.Counters(); c.ReplayDrops != 1 || c.Packets != 1 {
				t.Errorf("counters %+v, want 1 packet, 1 replay drop", c)
			}
		})
	}
}

// TestRejectTrailer protects hand-made plaintexts whose trailer is wrong: the ICV is valid,
// so only the checks after decryption can catch them.
func TestRejectTrailer(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := s.pair(t, 0x3000)
			bl := out.t.blockLen
			tests := []struct {
				name    string
				trailer []byte // the end of the plaintext: padding, pad length, next header
				want    error
			}{
				{"good padding", []byte{1, 2, 3, 3, NextHeaderIPv4}, nil},
				{"IPv6 accepted", []byte{0, NextHeaderIPv6}, nil},
				{"next header TCP", []byte{0, 6}, ErrNextHeader},
				{"dummy packet", []byte{1, 2, 2, NextHeaderDummy}, ErrNextHeader},
				{"pad bytes 1,3,2", []byte{1, 3, 2, 3, NextHeaderIPv4}, ErrPadding},
				{"pad bytes zero", []byte{0, 0, 2, NextHeaderIPv4}, ErrPadding},
				{"pad length beyond plaintext", []byte{255, NextHeaderIPv4}, ErrPadding},
			}
			for _, tt := range tests {
				ctLen := 4 * bl
				pkt := make(Packet, out.HeaderLen()+ctLen+out.t.icvLen)
				pt := pkt[out.HeaderLen() : out.HeaderLen()+ctLen]
				copy(pt[ctLen-len(tt.trailer):], tt.trailer)
				if err := out.stamp(pkt); err != nil {
					t.Fatal(err)
				}
				out.encrypt([]Sealing{{Pkt: pkt}})
				_, err := in.Open(pkt)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Errorf("%s: Open error %v, want %v", tt.name, err, tt.want)
				}
			}
			if c := in.Counters(); c.AuthFailures != 0 {
				t.Errorf("trailer errors counted as %d auth failures, want 0", c.AuthFailures)
			}
		})
	}
}

func TestSeqOverflow(t *testing.T) {
	out, _ := suites[7].pair(t, 9)
	out.seq.Store(1<<32 - 2)
	buf := make([]byte, Headroom+20+Tailroom)
	if _, err := out.Seal(buf, Headroom, 20, NextHeaderIPv4); err != nil {
		t.Fatalf("sequence number 2^32-1 must still be sent: %v", err)
	}
	if _, err := out.Seal(buf, Headroom, 20, NextHeaderIPv4); !errors.Is(err, ErrSeqOverflow) {
		t.Fatalf("after 2^32-1: error %v, want ErrSeqOverflow", err)
	}
	if e := out.Expiry(time.Now()); e != Hard {
		t.Fatalf("exhausted SA expiry %d, want Hard", e)
	}
}

func TestLifetime(t *testing.T) {
	c := suites[7].config(5)
	c.Lifetime = datapath.Lifetime{SoftBytes: 100, HardBytes: 200, Soft: time.Minute, Hard: 2 * time.Minute}
	t0 := time.Now()
	out, err := NewSA(c, Outbound, t0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, Headroom+80+Tailroom)
	steps := []struct {
		seal error
		at   time.Duration
		want Expiry
	}{
		{nil, 0, Alive}, {nil, 0, Soft}, {ErrHardLifetime, 0, Soft}, {ErrHardLifetime, time.Minute, Soft}, {ErrHardLifetime, 2 * time.Minute, Hard},
	}
	for i, s := range steps {
		if _, err := out.Seal(buf, Headroom, 80, NextHeaderIPv4); !errors.Is(err, s.seal) && !(s.seal == nil && err == nil) {
			t.Fatalf("step %d: Seal error %v, want %v", i, err, s.seal)
		}
		if got := out.Expiry(t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: Expiry %d, want %d (bytes %d)", i, got, s.want, out.Counters().Bytes)
		}
	}
}

func TestNewSAErrors(t *testing.T) {
	good := suites[0].config(1)
	tests := []struct {
		name   string
		modify func(*datapath.SA)
		want   error
	}{
		{"3DES short key", func(c *datapath.SA) { c.EncKey = c.EncKey[:16] }, ErrKeyLength},
		{"HMAC short key", func(c *datapath.SA) { c.IntegKey = c.IntegKey[:10] }, ErrKeyLength},
		{"no integrity", func(c *datapath.SA) { c.Integ = datapath.IntegNone }, ErrBadTransform},
		{"null encryption", func(c *datapath.SA) { c.Enc = datapath.EncNone }, ErrBadTransform},
		{"GCM with HMAC", func(c *datapath.SA) { c.Enc, c.EncKey = datapath.EncAESGCM16, make([]byte, 20) }, ErrBadTransform},
		{"GCM without salt", func(c *datapath.SA) {
			c.Enc, c.EncKey, c.Integ = datapath.EncAESGCM16, make([]byte, 16), datapath.IntegNone
		}, ErrKeyLength},
		{"AES-CBC 20-byte key", func(c *datapath.SA) { c.Enc, c.EncKey = datapath.EncAESCBC, make([]byte, 20) }, ErrKeyLength},
	}
	for _, tt := range tests {
		c := good
		tt.modify(&c)
		_, err := NewSA(c, Outbound, time.Now())
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), []byte(fmt.Sprintf("%x", c.EncKey))) && len(c.EncKey) > 0 {
			t.Errorf("%s: error leaks key material", tt.name)
		}
	}
}

func TestSealBufferChecks(t *testing.T) {
	out, _ := suites[1].pair(t, 3)
	buf := make([]byte, 100)
	if _, err := out.Seal(buf, 10, 20, NextHeaderIPv4); !errors.Is(err, ErrBuffer) {
		t.Errorf("headroom 10 < 24: error %v, want ErrBuffer", err)
	}
	if _, err := out.Seal(buf, 24, 70, NextHeaderIPv4); !errors.Is(err, ErrBuffer) {
		t.Errorf("no tailroom: error %v, want ErrBuffer", err)
	}
}

func TestNoAllocs(t *testing.T) {
	for _, s := range suites {
		out, in := s.pair(t, 0x77)
		inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 1, 1, 1372)
		buf := make([]byte, Headroom+len(inner)+Tailroom)
		allocs := testing.AllocsPerRun(100, func() {
			copy(buf[Headroom:], inner)
			pkt, err := out.Seal(buf, Headroom, len(inner), NextHeaderIPv4)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := in.Open(pkt); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per Seal+Open, want 0", s.name, allocs)
		}
	}
}

// TestSealBatch seals batches of different lengths, one entry without room in the middle,
// and checks that the others open to their payloads in order: the CBC messages of a batch
// are encrypted together (bitsliced 3DES) and must not mix.
func TestSealBatch(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := s.pair(t, 0x2000)
			const n, bad = 70, 33
			batch := make([]Sealing, n)
			inners := make([][]byte, n)
			for i := range batch {
				inners[i] = icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 9, uint16(i), (i*37)%1400)
				buf := make([]byte, Headroom+len(inners[i])+Tailroom)
				if i == bad {
					buf = buf[:Headroom+len(inners[i])]
				}
				copy(buf[Headroom:], inners[i])
				batch[i] = Sealing{Buf: buf, Off: Headroom, N: len(inners[i]), NextHeader: NextHeaderIPv4}
			}
			out.SealBatch(batch)
			for i, e := range batch {
				if i == bad {
					if !errors.Is(e.Err, ErrBuffer) || e.Pkt != nil {
						t.Fatalf("entry %d without tailroom: packet %d bytes, error %v, want ErrBuffer", i, len(e.Pkt), e.Err)
					}
					continue
				}
				if e.Err != nil {
					t.Fatalf("entry %d: %v", i, e.Err)
				}
				got, err := in.Open(bytes.Clone(e.Pkt))
				if err != nil {
					t.Fatalf("entry %d: Open: %v", i, err)
				}
				if !bytes.Equal(got, inners[i]) {
					t.Fatalf("entry %d: opened payload differs from what was sealed", i)
				}
			}
			if c := out.Counters(); c.Packets != n-1 {
				t.Errorf("outbound counts %d packets, want %d", c.Packets, n-1)
			}
		})
	}
}

// TestOpenTo decrypts into a separate buffer: the payload arrives there, the received
// packet is left as it was, and a destination shorter than the ciphertext is refused
// before the replay window moves.
func TestOpenTo(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := s.pair(t, 0x3000)
			inner := icmpEcho([4]byte{10, 10, 1, 1}, [4]byte{10, 20, 0, 1}, 3, 1, 1000)
			pkt := seal(t, out, inner)
			kept := bytes.Clone(pkt)
			ctLen := len(pkt) - out.HeaderLen() - out.t.icvLen
			if _, err := in.OpenTo(make([]byte, ctLen-1), pkt); !errors.Is(err, ErrBuffer) {
				t.Fatalf("destination of %d bytes for %d bytes of ciphertext: error %v, want ErrBuffer", ctLen-1, ctLen, err)
			}
			dst := make([]byte, ctLen+100)
			got, err := in.OpenTo(dst, pkt)
			if err != nil {
				t.Fatalf("OpenTo: %v", err)
			}
			if !bytes.Equal(got, inner) || &got[0] != &dst[0] {
				t.Fatalf("OpenTo returned %d bytes (at dst start: %v), want the %d-byte inner packet at the start of dst", len(got), len(got) > 0 && &got[0] == &dst[0], len(inner))
			}
			if !bytes.Equal(pkt, kept) {
				t.Fatal("OpenTo modified the received packet")
			}
			if _, err := in.OpenTo(dst, pkt); !errors.Is(err, ErrReplay) {
				t.Fatalf("second OpenTo of the same packet: error %v, want ErrReplay", err)
			}
		})
	}
}
