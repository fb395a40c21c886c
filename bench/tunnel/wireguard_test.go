package tunnel

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	wgconn "golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/espgw/espgw/internal/testutil"
)

// wgPort is the UDP port of both WireGuard devices; wgMTU is wg-quick's default MTU.
const (
	wgPort = 51820
	wgMTU  = 1420
)

// wireguardPair brings up a wireguard-go device (golang.zx2c4.com/wireguard, with its own TUN
// offloads and UDP GSO/GRO) in each namespace, configured in process through its UAPI
// (IpcSet), and routes each protected host to the other through it. WireGuard's only
// cipher is ChaCha20-Poly1305.
func wireguardPair(b *testing.B, s site) {
	b.Helper()
	type end struct {
		ns         *testutil.NetNS
		name       string
		wan, peer  string
		host, remo string
		key        *ecdh.PrivateKey
	}
	newKey := func() *ecdh.PrivateKey {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	l := end{s.left, "wgbl", wanL, wanR, hostL, hostR, newKey()}
	r := end{s.right, "wgbr", wanR, wanL, hostR, hostL, newKey()}
	for _, ends := range [][2]end{{l, r}, {r, l}} {
		e, other := ends[0], ends[1]
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s:%d\nallowed_ip=%s/32\n",
			hex.EncodeToString(e.key.Bytes()), wgPort, hex.EncodeToString(other.key.PublicKey().Bytes()),
			e.peer, wgPort, e.remo)
		var dev *device.Device
		// The TUN, the UDP sockets (opened by IpcSet/Up) and the devices' routines stay in
		// the namespace.
		err := e.ns.Do(func() error {
			t, err := tun.CreateTUN(e.name, wgMTU)
			if err != nil {
				return err
			}
			// Silent: the TUN's MTU watcher asks for the MTU by name from threads outside the
			// namespace and logs an error on every link event; the MTU stays wgMTU.
			dev = device.NewDevice(t, wgconn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
			if err := dev.IpcSet(cfg); err != nil {
				dev.Close()
				return fmt.Errorf("IpcSet: %w", err)
			}
			if err := dev.Up(); err != nil {
				dev.Close()
				return fmt.Errorf("up: %w", err)
			}
			return nil
		})
		if err != nil {
			b.Fatalf("netns %s: wireguard-go %s: %v", e.ns, e.name, err)
		}
		b.Cleanup(dev.Close)
		e.ns.Exec(b, "ip", "link", "set", e.name, "up")
		e.ns.Exec(b, "ip", "route", "add", e.remo+"/32", "dev", e.name, "src", e.host)
	}
	// The first packet starts the handshake.
	err := testutil.Poll(10*time.Second, func() (bool, error) {
		return testutil.Ping(s.left, hostL, hostR, 1) == nil, nil
	})
	if err != nil {
		b.Fatalf("wireguard-go: no ping reply through the tunnel: %v", err)
	}
}
