package loader

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/loader/pkttest"
)

// FuzzTCEgress feeds arbitrary frames to the egress program: it may only drop or pass, never
// change the length, and change at most the MSS value (never upwards) and the TCP checksum,
// which must still verify.
func FuzzTCEgress(f *testing.F) {
	l := openLoader(f, Options{})
	for _, p := range testPolicies {
		if err := l.SetPolicy(p); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1460), nil))
	f.Add(tcpFrame("10.1.0.1", "10.2.0.1", 40000, 80, pkttest.SYN|pkttest.ACK, []byte{1, 1, 4, 2, 1, 2, 4, 5, 0xb4}, nil))
	f.Add(withIPOptions("10.1.0.1", "10.2.0.1", []byte{1}, 9000))
	f.Add(tcpFrame("10.1.0.1", "10.3.0.1", 40000, 443, pkttest.SYN, pkttest.MSS(1460), nil))
	prog := l.Programs().TCEgress
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < pkttest.EthLen || len(frame) > 1500 {
			return
		}
		opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512)}
		ret, err := prog.Run(&opts)
		if err != nil {
			return // the kernel refused the input before running the program
		}
		out := opts.DataOut
		if ret != tcOK && ret != tcShot {
			t.Fatalf("verdict %d", ret)
		}
		if bytes.Equal(out, frame) {
			return
		}
		if len(out) != len(frame) {
			t.Fatalf("length %d -> %d", len(frame), len(out))
		}
		ip, tcp, err := pkttest.TCPView(frame)
		if err != nil {
			t.Fatalf("changed a frame that is not TCP: %v", err)
		}
		tcpOff := pkttest.EthLen + len(ip)
		var changed []int
		for i := range frame {
			if frame[i] != out[i] && (i < tcpOff+16 || i > tcpOff+17) {
				changed = append(changed, i-tcpOff)
			}
		}
		if len(changed) == 0 || len(changed) > 2 || (len(changed) == 2 && changed[1] != changed[0]+1) {
			t.Fatalf("changed TCP bytes at %v besides the checksum", changed)
		}
		oldMSS, ok, _ := pkttest.MSSOf(frame)
		newMSS, ok2, _ := pkttest.MSSOf(out)
		if !ok || !ok2 || newMSS >= oldMSS {
			t.Fatalf("MSS %d -> %d", oldMSS, newMSS)
		}
		if okIn, _ := pkttest.TCPChecksumOK(frame); okIn {
			if okOut, _ := pkttest.TCPChecksumOK(out); !okOut {
				t.Fatalf("checksum broken by the rewrite (segment %d bytes)", len(tcp))
			}
		}
	})
}

// FuzzXDP feeds arbitrary frames to the XDP program: it may only drop or pass, and never
// changes a byte.
func FuzzXDP(f *testing.F) {
	l := openLoader(f, Options{})
	if err := l.AddSA(Inbound, 0xc0de0001); err != nil {
		f.Fatal(err)
	}
	f.Add(espFrame("203.0.113.9", 0xc0de0001, 32))
	f.Add(udpFrame("203.0.113.9", 4500, 4500, []byte{0xff}))
	esp := make([]byte, 12)
	binary.BigEndian.PutUint32(esp, 0xc0de0001)
	f.Add(udpFrame("203.0.113.9", 4500, 4500, esp))
	prog := l.Programs().XDP
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < pkttest.EthLen || len(frame) > 1500 {
			return
		}
		opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512)}
		ret, err := prog.Run(&opts)
		if err != nil {
			return
		}
		if ret != xdpPass && ret != xdpDrop {
			t.Fatalf("verdict %d", ret)
		}
		if !bytes.Equal(opts.DataOut, frame) {
			t.Fatal("XDP changed the packet")
		}
	})
}
