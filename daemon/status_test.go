package daemon

import (
	"testing"

	"github.com/espgw/espgw/ike"
)

// TestIKESAVersion: the control protocol carries each IKE SA's version; IKEv2's mode is
// "ikev2" (it has no main or aggressive mode).
func TestIKESAVersion(t *testing.T) {
	for _, tt := range []struct {
		in      ike.IKESAStatus
		version int
		mode    string
	}{
		{ike.IKESAStatus{Version: 1}, 1, "main"},
		{ike.IKESAStatus{Version: 1, Aggressive: true}, 1, "aggressive"},
		{ike.IKESAStatus{Version: 2}, 2, "ikev2"},
	} {
		if got := ikeSA(tt.in); got.Version != tt.version || got.Mode != tt.mode {
			t.Errorf("ikeSA(%+v): version %d, mode %q; want %d, %q", tt.in, got.Version, got.Mode, tt.version, tt.mode)
		}
	}
}
