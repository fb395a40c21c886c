package main

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath/serviceaddr"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration tools"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file (-c) and print every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			tunnels := 0
			for _, c := range cfg.Connections {
				tunnels += len(c.Tunnels)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration OK: %d connections, %d tunnels\n", len(cfg.Connections), tunnels)
			warnLoopbackRoutes(cmd.ErrOrStderr(), cfg)
			return nil
		},
	})
	return cmd
}

// warnLoopbackRoutes looks at this host's routing as it is now (with espgw running, its
// routes included) and warns about each remote subnet that a service address would reach
// through a loopback interface: such a tunnel negotiates but carries nothing.
func warnLoopbackRoutes(w io.Writer, cfg *config.Config) {
	for _, c := range cfg.Connections {
		if c.ServiceAddress == nil {
			continue
		}
		var remotes []netip.Prefix
		for _, t := range c.Tunnels {
			remotes = append(remotes, t.RemoteSubnets...)
		}
		warnings, err := serviceaddr.LoopbackRoutes(netns.None(), c.ServiceAddress.Address.Addr(), remotes)
		for _, msg := range warnings {
			fmt.Fprintf(w, "espgw: warning: connection %s: %s\n", c.Name, msg)
		}
		if err != nil {
			fmt.Fprintf(w, "espgw: warning: connection %s: cannot check the routes to its remote subnets: %v\n", c.Name, err)
		}
	}
}
