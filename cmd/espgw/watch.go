package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/cmd/espgw/internal/render"
	"github.com/espgw/espgw/control"
)

// clearScreen moves a terminal's cursor home and clears it, to redraw from the top.
const clearScreen = "\x1b[H\x1b[2J"

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// tunnelRate is a tunnel's traffic per second between two status snapshots.
type tunnelRate struct {
	name                               string
	state                              string
	bytesIn, bytesOut, pktsIn, pktsOut float64
}

// rates computes per-tunnel rates from the counter growth of each SA (by inbound SPI)
// between prev and cur, elapsed apart. SAs new in cur count from zero.
func rates(prev, cur *control.Status, elapsed time.Duration) []tunnelRate {
	old := make(map[string]control.IPsecSA)
	if prev != nil {
		for _, sa := range prev.IPsecSAs {
			old[sa.SPIIn] = sa
		}
	}
	secs := elapsed.Seconds()
	var out []tunnelRate
	for _, t := range cur.Tunnels {
		r := tunnelRate{name: t.Connection + "/" + t.Tunnel, state: t.State}
		for _, sa := range cur.IPsecSAs {
			if sa.Connection != t.Connection || sa.Tunnel != t.Tunnel || secs <= 0 || prev == nil {
				continue
			}
			o := old[sa.SPIIn]
			r.bytesIn += float64(sa.BytesIn-min(o.BytesIn, sa.BytesIn)) / secs
			r.bytesOut += float64(sa.BytesOut-min(o.BytesOut, sa.BytesOut)) / secs
			r.pktsIn += float64(sa.PacketsIn-min(o.PacketsIn, sa.PacketsIn)) / secs
			r.pktsOut += float64(sa.PacketsOut-min(o.PacketsOut, sa.PacketsOut)) / secs
		}
		out = append(out, r)
	}
	return out
}

// watchStatus shows the status every interval until ctx ends: redrawn in place with the
// full tables and a rates table on a terminal, one line per tunnel and interval otherwise.
func watchStatus(ctx context.Context, w io.Writer, c *control.Client, interval time.Duration) error {
	tty := isTerminal(w)
	var prev *control.Status
	var prevAt time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		st, err := c.Status(qctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		rs := rates(prev, st, now.Sub(prevAt))
		if tty {
			var b strings.Builder
			b.WriteString(clearScreen)
			fmt.Fprintf(&b, "espgw status, every %s (Ctrl-C ends)    %s\n\n", interval, now.Format(time.TimeOnly))
			if err := render.Status(&b, st, now); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "\nRates:\nTUNNEL\tSTATE\tIN B/s\tOUT B/s\tIN pkt/s\tOUT pkt/s\n")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.1f\t%.1f\n", r.name, r.state, r.bytesIn, r.bytesOut, r.pktsIn, r.pktsOut)
			}
			tw.Flush()
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
		} else {
			for _, r := range rs {
				if _, err := fmt.Fprintf(w, "%s %s %s in %.0f B/s %.1f pkt/s out %.0f B/s %.1f pkt/s\n",
					now.UTC().Format(time.RFC3339), r.name, r.state, r.bytesIn, r.pktsIn, r.bytesOut, r.pktsOut); err != nil {
					return err
				}
			}
		}
		prev, prevAt = st, now
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watch runs watchStatus until SIGINT/SIGTERM.
func (g *globals) watch(cmd *cobra.Command, interval time.Duration) error {
	if interval < 100*time.Millisecond {
		return fmt.Errorf("-n %g: want at least 0.1 seconds", interval.Seconds())
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	return watchStatus(ctx, cmd.OutOrStdout(), c, interval)
}
