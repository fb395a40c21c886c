package main

import (
	"github.com/spf13/cobra"

	"github.com/espgw/espgw/doctor"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the kernel, the configuration, ports, addresses, routes and (if running) the daemon's tunnels",
		Long: "One line per check: OK, WARN or FAIL, the latter two with the fix. Exits 1 if a check failed.\n" +
			"--json prints the report in the schema of docs/doctor.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := doctor.Run(cmd.Context(), doctor.Options{ConfigPath: g.configFile, Socket: g.socket})
			var err error
			if asJSON {
				err = writeJSON(cmd, rep)
			} else {
				err = rep.Render(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if rep.Failed() {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (docs/doctor.md)")
	return cmd
}
