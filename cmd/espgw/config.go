package main

import (
	"fmt"

	"github.com/spf13/cobra"
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
			return nil
		},
	})
	return cmd
}
