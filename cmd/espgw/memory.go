package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// daemonGCPercent is the daemon's GOGC: the Go heap may grow to 1.25× what is live
// between collections instead of 2×. With 1,000 tunnels that keeps ~25 MiB less resident
// (bench/README.md, "Scale"); the datapath allocates nothing per packet and an idle daemon
// little, so the extra collections cost little (idle CPU 0.3 % of a core either way).
const daemonGCPercent = 25

// tuneGC sets daemonGCPercent unless the environment sets GOGC.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(daemonGCPercent)
	}
}

// How often the daemon looks for heap memory it no longer uses, and how much of it makes
// the daemon hand it back.
const (
	releaseCheck     = 5 * time.Second
	releaseThreshold = 2 << 20
)

// releaseMemory returns unused heap memory to the kernel every releaseCheck while more
// than releaseThreshold is unused, until ctx is done. Unused: garbage not yet collected
// plus free pages the runtime keeps (up to 10 % above its heap goal, returned slowly).
// After a burst — 1,000 tunnels set up, a /metrics scrape or a status of 1,000 tunnels,
// ~5 MB each — that is several MiB of RSS for minutes. A release is one forced collection
// (~10 ms of CPU with 1,000 tunnels) and happens only after such a burst; an idle daemon
// pays the check alone. A soft memory limit (GOMEMLIMIT, which the runtime reads) returns
// pages too, but only when set just above the live heap, where every collection near it
// costs more, and too low for a bigger configuration (bench/README.md, "Scale").
func releaseMemory(ctx context.Context) {
	t := time.NewTicker(releaseCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if unusedHeap() > releaseThreshold {
				debug.FreeOSMemory()
			}
		}
	}
}

// unusedHeap is the heap memory the runtime holds beyond the objects the last collection
// found live: garbage since, and free pages not returned to the kernel.
func unusedHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	free, objects, live := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	return free + objects - min(live, objects)
}
