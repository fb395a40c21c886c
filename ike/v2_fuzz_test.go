package ike

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/espgw/espgw/conn"
)

// FuzzV2Responder feeds arbitrary datagrams, as if from the configured peer, to an IKEv2
// engine that has an IKE SA with two child SAs with that peer. Seeds are both sides'
// messages of a real negotiation (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL), so
// mutations reach the protected paths under valid SPIs, and the strongSwan ⇄ strongSwan
// capture. The engine must never panic.
func FuzzV2Responder(f *testing.F) {
	s, a, b, _, _ := v2Sim(f, pairConfig{esp: "aes128gcm16-modp2048", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	s.up(a, b)
	for _, n := range []*node{a, b} {
		for _, p := range n.bind.Sent() {
			f.Add(p.Data, p.Local.Port())
		}
	}
	addCaptureSeeds(f, filepath.Join("ikev2", "testdata"), conn.NATTPort)
	f.Fuzz(func(t *testing.T, msg []byte, port uint16) {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		b.e.handlePacket(conn.Packet{Data: msg, Local: netip.AddrPortFrom(addrB, port), Remote: netip.AddrPortFrom(addrA, port)})
	})
}
