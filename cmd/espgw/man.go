package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes the man pages, one per command, from the commands themselves, so they
// cannot drift from --help. `make package` ships them; hidden because operators read them
// with man(1), not generate them.
func newManCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages (section 8) into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			g.root.DisableAutoGenTag = true // no date line: the same tree gives the same pages
			hdr := &doc.GenManHeader{Title: "ESPGW", Section: "8", Source: "espgw " + versionString(), Manual: "espgw manual"}
			if err := doc.GenManTree(g.root, hdr, args[0]); err != nil {
				return fmt.Errorf("write man pages to %s: %w", args[0], err)
			}
			return nil
		},
	}
}
