package ike

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
)

// FuzzResponder feeds arbitrary datagrams, as if from the configured peer, to a responder
// engine that already has an IKE SA and a child SA with that peer. Seeds are the messages
// of a real negotiation (so mutations reach the encrypted paths under valid cookies) and
// the shared IKEv1 captures. The engine must never panic.
func FuzzResponder(f *testing.F) {
	a, b := startPair(f, pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128-sha1-modp2048", pskA: "k", tunnels: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.e.Up(ctx, "peer", ""); err != nil {
		f.Fatal(err)
	}
	// The aggressive-mode and NAT-T variants add their message shapes to the corpus.
	for _, pc := range []pairConfig{
		{mode: model.ModeAggressive, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"},
		{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", natt: model.NATTForce},
	} {
		x, _ := startPair(f, pc)
		if err := x.e.Up(ctx, "peer", ""); err != nil {
			f.Fatal(err)
		}
		for _, p := range x.bind.Sent() {
			f.Add(p.Data, p.Local.Port())
		}
	}
	a.e.Down(ctx, "peer", "t1")
	for _, p := range a.bind.Sent() {
		f.Add(p.Data, p.Local.Port())
	}
	// Captures of other implementations, shared with package isakmp's tests; relative to
	// this package, so the seeds come along wherever the repository is checked out.
	addCaptureSeeds(f, filepath.Join("isakmp", "testdata"), conn.IKEPort)
	f.Fuzz(func(t *testing.T, msg []byte, port uint16) {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		local := netip.AddrPortFrom(addrB, port)
		b.e.handlePacket(conn.Packet{Data: msg, Local: local, Remote: netip.AddrPortFrom(addrA, port)})
	})
}

// addCaptureSeeds adds the IKE messages of every capture in dir (dir/*.pcap) to f's corpus,
// as if received on port.
func addCaptureSeeds(f *testing.F, dir string, port uint16) {
	pcaps, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if len(pcaps) == 0 {
		f.Fatalf("no seed captures in %s/*.pcap", dir)
	}
	for _, p := range pcaps {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		msgs := udpPayloads(data)
		if len(msgs) == 0 {
			f.Fatalf("%s: no UDP payloads", p)
		}
		for _, msg := range msgs {
			f.Add(msg, port)
		}
	}
}

// udpPayloads extracts the UDP payloads of a little-endian Ethernet/IPv4 pcap file,
// without the non-ESP marker on port 4500. Malformed records end the walk.
func udpPayloads(b []byte) [][]byte {
	const fileHeader, recHeader, ether = 24, 16, 14
	if len(b) < fileHeader || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		return nil
	}
	var out [][]byte
	for b = b[fileHeader:]; len(b) >= recHeader; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < recHeader+n {
			break
		}
		pkt := b[recHeader : recHeader+n]
		b = b[recHeader+n:]
		if len(pkt) < ether+20 || pkt[12] != 0x08 || pkt[13] != 0 || pkt[ether+9] != 17 {
			continue
		}
		ip := pkt[ether:]
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		data := udp[8:]
		if binary.BigEndian.Uint16(udp[2:]) == conn.NATTPort && len(data) >= conn.NonESPMarkerLen {
			data = data[conn.NonESPMarkerLen:]
		}
		out = append(out, data)
	}
	return out
}
