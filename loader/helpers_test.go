package loader

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// requireRoot skips tests that load BPF programs or create namespaces when not root.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loads BPF programs")
	}
}

// openLoader opens a Loader that the test closes.
func openLoader(tb testing.TB, opts Options) *Loader {
	tb.Helper()
	requireRoot(tb)
	l, err := Open(opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

// run runs prog once on frame and returns its verdict and output packet.
func run(tb testing.TB, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	tb.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512)}
	ret, err := prog.Run(&opts)
	if err != nil {
		tb.Fatalf("run %v: %v", prog, err)
	}
	return ret, opts.DataOut
}
