//go:build vmtest

package kernel

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/xfrm"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// vmEnv is set to "1" by test/vm/vmtest.sh inside the VM.
const vmEnv = "ESPGW_VM"

func TestMain(m *testing.M) {
	if err := checkVM(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL test/kernel: %v\n"+
			"This suite runs only inside the test VM: use `make vmtest` (test/vm/vmtest.sh).\n", err)
		os.Exit(2)
	}
	// A missing tool inside the VM is a broken image, never a reason to skip.
	os.Setenv(testutil.RequireInteropEnv, "1")
	os.Exit(m.Run())
}

// checkVM makes sure the suite runs where kernel ESP works: as root, in the VM, with every
// transform the suite installs and the espgw binary under test.
func checkVM() error {
	if os.Getenv(vmEnv) != "1" {
		return fmt.Errorf("%s=1 is not set", vmEnv)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("euid %d: want root", os.Geteuid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // first use loads crypto modules: slow under TCG
	defer cancel()
	err := xfrm.Probe(ctx, netns.None(),
		xfrm.Transform{Enc: datapath.Enc3DESCBC, Integ: datapath.IntegHMACSHA1_96},
		xfrm.Transform{Enc: datapath.EncAESCBC, Integ: datapath.IntegHMACSHA256_128, KeyBits: 256},
		xfrm.Transform{Enc: datapath.EncAESGCM16, KeyBits: 256},
	)
	if err != nil {
		return fmt.Errorf("kernel %s cannot run the suite's ESP transforms: %w", kernelRelease(), err)
	}
	// vmtest.sh passes the CGO_ENABLED=0 espgw binary: the VM has no Go toolchain to build one.
	if _, err := espgwtest.Find(); err != nil {
		return err
	}
	return nil
}

// kernelRelease is uname -r, for messages.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown kernel"
	}
	return unix.ByteSliceToString(u.Release[:])
}
