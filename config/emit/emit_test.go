package emit

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/model"
)

func TestScalar(t *testing.T) {
	for in, want := range map[string]string{
		"megatelecom": "megatelecom", "10.20.0.0-24": "10.20.0.0-24", "/etc/racoon/psk.txt": "/etc/racoon/psk.txt",
		"": `""`, "yes": `"yes"`, "Off": `"Off"`, "1024": `"1024"`, "1e5": `"1e5"`, "keyid:abc": `"keyid:abc"`,
		"a b": `"a b"`, "-x": `"-x"`, "@x": `"@x"`, "ключ": `"ключ"`, "a\"b\n": `"a\"b\n"`,
	} {
		if got := Scalar(in); got != want {
			t.Errorf("Scalar(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 8 * time.Hour: "8h", 90 * time.Minute: "1h30m",
		45 * time.Second: "45s", 3601 * time.Second: "1h1s", 1500 * time.Millisecond: "1.5s"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %s, want %s", d, got, want)
		}
		if back, err := time.ParseDuration(Duration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(%s) = %v, %v", Duration(d), back, err)
		}
	}
}

// TestCommentsStayComments: text from user files (invalid UTF-8, CR, line breaks) cannot
// leave the comment it is written into.
func TestCommentsStayComments(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, []string{"a\rb\xffc\nconnections: {}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# a?b?c\n# connections: {}\nconnections:\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	_, err = config.Parse(strings.NewReader(buf.String()))
	if err == nil || !strings.Contains(err.Error(), "connections: none defined") {
		t.Errorf("config.Parse: %v, want only the missing connections", err)
	}
}

// TestIKEVersionRoundTrip: what Write emits for an IKEv1 and an IKEv2 connection (whose
// tunnel has two subnets per side), config.Parse reads back with the same version,
// proposals and subnets.
func TestIKEVersionRoundTrip(t *testing.T) {
	v1, err := proposal.ParseIKE("aes256-sha256-modp2048")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := proposal.ParseIKEv2("aes256-sha256-modp2048, aes128gcm16-prfsha256-ecp256")
	if err != nil {
		t.Fatal(err)
	}
	esp, _ := proposal.ParseESP("aes128gcm16")
	conn := func(name string, remote string, ike model.IKE) Connection {
		ike.Lifetime, ike.NATTraversal, ike.DPDTimeout = time.Hour, model.NATTAuto, config.DefaultDPDTimeout
		return Connection{Connection: model.Connection{Name: name, LocalAddress: netip.MustParseAddr("192.0.2.1"),
			RemoteAddress: netip.MustParseAddr(remote), PSK: model.Secret("k"), IKE: ike,
			Tunnels: []model.Tunnel{{Name: "t", LocalSubnets: []netip.Prefix{netip.MustParsePrefix("10.10.1.0/24")},
				RemoteSubnets: []netip.Prefix{netip.MustParsePrefix("10.20." + remote[len(remote)-1:] + ".0/24")}, Proposals: esp,
				Lifetime: time.Hour, ReplayWindow: config.DefaultReplayWindow, Start: model.StartOnDemand}}}}
	}
	two := conn("two", "192.0.2.3", model.IKE{Version: 2, V2Proposals: v2})
	two.Tunnels[0].LocalSubnets = append(two.Tunnels[0].LocalSubnets, netip.MustParsePrefix("10.11.0.1/32"))
	two.Tunnels[0].RemoteSubnets = append(two.Tunnels[0].RemoteSubnets, netip.MustParsePrefix("10.21.0.0/16"))
	var buf bytes.Buffer
	err = Write(&buf, nil, []Connection{conn("one", "192.0.2.2", model.IKE{Mode: model.ModeMain, Proposals: v1}), two})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "version: 2\n      proposals: [aes256-sha256-prfsha256-modp2048, aes128gcm16-prfsha256-ecp256]\n") {
		t.Errorf("IKEv2 connection written as\n%s", buf.String())
	}
	c, err := config.Parse(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, buf.String())
	}
	ike1, ike2 := c.Connections[0].IKE, c.Connections[1].IKE
	if ike1.Version != 1 || !reflect.DeepEqual(ike1.Proposals, v1) || len(ike1.V2Proposals) != 0 {
		t.Errorf("IKEv1 connection read back as %+v", ike1)
	}
	if ike2.Version != 2 || !reflect.DeepEqual(ike2.V2Proposals, v2) || len(ike2.Proposals) != 0 {
		t.Errorf("IKEv2 connection read back as %+v", ike2)
	}
	if got, want := c.Connections[1].Tunnels[0], two.Tunnels[0]; !reflect.DeepEqual(got.LocalSubnets, want.LocalSubnets) || !reflect.DeepEqual(got.RemoteSubnets, want.RemoteSubnets) {
		t.Errorf("IKEv2 tunnel's subnets read back as %v <-> %v, want %v <-> %v", got.LocalSubnets, got.RemoteSubnets, want.LocalSubnets, want.RemoteSubnets)
	}
}
