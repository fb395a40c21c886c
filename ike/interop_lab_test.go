package ike

import (
	"cmp"
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/internal/testutil"
)

// TestLabInterop negotiates with a strongSwan charon started by the shared lab's
// strongswan-pair.sh (SIDES=right NO_INITIATE=1 ... up legacy|modern), outside the repository.
// Run the test binary inside netns "left" with ESPGW_LAB=initiator (we initiate) or
// ESPGW_LAB=responder (initiate from charon within 60 s), ESPGW_LAB_SET=legacy|modern and
// ESPGW_LAB_MODE=main|aggressive (aggressive needs aggressive = yes in charon's config).
func TestLabInterop(t *testing.T) {
	role := os.Getenv("ESPGW_LAB")
	if role == "" {
		testutil.NotApplicable(t, "manual strongSwan lab: set ESPGW_LAB=initiator|responder inside netns left")
	}
	ike, esp := "3des-sha1-modp1024", "3des-sha1-modp1024"
	if os.Getenv("ESPGW_LAB_SET") == "modern" {
		ike, esp = "aes256-sha256-modp2048", "aes256gcm16-modp2048"
	}
	mode := model.ModeMain
	if os.Getenv("ESPGW_LAB_MODE") == "aggressive" {
		mode = model.ModeAggressive
	}
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	b, err := conn.Listen([]netip.Addr{local}, conn.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := newFakeKernel(0xc0000000)
	e := New(Options{Logger: testLogger(t, "espgw"), Bind: b, Kernel: k})
	c := model.Connection{
		Name: "lab", LocalAddress: local, RemoteAddress: remote, PSK: model.Secret(cmp.Or(os.Getenv("ESPGW_LAB_PSK"), "lab-preshared-key-0123456789")),
		IKE: model.IKE{Mode: mode, Proposals: mustIKE(t, ike), Lifetime: 4 * time.Hour, NATTraversal: model.NATTAuto},
		Tunnels: []model.Tunnel{{Name: "s2s", LocalSubnets: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/32")},
			RemoteSubnets: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}, Proposals: mustESP(t, esp), Lifetime: time.Hour,
			Start: model.StartManual}},
	}
	if err := e.Configure([]model.Connection{c}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if role == "initiator" {
		uctx, ucancel := context.WithTimeout(ctx, 30*time.Second)
		defer ucancel()
		if err := e.Up(uctx, "lab", ""); err != nil {
			t.Fatalf("Up: %v", err)
		}
	} else {
		deadline := time.Now().Add(60 * time.Second)
		for len(k.active()) == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	act := k.active()
	if len(act) != 1 {
		t.Fatalf("%d child SAs installed, want 1; status %+v", len(act), e.Status())
	}
	t.Logf("child SA %+v", act[0].LogValue())
	t.Logf("status %+v", e.Status())
	if s := os.Getenv("ESPGW_LAB_HOLD"); s != "" {
		d, _ := time.ParseDuration(s)
		time.Sleep(d)
	}
}
