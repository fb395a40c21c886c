package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
)

// attachments lists the eBPF programs on dev in ns, as the kernel reports them: the XDP
// program from the link's netlink attributes and the TCX programs from BPF_PROG_QUERY.
// A device that does not exist has none.
func attachments(t *testing.T, ns *testutil.NetNS, dev string) []string {
	t.Helper()
	l, err := ns.Handle().LinkByName(dev)
	if err != nil {
		return nil
	}
	var out []string
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		out = append(out, fmt.Sprintf("xdp %s prog %d", dev, x.ProgId))
	}
	err = ns.Do(func() error {
		for _, a := range []struct {
			name   string
			attach ebpf.AttachType
		}{{"egress", ebpf.AttachTCXEgress}, {"ingress", ebpf.AttachTCXIngress}} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: a.attach})
			if err != nil {
				return fmt.Errorf("query TCX %s programs of %s: %w", a.name, dev, err)
			}
			for _, p := range r.Programs {
				out = append(out, fmt.Sprintf("tcx %s %s prog %d", a.name, dev, p.ID))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scrape fetches http://addr/metrics from inside ns.
func scrape(t *testing.T, ns *testutil.NetNS, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, ns, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s in %s: %s, %v", addr, ns, resp.Status, err)
	}
	return string(body)
}

// sendUDP sends one datagram from src to dst inside ns.
func sendUDP(t *testing.T, ns *testutil.NetNS, src, dst string, payload []byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(src)),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
	if err != nil {
		t.Fatalf("send UDP %s -> %s in %s: %v", src, dst, ns, err)
	}
}

// tcpMaxSeg opens a TCP connection from src (in client) to dst (in server), exchanges a
// line so the handshake is complete on both sides, and returns the server socket's
// TCP_MAXSEG: the largest segment it will send, bounded by the MSS the client's SYN carried
// when it arrived.
func tcpMaxSeg(t *testing.T, client, server *testutil.NetNS, src, dst string) int {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() (err error) { ln, err = net.Listen("tcp4", dst); return err }); err != nil {
		t.Fatalf("listen on %s in %s: %v", dst, server, err)
	}
	defer ln.Close()
	type accepted struct {
		mss int
		err error
	}
	done := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- accepted{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			done <- accepted{err: err}
			return
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			done <- accepted{err: err}
			return
		}
		var mss int
		var serr error
		if err := raw.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil {
			serr = err
		}
		_, werr := io.WriteString(c, "ok\n")
		done <- accepted{mss: mss, err: errors.Join(serr, werr)}
	}()
	var c net.Conn
	err := client.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err = d.Dial("tcp4", dst)
		return err
	})
	if err != nil {
		t.Fatalf("connect %s -> %s: %v", src, dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatalf("read the server's answer: %v", err)
	}
	a := <-done
	if a.err != nil {
		t.Fatalf("server side of %s -> %s: %v", src, dst, a.err)
	}
	return a.mss
}
