package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// memProfileRate samples one allocation per 4 KiB instead of the default 512 KiB, so that a
// heap profile breaks tens of MiB down to items of a few hundred KiB (per-SA state).
const memProfileRate = 4096

// servePProf serves Go's runtime profiles under /debug/pprof/ on addr until ctx ends. It is
// a hidden flag of `espgw run` for benchmarks (bench/setup's heap breakdown), not an
// operator's interface: anyone who can reach addr can read the daemon's heap.
func servePProf(ctx context.Context, addr string, log *slog.Logger) error {
	runtime.MemProfileRate = memProfileRate
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { srv.Close() })
	go srv.Serve(ln)
	log.Warn("serving Go profiles; the heap holds keys", "address", ln.Addr().String())
	return nil
}
