// Command espgw is an IKEv1/IPsec site-to-site gateway for one Linux host: `espgw run`
// is the daemon, the other commands talk to it over its control socket.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/espgw/espgw/config"
)

// DefaultConfigFile is read by `run` and `config check` without -c.
const DefaultConfigFile = "/etc/espgw/espgw.yaml"

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError ends the program with code after its message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// execute runs the command line args and returns the process exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	fmt.Fprintf(stderr, "espgw: %v\n", err)
	return 1
}

// globals are the flags every command has.
type globals struct {
	configFile string
	socket     string
	logLevel   string
	logFormat  string
	stderr     io.Writer
	root       *cobra.Command
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stderr: stderr}
	root := &cobra.Command{
		Use:           "espgw",
		Short:         "IKEv1/IPsec site-to-site gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.root = root
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configFile, "config", "c", DefaultConfigFile, "configuration file")
	pf.StringVar(&g.socket, "socket", "", "control socket (default: control_socket of -c if given, else $ESPGW_CONTROL_SOCKET, else "+config.DefaultControlSocket+")")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text (key=value) or json (one object a line)")
	root.AddCommand(
		newRunCmd(g),
		newStatusCmd(g),
		newFlowsCmd(g),
		newUpDownCmd(g, "up"),
		newUpDownCmd(g, "down"),
		newReloadCmd(g),
		newConfigCmd(g),
		newVersionCmd(),
		newDoctorCmd(g),
		newPingCmd(g),
		newManCmd(g),
	)
	root.AddCommand(newImportCmd(g), newSheetCmd(g))
	return root
}

// socketPath is --socket, else the control_socket of an explicit -c, else
// $ESPGW_CONTROL_SOCKET (which also overrides -c's, see config.EnvVar), else the default.
func (g *globals) socketPath() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	if !g.root.PersistentFlags().Changed("config") {
		return cmp.Or(os.Getenv(config.EnvVar("control_socket")), config.DefaultControlSocket), nil
	}
	cfg, err := config.Load(g.configFile)
	if err != nil {
		return "", fmt.Errorf("find control_socket in %s: %w", g.configFile, err)
	}
	return cfg.ControlSocket, nil
}

// logger logs to stderr at --log-level in --log-format; under systemd, in the journal's format.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	if underJournal(g.stderr) {
		return slog.New(newJournalHandler(g.stderr, level)), nil
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

// loadConfig loads -c, printing every problem found and the warnings.
func (g *globals) loadConfig() (*config.Config, error) {
	cfg, warnings, err := config.LoadWarn(g.configFile)
	if err != nil {
		fmt.Fprintf(g.stderr, "espgw: %s:\n", g.configFile)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(g.stderr, "  %s\n", line)
		}
		return nil, exitError{1}
	}
	for _, w := range warnings {
		fmt.Fprintf(g.stderr, "espgw: warning: %s\n", w)
	}
	return cfg, nil
}
