package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/daemon"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/datapath/xfrm"
	"github.com/espgw/espgw/loader"
)

func newRunCmd(g *globals) *cobra.Command {
	var pprofAddr string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the gateway in the foreground (SIGHUP reloads, SIGTERM/SIGINT stop)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			tuneGC()
			go releaseMemory(ctx)
			if pprofAddr != "" {
				if err := servePProf(ctx, pprofAddr, log); err != nil {
					return err
				}
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return daemon.Run(ctx, cfg, daemon.Options{
				Logger:         log,
				ConfigPath:     g.configFile,
				ControlSocket:  g.socket,
				Reload:         hup,
				NewDatapath:    newDatapath,
				ProbeKernelESP: probeKernelESP,
				OpenLoader:     loader.Open,
				Notify:         sdNotifier(log),
			})
		},
	}
	cmd.Flags().StringVar(&pprofAddr, "pprof", "", "serve Go's profiles (net/http/pprof) on this address, for measurements")
	cmd.Flags().MarkHidden("pprof")
	return cmd
}

// newDatapath opens the real backends in the current network namespace.
func newDatapath(kind string, b conn.Bind, log *slog.Logger) (datapath.Datapath, error) {
	switch kind {
	case daemon.KindXFRM:
		return xfrm.New(xfrm.Options{Logger: log})
	case daemon.KindUserspace:
		// RawESP serves peers that do not encapsulate (nat_traversal: off, no NAT).
		return userspace.New(userspace.Options{Bind: b, Logger: log, RawESP: true})
	}
	return nil, fmt.Errorf("datapath %q: want %s or %s", kind, daemon.KindXFRM, daemon.KindUserspace)
}

// probeKernelESP asks the kernel to install a throwaway SA per transform.
func probeKernelESP(ctx context.Context, ts []daemon.Transform) error {
	xs := make([]xfrm.Transform, len(ts))
	for i, t := range ts {
		xs[i] = xfrm.Transform{Enc: t.Enc, Integ: t.Integ, KeyBits: t.KeyBits}
	}
	return xfrm.Probe(ctx, netns.None(), xs...)
}
