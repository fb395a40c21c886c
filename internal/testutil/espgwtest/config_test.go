package espgwtest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/model"
)

// summary lists what TestConfigParses checks of a parsed configuration, one connection with
// one tunnel; the PSK shows only as its length.
func summary(c *config.Config) string {
	if len(c.Connections) != 1 || len(c.Connections[0].Tunnels) != 1 {
		return fmt.Sprintf("%d connections, want 1 with 1 tunnel", len(c.Connections))
	}
	conn, tun := c.Connections[0], c.Connections[0].Tunnels[0]
	svc := "none"
	if s := conn.ServiceAddress; s != nil {
		svc = s.Address.String() + "@" + s.Interface
	}
	return fmt.Sprintf("socket=%s keys=%s datapath=%s ebpf=%v | %s %v->%v id=%v->%v psk=%dB v%d %s [%s] %v natt=%s dpd=%v/%v svc=%s | %s %v<->%v %v start=%s",
		c.ControlSocket, c.SaveKeys, c.Datapath, c.EBPF.Enabled,
		conn.Name, conn.LocalAddress, conn.RemoteAddress, conn.LocalID, conn.RemoteID, len(conn.PSK), conn.IKE.Version, conn.IKE.Mode,
		conn.IKE.FormatProposals(), conn.IKE.Lifetime,
		conn.IKE.NATTraversal, conn.IKE.DPDDelay, conn.IKE.DPDTimeout, svc,
		tun.Name, model.Prefixes(tun.LocalSubnets), model.Prefixes(tun.RemoteSubnets), tun.Lifetime, tun.Start)
}

// TestConfigParses renders Configs as Start does and reads them back with the daemon's own
// config package, so a template that drifts from the configuration schema fails here rather
// than as a daemon that does not start.
func TestConfigParses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{
			name: "defaults",
			cfg: Config{Connections: []Connection{{Name: "lab", Local: "192.0.2.1", Remote: "192.0.2.2", PSK: `a "quoted" key`,
				IKEProposal: "aes256-sha256-modp2048",
				Tunnels: []Tunnel{{Name: "net", LocalSubnet: "10.1.0.0/16", RemoteSubnet: "10.2.0.0/16",
					ESPProposal: "aes256gcm16-modp2048", Start: "always"}}}}},
			want: "socket=/tmp/e/ctl.sock keys=/tmp/e/keys datapath=auto ebpf=true | lab 192.0.2.1->192.0.2.2 id=192.0.2.1->192.0.2.2 psk=14B v1 main [aes256-sha256-modp2048] 1h0m0s natt=auto dpd=0s/30s svc=none" +
				" | net 10.1.0.0/16<->10.2.0.0/16 30m0s start=always",
		},
		{
			name: "everything set",
			cfg: Config{Datapath: "userspace", NoEBPF: true, Connections: []Connection{{Name: "megatelecom", Local: "192.0.2.1", Remote: "192.0.2.2",
				LocalID: "gw.example.net", RemoteID: "keyid:bank",
				PSK: "k", Mode: "aggressive", IKEProposal: "3des-sha1-modp1024", IKELifetime: "60s", NATTraversal: "off", ServiceAddress: "10.10.1.1/32", Interface: "gw-wan", DPDDelay: "2s", DPDTimeout: "6s",
				Tunnels: []Tunnel{{Name: "api", LocalSubnet: "10.10.1.1/32", RemoteSubnet: "10.20.0.0/24",
					ESPProposal: "3des-sha1-modp1024", Lifetime: "15s", Start: "on-demand"}}}}},
			want: "socket=/tmp/e/ctl.sock keys=/tmp/e/keys datapath=userspace ebpf=false | megatelecom 192.0.2.1->192.0.2.2 id=gw.example.net->keyid:bank psk=1B v1 aggressive [3des-sha1-modp1024] 1m0s natt=off dpd=2s/6s" +
				" svc=10.10.1.1/32@gw-wan | api 10.10.1.1/32<->10.20.0.0/24 15s start=on-demand",
		},
		{
			name: "IKEv2",
			cfg: Config{Connections: []Connection{{Name: "lab", Local: "192.0.2.1", Remote: "192.0.2.2", PSK: "k",
				IKEVersion: 2, IKEProposal: "aes128gcm16-prfsha256-ecp256",
				Tunnels: []Tunnel{{Name: "net", LocalSubnet: "10.1.0.0/16", RemoteSubnet: "10.2.0.0/16",
					ESPProposal: "aes128gcm16-ecp256", Start: "on-demand"}}}}},
			want: "socket=/tmp/e/ctl.sock keys=/tmp/e/keys datapath=auto ebpf=true | lab 192.0.2.1->192.0.2.2 id=192.0.2.1->192.0.2.2 psk=1B v2 main [aes128gcm16-prfsha256-ecp256] 1h0m0s natt=auto dpd=0s/30s svc=none" +
				" | net 10.1.0.0/16<->10.2.0.0/16 30m0s start=on-demand",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.cfg.write(&b, "/tmp/e/ctl.sock", "/tmp/e/keys"); err != nil {
				t.Fatal(err)
			}
			got, err := config.Parse(&b)
			if err != nil {
				t.Fatalf("config.Parse: %v\n%s", err, b.String())
			}
			if s := summary(got); s != tt.want {
				t.Errorf("parsed configuration:\n got %s\nwant %s", s, tt.want)
			}
		})
	}
}
