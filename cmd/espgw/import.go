package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/importer/racoon"
)

func newImportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Convert another IPsec daemon's configuration to espgw YAML"}
	var f racoon.Files
	var out string
	rc := &cobra.Command{
		Use:   "racoon --racoon-conf FILE [--psk FILE] [--setkey FILE] [-o FILE]",
		Short: "Convert racoon.conf, its psk.txt and setkey's ipsec-tools.conf",
		Long: `Convert a racoon (ipsec-tools) setup to espgw YAML. Every directive that has no espgw
equivalent, and every one that maps to a setting with a different meaning, is listed on
stderr with its file and line (and as comments at the top of the YAML). The result must pass
` + "`espgw config check`" + `, else nothing is written to -o and the exit status is 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := racoon.Import(f)
			if err != nil {
				return err
			}
			var yaml bytes.Buffer
			if err := res.WriteYAML(&yaml, f.RacoonConf); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			if len(res.Notes) > 0 {
				fmt.Fprintf(stderr, "espgw: %d directives not mapped or mapped differently:\n", len(res.Notes))
				for _, n := range res.Notes {
					fmt.Fprintf(stderr, "  %s\n", n)
				}
			}
			_, checkErr := config.Parse(bytes.NewReader(yaml.Bytes()))
			if out == "" || out == "-" {
				cmd.OutOrStdout().Write(yaml.Bytes())
			}
			if checkErr != nil {
				fmt.Fprintf(stderr, "espgw: the imported configuration does not pass config check:\n")
				for _, l := range strings.Split(checkErr.Error(), "\n") {
					fmt.Fprintf(stderr, "  %s\n", l)
				}
				return exitError{1}
			}
			if out != "" && out != "-" {
				return writeFileAtomic(out, yaml.Bytes())
			}
			return nil
		},
	}
	fl := rc.Flags()
	fl.StringVar(&f.RacoonConf, "racoon-conf", "", "racoon.conf to convert (include files are followed)")
	fl.StringVar(&f.PSK, "psk", "", "racoon psk.txt (default: racoon.conf's path pre_shared_key)")
	fl.StringVar(&f.Setkey, "setkey", "", "setkey's configuration (ipsec-tools.conf) with the tunnel policies")
	fl.StringVarP(&out, "output", "o", "", "write the YAML to FILE instead of stdout")
	fl.StringVar(&f.Name, "name", "", "name of the connection (one peer only; default peer-ADDRESS)")
	fl.StringVar(&f.ServiceInterface, "service-interface", "", "make a tunnel's own single local address the service_address on this interface")
	rc.MarkFlagRequired("racoon-conf")
	cmd.AddCommand(rc)
	return cmd
}

// writeFileAtomic replaces name with data (mode 0600: a configuration may hold a key), so
// that a reader never sees half a file.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
