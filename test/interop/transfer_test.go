package interop

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// transferSize is the bulk TCP transfer of the espgw pair test.
const transferSize = 50 << 20

// transferTimeout bounds the transfer; even 3DES in Go moves 50 MB in a few seconds.
const transferTimeout = 90 * time.Second

// tcpTransfer sends size pseudo-random bytes over TCP from fromAddr (in from) to toAddr:5001
// (in to), fails the test unless the receiver got all of them with the same SHA-256, and
// returns the number of bytes sent.
func tcpTransfer(t *testing.T, from *testutil.NetNS, fromAddr string, to *testutil.NetNS, toAddr string, size int64) int64 {
	t.Helper()
	var ln net.Listener
	if err := to.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(toAddr, "5001"))
		return err
	}); err != nil {
		t.Fatalf("listen in netns %s: %v", to.Name(), err)
	}
	defer ln.Close()

	type result struct {
		n   int64
		sum [sha256.Size]byte
		err error
	}
	received := make(chan result, 1)
	go func() {
		var r result
		c, err := ln.Accept()
		if err != nil {
			r.err = err
			received <- r
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(transferTimeout))
		h := sha256.New()
		r.n, r.err = io.Copy(h, c)
		copy(r.sum[:], h.Sum(nil))
		received <- r
	}()

	var c net.Conn
	if err := from.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fromAddr)}}
		c, err = d.Dial("tcp4", net.JoinHostPort(toAddr, "5001"))
		return err
	}); err != nil {
		t.Fatalf("TCP %s -> %s:5001 through the tunnel: %v", fromAddr, toAddr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(transferTimeout))
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("espgw interop %d", time.Now().UnixNano()))
	h := sha256.New()
	begin := time.Now()
	sent, err := io.CopyN(io.MultiWriter(c, h), rand.NewChaCha8(seed), size)
	if err != nil {
		t.Fatalf("TCP %s -> %s: sent %d of %d bytes: %v", fromAddr, toAddr, sent, size, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("TCP %s -> %s: close: %v", fromAddr, toAddr, err)
	}
	var r result
	select {
	case r = <-received:
	case <-time.After(transferTimeout):
		t.Fatalf("TCP %s -> %s: receiver did not finish within %v", fromAddr, toAddr, transferTimeout)
	}
	took := time.Since(begin)
	if r.err != nil {
		t.Fatalf("TCP %s -> %s: received %d of %d bytes: %v", fromAddr, toAddr, r.n, size, r.err)
	}
	if r.n != size || r.sum != [sha256.Size]byte(h.Sum(nil)) {
		t.Fatalf("TCP %s -> %s: received %d bytes with SHA-256 %x, sent %d with %x", fromAddr, toAddr, r.n, r.sum, size, h.Sum(nil))
	}
	t.Logf("TCP %s -> %s: %d MB in %v (%.0f Mbit/s), SHA-256 %x matches",
		fromAddr, toAddr, size>>20, took.Round(time.Millisecond), float64(size)*8/took.Seconds()/1e6, r.sum)
	return sent
}
