package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

var garbage []byte

// TestUnusedHeap: collected garbage counts as unused heap until a release returns it, and
// after a release the unused heap is below releaseThreshold, so that an idle daemon does
// not force a collection at every check.
func TestUnusedHeap(t *testing.T) {
	garbage = make([]byte, 64<<20)
	for i := 0; i < len(garbage); i += 4096 {
		garbage[i] = 1 // resident
	}
	garbage = nil
	runtime.GC()
	if u := unusedHeap(); u < 32<<20 {
		t.Errorf("unused heap after 64 MiB of garbage was collected: %d bytes, want ≥ 32 MiB", u)
	}
	debug.FreeOSMemory()
	if u := unusedHeap(); u > releaseThreshold {
		t.Errorf("unused heap after a release: %d bytes, want ≤ %d", u, releaseThreshold)
	}
}
