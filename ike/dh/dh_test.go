package dh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

var allIDs = []uint16{2, 5, 14, 15, 16, 19, 20}

func mustGroup(tb testing.TB, id uint16) Group {
	tb.Helper()
	g, err := ByID(id)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func TestAgreement(t *testing.T) {
	wantLen := map[uint16]int{2: 128, 5: 192, 14: 256, 15: 384, 16: 512, 19: 64, 20: 96}
	for _, id := range allIDs {
		t.Run(fmt.Sprint(id), func(t *testing.T) {
			g := mustGroup(t, id)
			if g.ID() != id {
				t.Fatalf("ID() = %d, want %d", g.ID(), id)
			}
			if g.PublicLen() != wantLen[id] {
				t.Fatalf("PublicLen() = %d, want %d", g.PublicLen(), wantLen[id])
			}
			a, err := g.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			b, err := g.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Public()) != g.PublicLen() || len(b.Public()) != g.PublicLen() {
				t.Fatalf("public lengths %d, %d, want %d", len(a.Public()), len(b.Public()), g.PublicLen())
			}
			if bytes.Equal(a.Public(), b.Public()) {
				t.Fatal("two keys have the same public value")
			}
			za, err := a.SharedSecret(b.Public())
			if err != nil {
				t.Fatal(err)
			}
			zb, err := b.SharedSecret(a.Public())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(za, zb) {
				t.Fatalf("shared secrets differ:\n%x\n%x", za, zb)
			}
			wantZ := g.PublicLen()
			if id >= 19 {
				wantZ /= 2 // x coordinate only
			}
			if len(za) != wantZ {
				t.Fatalf("shared secret is %d bytes, want %d", len(za), wantZ)
			}
		})
	}
}

func TestByIDUnsupported(t *testing.T) {
	for _, id := range []uint16{0, 1, 3, 17, 21, 31} {
		_, err := ByID(id)
		if !errors.Is(err, ErrUnsupportedGroup) {
			t.Fatalf("ByID(%d) error = %v, want ErrUnsupportedGroup", id, err)
		}
		want := fmt.Sprintf("group %d: unsupported Diffie-Hellman group, want one of 2, 5, 14, 15, 16, 19, 20", id)
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("ByID(%d) error = %q, want it to contain %q", id, err, want)
		}
	}
}

func TestGenerateKeyRandFailure(t *testing.T) {
	for _, id := range allIDs {
		g := mustGroup(t, id)
		boom := errors.New("entropy gone")
		if _, err := g.GenerateKey(iotest.ErrReader(boom)); !errors.Is(err, boom) {
			t.Errorf("group %d: GenerateKey(failing reader) error = %v, want %v", id, err, boom)
		}
		// An all-zero source gives exponent 0 / scalar 0, which must be refused.
		if _, err := g.GenerateKey(bytes.NewReader(make([]byte, 4096))); err == nil {
			t.Errorf("group %d: GenerateKey(zero reader) succeeded", id)
		}
	}
}

func TestPrivateKeyRedacted(t *testing.T) {
	for _, id := range allIDs {
		k, err := mustGroup(t, id).GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", k)
		if s := fmt.Sprintf("%v %#v %s", k, k, buf.String()); strings.Count(s, "[redacted]") != 3 {
			t.Errorf("group %d: key printed as %q", id, s)
		}
	}
}

// BenchmarkExchange is one side's DH of an exchange, our key pair and the shared secret:
// what the responder DH budget (ike/dhlimit.go) charges, as cpu-µs/op.
func BenchmarkExchange(b *testing.B) {
	benchGroups(b, func(b *testing.B, g Group, peer []byte) {
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.SharedSecret(peer); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkGenerateKey is one key pair (for MODP the exponentiation 2^x mod p).
func BenchmarkGenerateKey(b *testing.B) {
	benchGroups(b, func(b *testing.B, g Group, _ []byte) {
		if _, err := g.GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkSharedSecret is one shared secret with the same key (for MODP y^x mod p).
func BenchmarkSharedSecret(b *testing.B) {
	benchGroups(b, func(b *testing.B, g Group, peer []byte) {
		if _, err := benchKeys[g.ID()].SharedSecret(peer); err != nil {
			b.Fatal(err)
		}
	})
}

// benchKeys are a key per group for BenchmarkSharedSecret, made by benchGroups.
var benchKeys = map[uint16]PrivateKey{}

// benchGroups runs op once per iteration for every group with a peer's public value, and
// reports the process's CPU time per op next to the wall time: on a shared machine wall
// time is mostly waiting for a core.
func benchGroups(b *testing.B, op func(b *testing.B, g Group, peer []byte)) {
	for _, id := range allIDs {
		g := mustGroup(b, id)
		peer, err := g.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if benchKeys[id], err = g.GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
		pub := peer.Public()
		b.Run(fmt.Sprint(id), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				op(b, g, pub)
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// FuzzSharedSecret feeds arbitrary peer public values to every group: each must either be
// rejected with ErrInvalidPublic or yield a secret of the group's secret length.
func FuzzSharedSecret(f *testing.F) {
	keys := make([]PrivateKey, len(allIDs))
	for i, id := range allIDs {
		k, err := mustGroup(f, id).GenerateKey(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		keys[i] = k
		f.Add(uint8(i), k.Public())
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(5), make([]byte, 64))
	f.Fuzz(func(t *testing.T, which uint8, peer []byte) {
		i := int(which) % len(keys)
		g := mustGroup(t, allIDs[i])
		z, err := keys[i].SharedSecret(peer)
		if err != nil {
			if !errors.Is(err, ErrInvalidPublic) {
				t.Fatalf("group %d: error %v does not wrap ErrInvalidPublic", g.ID(), err)
			}
			return
		}
		want := g.PublicLen()
		if g.ID() >= 19 {
			want /= 2
		}
		if len(peer) != g.PublicLen() || len(z) != want {
			t.Fatalf("group %d: accepted %d-byte value, secret %d bytes", g.ID(), len(peer), len(z))
		}
	})
}

// Destroy zeroes a MODP exponent in place and leaves no group's key usable.
func TestDestroy(t *testing.T) {
	for _, g := range groups {
		a, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var words []big.Word
		if m, ok := a.(*modpKey); ok {
			words = m.x.Bits()
		}
		a.Destroy()
		if _, err := a.SharedSecret(b.Public()); err == nil {
			t.Errorf("group %d: SharedSecret works after Destroy", g.ID())
		}
		for i, w := range words {
			if w != 0 {
				t.Errorf("group %d: exponent word %d is %x after Destroy, want 0", g.ID(), i, w)
				break
			}
		}
	}
}

// processCPU is the user and system time the test process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
