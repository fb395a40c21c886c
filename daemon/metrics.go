package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"

	"github.com/espgw/espgw/metrics"
)

// SAStats implements metrics.SASource: the datapath's counters of every installed child
// SA, both directions.
func (k *kernel) SAStats() ([]metrics.SAStat, error) {
	k.mu.Lock()
	sas := slices.Collect(maps.Values(k.installed))
	k.mu.Unlock()
	slices.SortFunc(sas, func(a, b installedSA) int {
		return cmp.Or(cmp.Compare(a.conn, b.conn), cmp.Compare(a.tunnel, b.tunnel), cmp.Compare(a.spiIn, b.spiIn))
	})
	var stats []metrics.SAStat
	for _, sa := range sas {
		in, err := k.dp.Counters(sa.local, sa.spiIn)
		if err != nil {
			return nil, err
		}
		out, err := k.dp.Counters(sa.remote, sa.spiOut)
		if err != nil {
			return nil, err
		}
		stats = append(stats,
			metrics.SAStat{Connection: sa.conn, Tunnel: sa.tunnel, SPI: sa.spiIn, Direction: "in", Bytes: in.Bytes, Packets: in.Packets},
			metrics.SAStat{Connection: sa.conn, Tunnel: sa.tunnel, SPI: sa.spiOut, Direction: "out", Bytes: out.Bytes, Packets: out.Packets})
	}
	return stats, nil
}

// startMetrics serves Prometheus metrics on addr until ctx ends, with the topN flows when
// ebpf is not nil; the returned function waits for the server to stop.
func startMetrics(ctx context.Context, addr string, sas metrics.SASource, ebpf metrics.EBPFSource, topN int, log *slog.Logger, extra ...metrics.Source) (wait func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := metrics.Serve(ctx, ln, log, append([]metrics.Source{metrics.NewCollector(sas, ebpf, topN)}, extra...)...); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String())
	return func() { <-done }, nil
}
