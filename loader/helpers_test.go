package loader

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/internal/testutil"
)

// openLoader opens a Loader that the test closes.
func openLoader(tb testing.TB, opts Options) *Loader {
	tb.Helper()
	testutil.RequireRoot(tb)
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
	return runSegs(tb, prog, frame, 0)
}

// skBuffGSOSegs is the offset of gso_segs in struct __sk_buff (include/uapi/linux/bpf.h);
// skBuffSize is the struct's size in kernels since 5.16, and older ones accept a prefix.
const (
	skBuffGSOSegs = 164
	skBuffSize    = 192
)

// runSegs runs a tc program on frame as if it were a GSO super-packet of segs segments
// (0: an ordinary packet), through the __sk_buff context BPF_PROG_TEST_RUN takes.
func runSegs(tb testing.TB, prog *ebpf.Program, frame []byte, segs uint32) (uint32, []byte) {
	tb.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512)}
	if segs != 0 {
		ctx := make([]byte, skBuffSize)
		binary.LittleEndian.PutUint32(ctx[skBuffGSOSegs:], segs)
		opts.Context = ctx
	}
	ret, err := prog.Run(&opts)
	if err != nil {
		tb.Fatalf("run %v: %v", prog, err)
	}
	return ret, opts.DataOut
}
