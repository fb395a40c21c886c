package interop

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/daemon"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/loader"
)

// ikev2DaemonArg, as the test binary's first argument, makes it run as an espgw daemon
// whose connections speak IKEv2 with the IKE proposals of the second argument (swanctl
// syntax). It stands in for `ike: {version: 2}` in espgw.yaml until config reads it: the
// rest of the daemon (datapath, eBPF, control socket, save_keys, status) is the real one.
const ikev2DaemonArg = "espgw-ikev2-test-daemon"

// ikev2Gateway is the argv StartCommand runs for an IKEv2 espgw with IKE proposals ike.
func ikev2Gateway(ike string) []string {
	return []string{os.Args[0], ikev2DaemonArg, ike}
}

// runIKEv2Daemon is `espgw run -c <config>` (args) with every connection switched to IKEv2.
func runIKEv2Daemon(ike string, args []string) int {
	if err := ikev2Daemon(ike, args); err != nil {
		fmt.Fprintf(os.Stderr, "espgw (IKEv2 test daemon): %v\n", err)
		return 1
	}
	return 0
}

func ikev2Daemon(ike string, args []string) error {
	if len(args) < 3 || args[0] != "run" || args[1] != "-c" {
		return fmt.Errorf("arguments %q, want run -c <config> ...", args)
	}
	props, err := proposal.ParseIKEv2(ike)
	if err != nil {
		return err
	}
	cfg, err := config.Load(args[2])
	if err != nil {
		return err
	}
	for i := range cfg.Connections {
		cfg.Connections[i].IKE.Version, cfg.Connections[i].IKE.V2Proposals = 2, props
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return daemon.Run(ctx, cfg, daemon.Options{
		Logger: log,
		NewDatapath: func(kind string, b conn.Bind, log *slog.Logger) (datapath.Datapath, error) {
			return userspace.New(userspace.Options{Bind: b, Logger: log, RawESP: true})
		},
		OpenLoader: loader.Open,
	})
}
