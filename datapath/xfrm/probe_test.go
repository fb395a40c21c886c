package xfrm

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

// This machine's kernel has XFRM but no ESP and no GCM (see LAB-NOTES): Probe must say so
// in one line and leave nothing behind. A kernel with ESP skips the test.
func TestProbeWithoutESP(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	if err := Probe(context.Background(), ns.NsHandle()); err == nil {
		testutil.NotApplicable(t, "kernel ESP is available here; this test covers its absence")
	}
	tests := []struct {
		name    string
		ts      []Transform
		wantIs  unix.Errno
		wantMsg string
	}{
		{"default", nil, unix.EPROTONOSUPPORT,
			"kernel cannot install ESP SAs: EPROTONOSUPPORT (enable CONFIG_INET_ESP / load esp4)"},
		{"aes256-sha256", []Transform{{Enc: datapath.EncAESCBC, Integ: datapath.IntegHMACSHA256_128, KeyBits: 256}}, unix.EPROTONOSUPPORT,
			"kernel cannot install ESP SAs: EPROTONOSUPPORT (enable CONFIG_INET_ESP / load esp4)"},
		{"gcm", []Transform{{Enc: datapath.EncAESGCM16, KeyBits: 256}}, unix.ENOSYS,
			"kernel lacks algorithm rfc4106(gcm(aes)) (CONFIG_CRYPTO_GCM)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Probe(context.Background(), ns.NsHandle(), tt.ts...)
			var ue *ESPUnavailableError
			if !errors.As(err, &ue) {
				t.Fatalf("Probe error %v (%T), want *ESPUnavailableError", err, err)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("Probe error %q, want %q", err, tt.wantMsg)
			}
			assertNoXfrm(t, ns)
		})
	}
}

func TestProbeRejectsInvalidTransform(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	err := Probe(context.Background(), ns.NsHandle(), Transform{Enc: datapath.EncAESCBC, KeyBits: 100, Integ: datapath.IntegHMACSHA1_96})
	var ue *ESPUnavailableError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("Probe with a 100-bit AES key: err = %v, want a transform error", err)
	}
}

func TestESPUnavailableErrorMessages(t *testing.T) {
	tests := []struct {
		err  *ESPUnavailableError
		want string
	}{
		{&ESPUnavailableError{Algorithm: "cbc(des3_ede)", Err: unix.ENOSYS}, "kernel lacks algorithm cbc(des3_ede) (CONFIG_CRYPTO_DES)"},
		{&ESPUnavailableError{Algorithm: "hmac(sha384)", Err: unix.ENOSYS}, "kernel lacks algorithm hmac(sha384) (CONFIG_CRYPTO_SHA512)"},
		{&ESPUnavailableError{Err: unix.EPERM}, "kernel cannot install ESP SAs: EPERM (operation not permitted)"},
		{&ESPUnavailableError{Err: errors.New("boom")}, "kernel cannot install ESP SAs: boom"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
