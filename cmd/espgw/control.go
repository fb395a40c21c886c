package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/espgw/espgw/cmd/espgw/internal/render"
	"github.com/espgw/espgw/control"
)

// Client command timeouts: `up` waits for a negotiation, which the daemon bounds at 60 s.
const (
	queryTimeout = 10 * time.Second
	upTimeout    = 65 * time.Second
)

// withClient dials the daemon's control socket and runs f within timeout.
func (g *globals) withClient(cmd *cobra.Command, timeout time.Duration, f func(context.Context, *control.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	return f(ctx, c)
}

// dial connects to the daemon's control socket within queryTimeout; the client outlives that
// (ping and status --watch run as long as they are told to).
func (g *globals) dial(ctx context.Context) (*control.Client, error) {
	path, err := g.socketPath()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return control.Dial(dctx, path)
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON, all, watch bool
	var interval float64
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show IKE SAs, IPsec SAs, tunnel states and the eBPF programs' counters (of connection NAME)",
		Long: fmt.Sprintf("Show IKE SAs, IPsec SAs, tunnel states and the eBPF programs' counters. With more than %d tunnels\n"+
			"and no NAME, one line per connection (--all: every table).", render.SummaryTunnels),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch {
				if len(args) > 0 {
					return fmt.Errorf("--watch shows every tunnel: drop %q", args[0])
				}
				return g.watch(cmd, time.Duration(interval*float64(time.Second)))
			}
			return g.withClient(cmd, queryTimeout, func(ctx context.Context, c *control.Client) error {
				switch {
				case len(args) == 1:
					return printConnection(ctx, cmd, c, args[0], asJSON)
				case asJSON:
					raw, err := c.StatusJSON(ctx)
					if err != nil {
						return err
					}
					return writeRawJSON(cmd, raw)
				}
				above := render.SummaryTunnels
				if all {
					above = 0 // the whole status
				}
				st, sum, err := c.Overview(ctx, above)
				switch {
				case err != nil:
					return err
				case sum != nil:
					return render.Summary(cmd.OutOrStdout(), sum)
				}
				return render.Status(cmd.OutOrStdout(), st, time.Now())
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	cmd.Flags().BoolVar(&all, "all", false, "print every table even with many tunnels")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted, with rates per tunnel (in place on a terminal, one line per tunnel when piped)")
	cmd.Flags().Float64VarP(&interval, "interval", "n", 2, "seconds between refreshes of --watch")
	return cmd
}

// printConnection prints the status of connection name, which the daemon selects.
func printConnection(ctx context.Context, cmd *cobra.Command, c *control.Client, name string, asJSON bool) error {
	st, err := c.StatusOf(ctx, name)
	if err != nil {
		return fmt.Errorf("status: the daemon has %w", err)
	}
	if asJSON {
		return writeJSON(cmd, st)
	}
	return render.Status(cmd.OutOrStdout(), st, time.Now())
}

func newFlowsCmd(g *globals) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the top flows through the tunnels and the installed security policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("-n %d: want a number of flows, 0 for ebpf.top_flows", limit)
			}
			return g.withClient(cmd, queryTimeout, func(ctx context.Context, c *control.Client) error {
				report, err := c.Flows(ctx, limit)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd, report)
				}
				return render.Flows(cmd.OutOrStdout(), report)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	cmd.Flags().IntVarP(&limit, "top", "n", 0, "number of top flows (default: ebpf.top_flows)")
	return cmd
}

func writeJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeRawJSON prints JSON as the daemon encoded it, the way writeJSON prints it decoded.
func writeRawJSON(cmd *cobra.Command, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("the daemon's answer: %w", err)
	}
	b.WriteByte('\n')
	_, err := cmd.OutOrStdout().Write(b.Bytes())
	return err
}

// newUpDownCmd makes `up` or `down`.
func newUpDownCmd(g *globals, verb string) *cobra.Command {
	short := map[string]string{
		"up":   "Negotiate a connection's tunnels (or one tunnel) and wait for the outcome",
		"down": "Delete a connection's SAs (or one tunnel's), notifying the peer",
	}[verb]
	return &cobra.Command{
		Use:   verb + " NAME[/TUNNEL]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, tunnel, _ := strings.Cut(args[0], "/")
			if conn == "" || strings.HasSuffix(args[0], "/") {
				return fmt.Errorf("%q: want NAME or NAME/TUNNEL", args[0])
			}
			timeout := queryTimeout
			if verb == "up" {
				timeout = upTimeout
			}
			return g.withClient(cmd, timeout, func(ctx context.Context, c *control.Client) error {
				var err error
				if verb == "up" {
					err = c.Up(ctx, conn, tunnel)
				} else {
					err = c.Down(ctx, conn, tunnel)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", verb, args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], verb)
				return nil
			})
		},
	}
}

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon re-read its configuration file (as SIGHUP does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, queryTimeout, func(ctx context.Context, c *control.Client) error {
				if err := c.Reload(ctx); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "configuration reloaded")
				return nil
			})
		},
	}
}
