package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/espgw/espgw/model"
	"github.com/espgw/espgw/sheet"
)

func newSheetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sheet", Short: "The partner's IPsec parameter sheet (XLSX, CSV, Markdown)"}
	cmd.AddCommand(newSheetExportCmd(g), newSheetImportCmd())
	return cmd
}

func newSheetExportCmd(g *globals) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "export [-c FILE] CONNECTION [--format xlsx|csv|md] [-o FILE]",
		Short: "Write the parameter sheet of a connection, our side filled in (the key is never written)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "" {
				format = strings.TrimPrefix(filepath.Ext(out), ".")
				if format == "" || out == "-" {
					format = "md"
				}
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			names := make([]string, len(cfg.Connections))
			for i, c := range cfg.Connections {
				names[i] = c.Name
			}
			name, err := model.MatchName("connection", args[0], names)
			if err != nil {
				return fmt.Errorf("%s: %w", g.configFile, err)
			}
			var buf bytes.Buffer
			if err := sheet.Export(&buf, cfg.Connections[slices.Index(names, name)], format); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			return writeFileAtomic(out, buf.Bytes())
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "xlsx, csv or md (default: from -o's extension, else md)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

func newSheetImportCmd() *cobra.Command {
	var out, name string
	cmd := &cobra.Command{
		Use:   "import FILE [-o FILE]",
		Short: "Read a filled parameter sheet (xlsx or csv) and print the connection as YAML to review",
		Long: `Read a filled parameter sheet — this one's layout or a partner's, with English or Russian
labels — and print the connection as espgw YAML. Every cell that cannot be read is listed on
stderr with its address, and the exit status is then 1. The pre-shared key is never in a
sheet: add it (psk or psk_file) before running the configuration.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			var grid *sheet.Grid
			if isXLSX(f) {
				grid, err = sheet.ReadXLSX(f)
			} else {
				grid, err = sheet.ReadCSV(f, filepath.Base(args[0]))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			res := sheet.Import(grid, sheet.Options{Name: name})
			var yaml bytes.Buffer
			if err := res.WriteYAML(&yaml, filepath.Base(args[0])); err != nil {
				return err
			}
			if out == "" || out == "-" {
				cmd.OutOrStdout().Write(yaml.Bytes())
			} else if err := writeFileAtomic(out, yaml.Bytes()); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			for _, p := range res.Ignored {
				fmt.Fprintf(stderr, "espgw: left out %s\n", p)
			}
			if len(res.Problems) > 0 {
				fmt.Fprintf(stderr, "espgw: %s: %d cells could not be read:\n", args[0], len(res.Problems))
				for _, p := range res.Problems {
					fmt.Fprintf(stderr, "  %s\n", p)
				}
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the YAML to FILE instead of stdout")
	cmd.Flags().StringVar(&name, "name", "", "name of the connection (default: from the partner's column heading)")
	return cmd
}

// isXLSX reports whether f starts like a zip archive (an .xlsx workbook) and rewinds it.
func isXLSX(f io.ReadSeeker) bool {
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	f.Seek(0, io.SeekStart)
	return n == 4 && bytes.Equal(magic, []byte("PK\x03\x04"))
}
