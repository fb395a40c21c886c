package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/espgw/espgw/control"
)

// pingReplyTimeout is how long ping waits for each echo reply.
const pingReplyTimeout = time.Second

// pingPayload makes 64-byte echo requests, as ping(8) sends by default.
var pingPayload = []byte("espgw ping through the tunnel, 56 bytes of payload......")

func newPingCmd(g *globals) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "ping [CONNECTION/]TUNNEL [HOST] [-c N]",
		Short: "Ping HOST through a tunnel from its local address and show the tunnel's ESP counters before and after",
		Long: "Sends ICMP echo requests from the tunnel's local address (the service address) to HOST, by default\n" +
			"the first host of the remote subnet, after bringing the tunnel up if it starts on demand (the seed's\n" +
			"`ping -I <service address> <partner host>`). The ESP counters tell a dead partner host (ESP left and\n" +
			"came back) from a dead tunnel (no ESP came back, or none left). Exits 1 without a reply.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 {
				return fmt.Errorf("-c %d: want at least 1 echo request", count)
			}
			host := ""
			if len(args) == 2 {
				host = args[1]
			}
			ctx := cmd.Context()
			if cmd.Flags().Changed("config") { // ping's own --config (see below)
				g.root.PersistentFlags().Set("config", g.configFile)
			}
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			ok, err := pingTunnel(ctx, cmd.OutOrStdout(), c, args[0], host, count)
			if err != nil {
				return err
			}
			if !ok {
				return exitError{1}
			}
			return nil
		},
	}
	// -c is the count, as in ping(8); defining --config here keeps cobra from adding the
	// global one, whose -c would clash.
	cmd.Flags().IntVarP(&count, "count", "c", 3, "number of echo requests")
	cmd.Flags().StringVar(&g.configFile, "config", DefaultConfigFile, "configuration file (for its control_socket; -c is the count here)")
	return cmd
}

// pingTarget is the tunnel to ping through, from the daemon's status.
type pingTarget struct {
	state    control.TunnelState
	src, dst netip.Addr
}

// findTunnel resolves CONNECTION/TUNNEL, or a TUNNEL name that only one connection has.
func findTunnel(st *control.Status, arg string) (control.TunnelState, error) {
	conn, tun, qualified := strings.Cut(arg, "/")
	if !qualified {
		conn, tun = "", arg
	}
	var found []control.TunnelState
	var names []string
	for _, t := range st.Tunnels {
		names = append(names, t.Connection+"/"+t.Tunnel)
		if t.Tunnel == tun && (conn == "" || t.Connection == conn) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return control.TunnelState{}, fmt.Errorf("no tunnel %q (configured: %s)", arg, strings.Join(names, ", "))
	}
	return control.TunnelState{}, fmt.Errorf("tunnel %q is in several connections: name it CONNECTION/TUNNEL (configured: %s)", arg, strings.Join(names, ", "))
}

// selectorPrefixes parses a status selector list, "10.10.1.1/32,10.10.2.0/24" or
// "10.10.1.0/24[6/443]".
func selectorPrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, sel := range strings.Split(s, ",") {
		sel, _, _ = strings.Cut(sel, "[")
		p, err := netip.ParsePrefix(sel)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// within reports whether a lies in one of ps.
func within(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

// resolvePing picks the source (the host's address inside a local subnet) and destination
// (host, or the first host of the first remote subnet).
func resolvePing(t control.TunnelState, host string) (pingTarget, error) {
	local, err := selectorPrefixes(t.LocalSelector)
	if err != nil {
		return pingTarget{}, fmt.Errorf("tunnel %s/%s local subnet %q: %w", t.Connection, t.Tunnel, t.LocalSelector, err)
	}
	remote, err := selectorPrefixes(t.RemoteSelector)
	if err != nil {
		return pingTarget{}, fmt.Errorf("tunnel %s/%s remote subnet %q: %w", t.Connection, t.Tunnel, t.RemoteSelector, err)
	}
	p := pingTarget{state: t}
	if host != "" {
		if p.dst, err = netip.ParseAddr(host); err != nil || !p.dst.Is4() {
			return pingTarget{}, fmt.Errorf("host %q: want an IPv4 address", host)
		}
		if !within(remote, p.dst) {
			return pingTarget{}, fmt.Errorf("host %s is outside the tunnel's remote subnet %s: it would not go through the tunnel", p.dst, t.RemoteSelector)
		}
	} else {
		p.dst = remote[0].Addr()
		if remote[0].Bits() < 31 {
			p.dst = p.dst.Next()
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return pingTarget{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && within(local, ip.Unmap()) {
			p.src = ip.Unmap()
			return p, nil
		}
	}
	return pingTarget{}, fmt.Errorf("no address of this host is inside the tunnel's local subnet %s (the service address is missing? run espgw doctor)", t.LocalSelector)
}

// espCounters are the packets each SA of a tunnel carried, by inbound SPI.
type espCounters map[string]control.IPsecSA

func tunnelCounters(st *control.Status, conn, tunnel string) espCounters {
	out := espCounters{}
	for _, sa := range st.IPsecSAs {
		if sa.Connection == conn && sa.Tunnel == tunnel {
			out[sa.SPIIn] = sa
		}
	}
	return out
}

// delta is what the tunnel's SAs carried between before and after.
func delta(before, after espCounters) (in, out uint64) {
	for spi, a := range after {
		b := before[spi]
		in += a.PacketsIn - b.PacketsIn
		out += a.PacketsOut - b.PacketsOut
	}
	return in, out
}

// peerInstallGrace is how long ping waits after bringing a tunnel up before the first echo.
const peerInstallGrace = 500 * time.Millisecond

// pingTunnel pings through the tunnel and explains the outcome; ok means a reply came.
func pingTunnel(ctx context.Context, w io.Writer, c *control.Client, arg, host string, count int) (bool, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return false, err
	}
	t, err := findTunnel(st, arg)
	if err != nil {
		return false, err
	}
	name := t.Connection + "/" + t.Tunnel
	if t.State != control.TunnelUp {
		if t.Start == "manual" {
			fmt.Fprintf(w, "tunnel %s is %s and starts manually: not bringing it up (espgw up %s)\n", name, t.State, name)
		} else {
			fmt.Fprintf(w, "tunnel %s is %s: bringing it up (start: %s)\n", name, t.State, t.Start)
			uctx, cancel := context.WithTimeout(ctx, upTimeout)
			err := c.Up(uctx, t.Connection, t.Tunnel)
			cancel()
			if err != nil {
				fmt.Fprintf(w, "up %s failed: %v\n", name, err)
			} else {
				// The responder installs its inbound SA only once our last quick-mode message
				// arrives: an echo sent at once can reach it first and be dropped.
				select {
				case <-ctx.Done():
					return false, ctx.Err()
				case <-time.After(peerInstallGrace):
				}
			}
		}
		if st, err = c.Status(ctx); err != nil {
			return false, err
		}
		if t, err = findTunnel(st, name); err != nil {
			return false, err
		}
	}
	p, err := resolvePing(t, host)
	if err != nil {
		return false, err
	}
	before := tunnelCounters(st, t.Connection, t.Tunnel)
	fmt.Fprintf(w, "PING %s from %s through %s (%s, %s <-> %s): %d echo requests\n",
		p.dst, p.src, name, t.State, t.LocalSelector, t.RemoteSelector, count)
	replies, err := echoes(ctx, w, p.src, p.dst, count)
	if err != nil {
		return false, err
	}
	st, err = c.Status(ctx)
	if err != nil {
		return false, err
	}
	after := tunnelCounters(st, t.Connection, t.Tunnel)
	in, out := delta(before, after)
	fmt.Fprintf(w, "--- %s: %d of %d replies; tunnel ESP packets out +%d, in +%d\n", p.dst, replies, count, out, in)
	switch {
	case replies > 0:
		fmt.Fprintf(w, "the tunnel works\n")
	case out > 0 && in > 0:
		fmt.Fprintf(w, "no reply, but ESP left and came back: the tunnel carries traffic both ways; %s does not answer ICMP or its replies do not come through (the partner's side filters them)\n", p.dst)
	case out > 0:
		fmt.Fprintf(w, "no reply, and no ESP came back although ESP left: the partner (or the path) does not send anything into the tunnel; run espgw doctor\n")
	case len(after) == 0:
		fmt.Fprintf(w, "no ESP left: the tunnel has no SA (state %s%s); run espgw doctor\n", t.State, lastError(t))
	default:
		fmt.Fprintf(w, "no ESP left: the echo requests did not enter the tunnel (check `ip route get %s from %s`); run espgw doctor\n", p.dst, p.src)
	}
	return replies > 0, nil
}

func lastError(t control.TunnelState) string {
	if t.LastError == "" {
		return ""
	}
	return ", last error: " + t.LastError
}

// echoes sends count ICMP echo requests from src to dst, one a second, printing each reply
// or its absence, and returns the number of replies.
func echoes(ctx context.Context, w io.Writer, src, dst netip.Addr, count int) (int, error) {
	conn, err := icmp.ListenPacket("ip4:icmp", src.String())
	if err != nil {
		return 0, fmt.Errorf("open ICMP socket on %s: %w (run as root)", src, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	replies := 0
	buf := make([]byte, 1500)
	for seq := 1; seq <= count && ctx.Err() == nil; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: pingPayload}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return replies, err
		}
		start := time.Now()
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			fmt.Fprintf(w, "icmp_seq=%d: send: %v\n", seq, err)
			time.Sleep(pingReplyTimeout)
			continue
		}
		deadline := start.Add(pingReplyTimeout)
		conn.SetReadDeadline(deadline)
		got := false
		for !got {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					return replies, fmt.Errorf("read ICMP: %w", err)
				}
				break
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
				got = true
				replies++
				fmt.Fprintf(w, "%d bytes from %s: icmp_seq=%d time=%.1f ms\n", n, from, seq, float64(time.Since(start).Microseconds())/1000)
			}
		}
		if !got {
			fmt.Fprintf(w, "icmp_seq=%d: no reply within %s\n", seq, pingReplyTimeout)
		} else if seq < count {
			time.Sleep(time.Until(deadline))
		}
	}
	return replies, ctx.Err()
}
