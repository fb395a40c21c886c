package loader

import "github.com/cilium/ebpf"

// Programs are the loaded programs for Ethernet devices, for running them directly with
// BPF_PROG_TEST_RUN (Program.Run, Program.Benchmark) in tests and benchmarks. They share their
// maps with the attached copies. The Loader keeps ownership: do not close them.
type Programs struct {
	TCEgress, TCIngress, XDP *ebpf.Program
}

// Programs returns the loaded programs.
func (l *Loader) Programs() Programs {
	return Programs{TCEgress: l.tc.EspgwEgressEth, TCIngress: l.tc.EspgwIngressEth, XDP: l.xdp.EspgwXdp}
}
