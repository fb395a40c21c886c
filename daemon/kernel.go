package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
)

// kernel adapts ike.Kernel onto a datapath.Datapath and remembers the child SAs it
// installed, for status and counters.
type kernel struct {
	dp datapath.Datapath

	mu        sync.Mutex
	tunnels   map[tunnelKey]model.Tunnel // the running configuration, for the replay window
	installed map[uint32]installedSA     // by inbound SPI
}

type tunnelKey struct{ conn, tunnel string }

// installedSA is what status and metrics need of an installed child SA: no keys.
type installedSA struct {
	conn, tunnel                    string
	local, remote                   netip.Addr
	spiIn, spiOut                   uint32
	proposal                        proposal.ESP
	encapLocalPort, encapRemotePort uint16
	expiry                          time.Time // hard lifetime; zero: none
}

var _ ike.Kernel = (*kernel)(nil)

func newKernel(dp datapath.Datapath) *kernel {
	return &kernel{dp: dp, installed: make(map[uint32]installedSA)}
}

// configure makes cfg's tunnel settings the ones later SAs are installed with.
func (k *kernel) configure(cfg *config.Config) {
	m := make(map[tunnelKey]model.Tunnel)
	for _, c := range cfg.Connections {
		for _, t := range c.Tunnels {
			m[tunnelKey{c.Name, t.Name}] = t
		}
	}
	k.mu.Lock()
	k.tunnels = m
	k.mu.Unlock()
}

func (k *kernel) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	return k.dp.AllocSPI(ctx, local, remote)
}

// ReleaseSPI gives back an inbound SPI whose quick mode failed: the datapath deletes the
// reservation like any inbound SA, by DeleteSA with our address as destination. The SPI of
// an installed child SA is left alone; DeleteChildSA removes it.
func (k *kernel) ReleaseSPI(ctx context.Context, local, remote netip.Addr, spi uint32) error {
	k.mu.Lock()
	_, installed := k.installed[spi]
	k.mu.Unlock()
	if installed {
		return nil
	}
	if err := k.dp.DeleteSA(ctx, local, spi); err != nil {
		return fmt.Errorf("release SPI %08x for %v -> %v: %w", spi, remote, local, err)
	}
	return nil
}

func (k *kernel) InstallChildSA(ctx context.Context, sa *ike.ChildSA) error {
	k.mu.Lock()
	t, ok := k.tunnels[tunnelKey{sa.Connection, sa.Tunnel}]
	k.mu.Unlock()
	if !ok {
		return fmt.Errorf("install child SA: tunnel %s/%s is not configured", sa.Connection, sa.Tunnel)
	}
	pair, err := saPair(sa, t.ReplayWindow)
	if err != nil {
		return fmt.Errorf("install child SA %s/%s: %w", sa.Connection, sa.Tunnel, err)
	}
	if err := k.dp.AddSAPair(ctx, pair); err != nil {
		return fmt.Errorf("install child SA %s/%s: %w", sa.Connection, sa.Tunnel, err)
	}
	k.mu.Lock()
	k.installed[sa.SPIIn] = installedSA{
		conn: sa.Connection, tunnel: sa.Tunnel, local: sa.Local, remote: sa.Remote,
		spiIn: sa.SPIIn, spiOut: sa.SPIOut, proposal: sa.Proposal,
		encapLocalPort: sa.EncapLocalPort, encapRemotePort: sa.EncapRemotePort,
		expiry: expiry(sa),
	}
	k.mu.Unlock()
	return nil
}

func (k *kernel) DeleteChildSA(ctx context.Context, sa *ike.ChildSA) error {
	k.mu.Lock()
	delete(k.installed, sa.SPIIn)
	k.mu.Unlock()
	return errors.Join(
		k.dp.DeleteSA(ctx, sa.Local, sa.SPIIn),
		k.dp.DeleteSA(ctx, sa.Remote, sa.SPIOut),
	)
}

// childSA returns the installed child SA with that inbound SPI.
func (k *kernel) childSA(spiIn uint32) (installedSA, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	sa, ok := k.installed[spiIn]
	return sa, ok
}

// saPair translates a negotiated child SA into the datapath's inbound and outbound SAs.
func saPair(sa *ike.ChildSA, replayWindow uint32) (datapath.SAPair, error) {
	enc, integ, err := transform(sa.Proposal)
	if err != nil {
		return datapath.SAPair{}, err
	}
	hardBytes := sa.LifeKilobytes * 1024
	life := datapath.Lifetime{
		Hard: sa.Lifetime, Soft: ike.SoftLifetime(sa.Lifetime, sa.Initiator),
		HardBytes: hardBytes, SoftBytes: ike.SoftLifetime(hardBytes, sa.Initiator),
	}
	sels := selectors(sa.LocalTS, sa.RemoteTS)
	in := datapath.SA{
		SPI: sa.SPIIn, Src: sa.Remote, Dst: sa.Local,
		EncapSrcPort: sa.EncapRemotePort, EncapDstPort: sa.EncapLocalPort,
		Enc: enc, EncKey: sa.EncKeyIn, Integ: integ, IntegKey: sa.IntegKeyIn,
		ReplayWindow: replayWindow, Lifetime: life, ReqID: sa.ReqID, Selectors: sels,
	}
	out := datapath.SA{
		SPI: sa.SPIOut, Src: sa.Local, Dst: sa.Remote,
		EncapSrcPort: sa.EncapLocalPort, EncapDstPort: sa.EncapRemotePort,
		Enc: enc, EncKey: sa.EncKeyOut, Integ: integ, IntegKey: sa.IntegKeyOut,
		Lifetime: life, ReqID: sa.ReqID, Selectors: sels,
	}
	return datapath.SAPair{In: in, Out: out}, nil
}

// selectors are the policy selectors, from our side, of every (local, remote) combination of
// a child SA's or a tunnel's traffic selectors, local by local.
func selectors(local, remote []ike.TrafficSelector) []datapath.Selector {
	out := make([]datapath.Selector, 0, len(local)*len(remote))
	for _, l := range local {
		for _, r := range remote {
			out = append(out, datapath.Selector{
				Local: l.Prefix, Remote: r.Prefix, Proto: l.Proto,
				LocalPort: l.Port, RemotePort: r.Port,
			})
		}
	}
	return out
}

// transform maps a negotiated ESP proposal onto the datapath's algorithms.
func transform(p proposal.ESP) (datapath.Encryption, datapath.Integrity, error) {
	var enc datapath.Encryption
	switch p.Encryption {
	case proposal.Enc3DES:
		enc = datapath.Enc3DESCBC
	case proposal.EncAESCBC:
		enc = datapath.EncAESCBC
	case proposal.EncAESGCM16:
		enc = datapath.EncAESGCM16
	default:
		return 0, 0, fmt.Errorf("ESP encryption %v: no datapath transform (want 3des, aes-cbc or aes-gcm16)", p.Encryption)
	}
	var integ datapath.Integrity
	switch p.Integrity {
	case proposal.HashNone:
		integ = datapath.IntegNone
	case proposal.HashSHA1:
		integ = datapath.IntegHMACSHA1_96
	case proposal.HashSHA256:
		integ = datapath.IntegHMACSHA256_128
	case proposal.HashSHA384:
		integ = datapath.IntegHMACSHA384_192
	case proposal.HashSHA512:
		integ = datapath.IntegHMACSHA512_256
	default:
		return 0, 0, fmt.Errorf("ESP integrity %v: no datapath transform (want sha1, sha256, sha384 or sha512)", p.Integrity)
	}
	if (enc == datapath.EncAESGCM16) != (integ == datapath.IntegNone) {
		return 0, 0, fmt.Errorf("ESP %v with integrity %v: want integrity only without AES-GCM", p.Encryption, p.Integrity)
	}
	return enc, integ, nil
}

var _ ike.TrafficCounter = (*kernel)(nil)

// ChildSAPackets implements ike.TrafficCounter (one-sided tunnel detection): the packets
// the datapath counted on sa's inbound and outbound SA.
func (k *kernel) ChildSAPackets(ctx context.Context, sa *ike.ChildSA) (in, out uint64, err error) {
	ci, err := k.dp.Counters(sa.Local, sa.SPIIn)
	if err != nil {
		return 0, 0, err
	}
	co, err := k.dp.Counters(sa.Remote, sa.SPIOut)
	if err != nil {
		return 0, 0, err
	}
	return ci.Packets, co.Packets, nil
}
