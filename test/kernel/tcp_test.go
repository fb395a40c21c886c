//go:build vmtest

package kernel

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// transferResult is what the receiving side of a TCP transfer saw.
type transferResult struct {
	sum    [sha256.Size]byte
	n      int64
	maxSeg int // TCP_MAXSEG of the accepted connection
	err    error
}

// tcpTransfer sends size random bytes over TCP from src (in srcNS) to dst:port (in dstNS) and
// fails unless the receiver's SHA-256 matches the sender's. It returns the receiver's
// TCP_MAXSEG. Both ends bind their inner address so the flow matches the tunnel's selectors.
func tcpTransfer(tb testing.TB, srcNS *testutil.NetNS, src netip.Addr, dstNS *testutil.NetNS, dst netip.Addr, size int) int {
	tb.Helper()
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		tb.Fatal(err)
	}
	want := sha256.Sum256(payload)

	var ln net.Listener
	if err := dstNS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		tb.Fatalf("netns %s: listen on %s: %v", dstNS.Name(), dst, err)
	}
	defer ln.Close()
	done := make(chan transferResult, 1)
	go func() {
		var r transferResult
		defer func() { done <- r }()
		c, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if r.maxSeg, r.err = testutil.TCPMaxSeg(c); r.err != nil {
			return
		}
		h := sha256.New()
		r.n, r.err = io.Copy(h, c)
		copy(r.sum[:], h.Sum(nil))
	}()

	var c net.Conn
	if err := srcNS.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 10 * time.Second}
		c, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		tb.Fatalf("netns %s: connect %s -> %s: %v", srcNS.Name(), src, ln.Addr(), err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(payload); err != nil {
		c.Close()
		tb.Fatalf("send %d bytes %s -> %s: %v", size, src, dst, err)
	}
	c.Close()
	r := <-done
	if r.err != nil {
		tb.Fatalf("receive at %s: %v", dst, r.err)
	}
	if r.n != int64(size) || r.sum != want {
		tb.Fatalf("TCP %s -> %s: received %d bytes with sha256 %x, sent %d with %x", src, dst, r.n, r.sum, size, want)
	}
	return r.maxSeg
}
